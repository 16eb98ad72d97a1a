/*
 * The mail pages' own controls: the "Folders" button that unfolds the folder tree on a phone,
 * and the keyboard shortcuts that "?" lists (the dialog #shortcuts, mail/_shortcuts.html).
 *
 *   c compose            / search             j k next / previous message in the list
 *   Enter open it        r reply              a reply all          f forward
 *   e archive            # delete             u back to the list   ? this list (Escape closes it)
 *
 * Shortcuts act by clicking the page's own controls, marked data-shortcut="<key>" in the
 * templates (Reply, Archive, Delete, the way back...), so they do exactly what a click does:
 * the same forms, the same htmx swaps, the same server rules (Delete moves to Trash, and
 * deletes for good in the Trash; Archive moves to the folder "Archive", made on first use).
 * In a list, e and # act on the ticked messages, or else on the selected one (j/k).
 * Nothing happens while the reader types in a field, uses a menu, or holds Ctrl, Alt or Meta.
 *
 * The selection is the focused subject link (Enter opens it as a click would) plus the class
 * is-cursor on its row. It is remembered by message id (for the tab, in sessionStorage): when
 * static/js/live.js swaps in a fresh list ("mail-changed"), htmx swaps the layout or the page is
 * loaded again, the same message is selected again if shown.
 * live.js ignores that class when it compares the shown list with the server's.
 *
 * The fold's state is the attribute data-folders="open" on #mail-layout and the button's
 * aria-expanded. live.js replaces only the tree and the list inside the layout, never the
 * layout's own attributes or the button, so an open tree stays open as mail arrives. When
 * htmx swaps in a whole new layout (a message opened, an action done), the state is set on it
 * again; choosing a folder in the tree folds it away (the reader wants that folder's list).
 * On a wide screen the tree is always shown and the button hidden (static/css/mail.css).
 *
 * No inline script and no eval (the Content-Security-Policy allows neither): this file is
 * loaded from /static by the mail layout. Listeners sit on the document, so swapped content
 * needs no setup.
 */
