/*
 * "Sign in with <provider>" on New Retrieval Task keeps what to import (issue 18).
 *
 * The provider buttons are forms of their own (above the task form, and the
 * address lookup's), so pressing Enter in the task form still saves it. When
 * one of them is submitted, this copies the task form's "What to import"
 * fields (initial, initial_since, include_folders, exclude_folders) into it as
 * hidden inputs, so the pending task is created with the user's choices; the
 * server checks them as it checks the task form
 * (web.controllers.settings.oauth.start_task).
 *
 * No inline script and no eval (the Content-Security-Policy allows neither).
 */
(function () {
  "use strict";

  var task = document.getElementById("task-form");
  if (!task) return;
  var NAMES = ["initial", "initial_since", "include_folders", "exclude_folders"];

  function value(name) {
    var field = task.elements.namedItem(name);
    return field ? field.value : null; // a RadioNodeList's value is the checked radio's
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form === task) return;
    if (form.getAttribute("action") !== "/settings/retrieval/oauth") return;
    form.querySelectorAll("input[data-task-choice]").forEach(function (old) { old.remove(); });
    NAMES.forEach(function (name) {
      var current = value(name);
      if (current === null) return;
      var hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = name;
      hidden.value = current;
      hidden.setAttribute("data-task-choice", "");
      form.appendChild(hidden);
    });
  }, true);
})();
