/*
 * Live mail pages: the open mail page follows new mail without a reload.
 *
 * Mail may be stored by another process (a worker holding an IMAP IDLE
 * connection), so the page asks the server, which reads the database:
 *
 *   GET /mail/pulse?since=<fingerprint of the folders this page shows>
 *     204            nothing changed (the common case: one indexed query, no body)
 *     200 {fingerprint, unread}   something changed
 *     401            signed out: stop asking
 *
 * Every 3 s while the tab is visible, every 30 s while hidden (the tab title's
 * count still follows), at once when the tab comes back; failures back off up
 * to a minute. When something changed, the page fetches its own URL again
 * (#mail-layout's data-live-url: the same folder and page; on a message, its
 * folder's first page) and swaps in the folder tree and, on a list, the
 * message list, each only where it differs from what is shown, keeping the
 * ticked boxes, the chosen menu values, the focus and the scroll position.
 * An open message is never replaced, and the list waits while a menu in it
 * has the focus. A "mail-changed" event then bubbles from #mail-layout.
 *
 * No inline script and no eval (the Content-Security-Policy allows neither):
 * this file is loaded from /static by the mail layout.
 */
(function () {
  "use strict";

  var VISIBLE_MS = 3000;
  var HIDDEN_MS = 30000;
  var MAX_BACKOFF_MS = 60000;
  var TITLE_COUNT = /^\(\d+\) /;

  var timer = null;
  var failures = 0;
  var busy = false;
  var stopped = false;

  /* The mail layout, when this page is one that follows the pulse. */
  function layout() {
    var element = document.getElementById("mail-layout");
    return element && element.hasAttribute("data-pulse") ? element : null;
  }

  function delay() {
    var base = document.visibilityState === "visible" ? VISIBLE_MS : HIDDEN_MS;
    return failures ? Math.min(MAX_BACKOFF_MS, base * Math.pow(2, failures)) : base;
  }

  function schedule(ms) {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (stopped || busy || !layout()) return;
    timer = setTimeout(tick, ms === undefined ? delay() : ms);
  }

  function setTitleCount(unread) {
    var bare = document.title.replace(TITLE_COUNT, "");
    var n = parseInt(unread, 10);
    document.title = n > 0 ? "(" + n + ") " + bare : bare;
  }

  function get(url, accept) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      headers: { Accept: accept },
    });
  }

  /* What the reader has done inside `part` that a fresh copy must keep. */
  function readerState(part) {
    var active = document.activeElement;
    var focus = null;
    if (active && active !== document.body && part.contains(active)) {
      if (active.id) focus = "#" + CSS.escape(active.id);
      else if (active.getAttribute("href")) focus = '[href="' + CSS.escape(active.getAttribute("href")) + '"]';
      else if (active.name && active.value) {
        focus = '[name="' + CSS.escape(active.name) + '"][value="' + CSS.escape(active.value) + '"]';
      }
    }
    var ticked = [];
    part.querySelectorAll("input[type=checkbox]:checked[id]").forEach(function (box) {
      ticked.push(box.id);
    });
    var chosen = [];
    part.querySelectorAll("select[id]").forEach(function (menu) {
      if (menu.value) chosen.push([menu.id, menu.value]);
    });
    return { focus: focus, ticked: ticked, chosen: chosen, scrollTop: part.scrollTop };
  }

  function restore(part, state) {
    state.ticked.forEach(function (id) {
      var box = part.querySelector("#" + CSS.escape(id));
      if (box) box.checked = true;
    });
    state.chosen.forEach(function (pair) {
      var menu = part.querySelector("#" + CSS.escape(pair[0]));
      if (menu && menu.querySelector('option[value="' + CSS.escape(pair[1]) + '"]')) menu.value = pair[1];
    });
    part.scrollTop = state.scrollTop;
    var target = state.focus ? part.querySelector(state.focus) : null;
    if (target) target.focus({ preventScroll: true });
  }

  /* The markup of `part` as the server sent it: without the style attributes that tools and
     extensions add (the server sends none: the Content-Security-Policy forbids inline styles),
     nor the keyboard's selection (static/js/keys.js marks its row is-cursor). */
  function markup(part) {
    var copy = part.cloneNode(true);
    copy.removeAttribute("style");
    copy.querySelectorAll("[style]").forEach(function (element) {
      element.removeAttribute("style");
    });
    copy.querySelectorAll(".is-cursor").forEach(function (element) {
      element.classList.remove("is-cursor");
      if (!element.classList.length) element.removeAttribute("class");
    });
    return copy.outerHTML;
  }

  /* Replace the element matching `selector` in `current` by its fresh copy, unless it is the same
     (mail that arrived in another folder leaves this list alone); false when nothing was replaced. */
  function swap(current, fresh, selector) {
    var old = current.querySelector(selector);
    var replacement = fresh.querySelector(selector);
    if (!old || !replacement || markup(old) === markup(replacement)) return false;
    var state = readerState(old);
    var adopted = document.importNode(replacement, true);
    old.replaceWith(adopted);
    if (window.htmx) window.htmx.process(adopted); // boosted links and forms inside it
    restore(adopted, state);
    return true;
  }

  function menuOpenIn(part) {
    var active = document.activeElement;
    return !!(part && active && active.tagName === "SELECT" && part.contains(active));
  }

  /* Fetch this page again and swap in what changed. Resolves true when the page is now current. */
  function refresh(current) {
    var url = current.getAttribute("data-live-url");
    if (!url) return Promise.resolve(false);
    return get(url, "text/html")
      .then(function (response) {
        if (!response.ok) throw new Error("refresh " + response.status);
        return response.text();
      })
      .then(function (html) {
        // The reader moved on (htmx swapped the layout) while we fetched: their new page is newer.
        if (layout() !== current || current.getAttribute("data-live-url") !== url) return true;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("mail-layout");
        if (!fresh) throw new Error("refresh: no mail layout");
        var list = current.querySelector(".message-list");
        if (list && menuOpenIn(list)) return false; // try again on the next tick
        swap(current, fresh, "nav.folders");
        if (list) swap(current, fresh, ".message-list");
        current.setAttribute("data-pulse", fresh.getAttribute("data-pulse") || "");
        current.setAttribute("data-unread", fresh.getAttribute("data-unread") || "0");
        setTitleCount(fresh.getAttribute("data-unread"));
        current.dispatchEvent(new CustomEvent("mail-changed", { bubbles: true }));
        return true;
      });
  }

  function tick() {
    timer = null;
    var current = layout();
    if (!current || stopped) return;
    busy = true;
    get("/mail/pulse?since=" + encodeURIComponent(current.getAttribute("data-pulse") || ""), "application/json")
      .then(function (response) {
        if (response.status === 204) return null;
        if (response.status === 401) {
          stopped = true;
          return null;
        }
        if (!response.ok) throw new Error("pulse " + response.status);
        return response.json();
      })
      .then(function (changed) {
        if (!changed) return;
        setTitleCount(changed.unread);
        return refresh(current);
      })
      .then(
        function () {
          failures = 0;
        },
        function () {
          failures = Math.min(failures + 1, 5);
        }
      )
      .then(function () {
        busy = false;
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!busy) schedule(document.visibilityState === "visible" ? 0 : undefined);
  });

  // A page without the pulse stops the loop; a boosted swap may bring one back.
  document.addEventListener("htmx:afterSettle", function () {
    if (timer === null && !busy) schedule();
  });

  function start() {
    schedule();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