(function () {
  "use strict";

  var MESSAGE_LINK = /\/mail\/messages\/(\d+)(?:[?#]|$)/;
  var NOT_TYPING = /^(checkbox|radio|button|submit|reset|image|file|range|color)$/;
  var COMPOSE = { r: "reply", a: "reply_all", f: "forward" };

  var STORED = "tributary.selected-message";
  var selectedId = remembered(); // the selected message's id, kept across swaps of the list

  /* The selection also outlives a page load in this tab (sessionStorage), e.g. after a message
     was opened in full; storage may be unavailable, then it lasts for this page only. */
  function remembered() {
    try {
      return window.sessionStorage.getItem(STORED);
    } catch (error) {
      return null;
    }
  }

  function remember(id) {
    selectedId = id;
    try {
      if (id === null) window.sessionStorage.removeItem(STORED);
      else window.sessionStorage.setItem(STORED, id);
    } catch (error) {
      /* this page only */
    }
  }

  function layout() {
    return document.getElementById("mail-layout");
  }

  /* ---- The folder tree's fold (phones) ---- */

  var foldersOpen = false; // what the reader chose on this page load, carried across layout swaps

  function applyFold() {
    var root = layout();
    if (!root) return;
    if (foldersOpen) root.setAttribute("data-folders", "open");
    else root.removeAttribute("data-folders");
    root.querySelectorAll(".folders-toggle").forEach(function (button) {
      button.setAttribute("aria-expanded", foldersOpen ? "true" : "false");
    });
  }

  // htmx swapped in a new layout (the server renders the tree folded): keep the reader's choice.
  document.addEventListener("htmx:afterSwap", applyFold);

  /* ---- The shortcuts dialog ---- */

  function shortcutsDialog() {
    return document.getElementById("shortcuts");
  }

  function showShortcuts() {
    var dialog = shortcutsDialog();
    if (dialog && !dialog.open) dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    if (target.closest(".folders-toggle")) {
      foldersOpen = !foldersOpen;
      applyFold();
      return;
    }
    // Choosing a folder folds the tree away again: the reader wants to see that folder's list.
    if (target.closest(".folders-pane a[href]")) foldersOpen = false;
    if (target.closest(".shortcuts-open")) showShortcuts();
  });

  /* ---- The selection in a message list ---- */

  function visible(element) {
    if (!element) return false;
    if (element.checkVisibility) return element.checkVisibility({ visibilityProperty: true, checkVisibilityCSS: true });
    return element.getClientRects().length > 0;
  }

  function rows() {
    var root = layout();
    if (!root) return [];
    return Array.prototype.filter.call(root.querySelectorAll(".messages tr.message-row"), function (row) {
      return !!rowLink(row);
    });
  }

  function rowLink(row) {
    var links = row.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      if (MESSAGE_LINK.test(links[i].getAttribute("href"))) return links[i];
    }
    return null;
  }

  function rowId(row) {
    var link = rowLink(row);
    var match = link && MESSAGE_LINK.exec(link.getAttribute("href"));
    return match ? match[1] : null;
  }

  /* The selected row: the one holding the focus, else the remembered one if it is still shown. */
  function selectedRow(list) {
    var active = document.activeElement;
    var holder = active && active.closest ? active.closest("tr.message-row") : null;
    if (holder && list.indexOf(holder) >= 0) return holder;
    if (selectedId === null) return null;
    for (var i = 0; i < list.length; i++) {
      if (rowId(list[i]) === selectedId) return list[i];
    }
    return null;
  }

  function mark(row) {
    var root = layout();
    if (root) {
      root.querySelectorAll("tr.message-row.is-cursor").forEach(function (other) {
        if (other !== row) other.classList.remove("is-cursor");
      });
    }
    if (row) row.classList.add("is-cursor");
  }

  function select(row) {
    remember(rowId(row));
    mark(row);
    var link = rowLink(row);
    if (link) link.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }

  function step(by) {
    var list = rows();
    if (!list.length) return false;
    var row = selectedRow(list);
    var index = row ? list.indexOf(row) + by : by > 0 ? 0 : list.length - 1;
    select(list[Math.max(0, Math.min(list.length - 1, index))]);
    return true;
  }

  /* After a swap, select the remembered message again where it is shown (never a row that merely
     holds the focus: ticking a box selects nothing). */
  function reselect(takeFocus) {
    var list = rows();
    var row = null;
    for (var i = 0; selectedId !== null && i < list.length; i++) {
      if (rowId(list[i]) === selectedId) row = list[i];
    }
    mark(row);
    if (row && takeFocus && (!document.activeElement || document.activeElement === document.body)) {
      var link = rowLink(row);
      if (link) link.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  document.addEventListener("mail-changed", function () {
    reselect(false);
  });
  document.addEventListener("htmx:afterSwap", function () {
    reselect(false);
  });
  document.addEventListener("htmx:afterSettle", function () {
    reselect(true);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      reselect(false);
    });
  } else {
    reselect(false);
  }

  /* ---- Acting on messages ---- */

  /* The page's control for `key`, if it shows one. */
  function control(key, within) {
    var scope = within || layout();
    if (!scope) return null;
    var found = scope.querySelectorAll('[data-shortcut="' + key + '"]');
    for (var i = 0; i < found.length; i++) {
      if (visible(found[i])) return found[i];
    }
    return null;
  }

  function openMessage() {
    return !!(layout() && layout().querySelector(".message-view"));
  }

  /* e or # in a list: the ticked messages, else the selected one; the selection then moves to
     the message after it (or before, at the end), which the swapped list selects again. */
  function actOnList(key) {
    var list = rows();
    var row = selectedRow(list);
    var form = row ? row.closest("form") : layout() && layout().querySelector(".list-form");
    if (!form) return false;
    var button = control(key, form);
    if (!button) return false;
    var ticked = form.querySelectorAll("input[name=ids]:checked");
    if (!ticked.length) {
      var box = row && row.querySelector("input[name=ids]");
      if (!box) return false;
      box.checked = true;
    }
    if (row) {
      var index = list.indexOf(row);
      var next = list[index + 1] || list[index - 1];
      remember(next ? rowId(next) : null);
    }
    button.click();
    return true;
  }

  function compose(kind) {
    if (openMessage()) {
      var link = control(kind === "reply" ? "r" : kind === "reply_all" ? "a" : "f");
      if (link) link.click();
      return !!link;
    }
    var row = selectedRow(rows());
    if (!row) return false;
    window.location.assign("/compose?" + kind + "=" + encodeURIComponent(rowId(row)));
    return true;
  }

  function focusSearch() {
    var root = layout();
    var fields = root ? root.querySelectorAll('[role="search"] input[type="search"]') : [];
    for (var i = 0; i < fields.length; i++) {
      if (visible(fields[i])) {
        fields[i].focus();
        fields[i].select();
        return true;
      }
    }
    return false;
  }

  function clickControl(key) {
    var found = control(key);
    if (found) found.click();
    return !!found;
  }

  /* ---- The keyboard ---- */

  function typing(element) {
    if (!element || !element.tagName) return false;
    if (element.isContentEditable) return true;
    var tag = element.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    return tag === "INPUT" && !NOT_TYPING.test(element.type || "text");
  }

  /* Enter on a link, button or box does what it does already: only a bare Enter opens. */
  function interactive(element) {
    return !!element && !!element.closest && !!element.closest("a[href], button, input, select, textarea, summary");
  }

  function handle(key, target) {
    switch (key) {
      case "j":
        return step(1);
      case "k":
        return step(-1);
      case "Enter": {
        if (interactive(target)) return false;
        var row = selectedRow(rows());
        var link = row && rowLink(row);
        if (link) link.click();
        return !!link;
      }
      case "c":
        window.location.assign("/compose");
        return true;
      case "/":
        return focusSearch();
      case "?":
        showShortcuts();
        return true;
      case "r":
      case "a":
      case "f":
        return compose(COMPOSE[key]);
      case "e":
      case "#":
        return openMessage() ? clickControl(key) : actOnList(key);
      case "u":
        return clickControl("u");
      default:
        return false;
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!layout()) return;
    var dialog = shortcutsDialog();
    if (dialog && dialog.open) return; // Escape closes it (the browser's own dialog handling)
    var target = event.target instanceof Element ? event.target : null;
    if (typing(target)) return;
    if (handle(event.key, target)) event.preventDefault();
  });
})();
