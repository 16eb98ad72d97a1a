/*
 * Compose drafts: a half-written message is not lost when the user leaves the page.
 *
 * While the compose form (#compose-form) has changes that are not saved, the
 * page saves them as a draft:
 *
 *   - a few seconds after the user stops typing, and
 *   - at once when the page is hidden or left (visibilitychange, pagehide):
 *     following a link to Settings, closing the tab, switching apps on a phone.
 *
 * Each save is POST /compose/draft with the form's fields (chosen files stay
 * for "Save draft" and Send: a request made while the page unloads may carry
 * at most 64 KB), Accept: application/json and the session's CSRF token in the
 * X-CSRFToken header (web.support.csrf; the token is the one htmx sends, from
 * <body hx-headers>). The request is a `fetch` with `keepalive`, so it
 * completes after the page is gone. Every version of one message carries the
 * form's draft_key (the draft's Message-ID), and the server keeps only the
 * newest draft with that key, so saves that overlap leave one draft.
 * The answer's draft_id is put in the form, and "Draft saved" shown in
 * #draft-status (a polite live region).
 *
 * Sending the form stops autosaving (sending removes the draft; with htmx it
 * waits for a save under way first); a form that comes back with mistakes
 * counts as unsaved again.
 *
 * It also keeps the read-only signature preview under the body in step with Send From.
 *
 * No inline script and no eval (the Content-Security-Policy allows neither):
 * the compose page loads this file from /static.
 */
(function () {
  "use strict";

  var PAUSE_MS = 3000;
  var KEEPALIVE_LIMIT = 60000; // bytes; browsers refuse keepalive bodies over 64 KB in all

  var dirty = false;
  var sending = false;
  var timer = null;
  var inFlight = null; // the background save under way, if any

  function composeForm() {
    return document.getElementById("compose-form");
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function say(text) {
    var status = document.getElementById("draft-status");
    if (status) status.textContent = text;
  }

  function cancelTimer() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  }

  /* The form's fields without the chosen files; its size roughly, to choose keepalive. */
  function fields(form) {
    var data = new FormData(form);
    var size = 0;
    data.delete("attachments");
    data.forEach(function (value, name) {
      size += name.length + (typeof value === "string" ? value.length * 3 : 0) + 100;
    });
    return { data: data, size: size };
  }

  function remember(form, answer) {
    var input = form.querySelector('input[name="draft_id"]');
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = "draft_id";
      form.appendChild(input);
    }
    input.value = String(answer.draft_id);
    var key = form.querySelector('input[name="draft_key"]');
    if (key && answer.draft_key) key.value = answer.draft_key;
  }

  function save() {
    cancelTimer();
    var form = composeForm();
    if (!form || !dirty || sending) return;
    dirty = false;
    var body = fields(form);
    var options = {
      method: "POST",
      body: body.data,
      credentials: "same-origin",
      redirect: "error",
      keepalive: body.size < KEEPALIVE_LIMIT,
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    };
    say("Saving draft…");
    var request = fetch("/compose/draft", options)
      .then(function (response) {
        return response.json().then(function (answer) {
          if (!response.ok) throw new Error(answer.error || "The draft was not saved.");
          if (composeForm() === form) remember(form, answer);
          say(answer.message || "Draft saved");
        });
      })
      .catch(function (error) {
        dirty = true; // try again on the next change or when leaving
        say(error && error.message ? error.message : "The draft was not saved.");
      })
      .then(function () {
        if (inFlight === request) inFlight = null;
      });
    inFlight = request;
  }

  function changed(event) {
    var form = composeForm();
    if (!form || !event.target || event.target.form !== form || event.target.type === "file") return;
    dirty = true;
    say("");
    cancelTimer();
    timer = setTimeout(save, PAUSE_MS);
  }

  document.addEventListener("input", changed);
  document.addEventListener("change", changed);

  /* The signature preview under the body follows Send From: of the signatures rendered there
     (one per address that has one, data-send-from = the option's value), only the chosen one shows. */
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!select || select.id !== "compose-from") return;
    var field = document.getElementById("compose-signature-field");
    if (!field) return;
    var shown = false;
    field.querySelectorAll("pre[data-send-from]").forEach(function (signature) {
      signature.hidden = signature.getAttribute("data-send-from") !== select.value;
      shown = shown || !signature.hidden;
    });
    field.hidden = !shown;
  });

  /* Send (the form's own submit): the message goes to the outbox and its draft is removed. */
  document.addEventListener("submit", function (event) {
    if (event.target === composeForm()) {
      sending = true;
      cancelTimer();
    }
  });

  /* Send waits for a background save under way, so that save cannot store the draft again after
     sending removed it. */
  document.addEventListener("htmx:confirm", function (event) {
    var pending = inFlight;
    if (!pending || !event.detail || event.detail.elt !== composeForm()) return;
    event.preventDefault();
    pending.then(function () {
      event.detail.issueRequest(true);
    });
  });

  /* "Save draft" through htmx saves everything itself: nothing left to autosave. */
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (source && source.id === "compose-save-draft") {
      cancelTimer();
      dirty = false;
    }
  });

  /* A new form swapped in: saved ("Draft saved" shown) or sent back with mistakes (unsaved). */
  document.addEventListener("htmx:afterSwap", function () {
    var form = composeForm();
    sending = false;
    cancelTimer();
    if (!form) {
      dirty = false;
      return;
    }
    var status = document.getElementById("draft-status");
    dirty = !(status && status.textContent.trim());
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") save();
  });
  window.addEventListener("pagehide", save);
})();
