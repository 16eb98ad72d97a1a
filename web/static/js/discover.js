/*
 * Set-up from the address (issue 18) on New Retrieval Task and New SMTP Account.
 *
 * The user types the email address first; this file asks
 *
 *   GET /api/v1/discover?email=<address>     (the session cookie signs it in)
 *
 * and fills the settings form (section#discover's data-form) with what was
 * found: protocol (retrieval only), server, port, security and username, then
 * says where each came from. When the provider needs OAuth2 sign-in it says so
 * and shows the sign-in form with that provider (when this server offers it).
 * Nothing is saved: the user checks the form, tests and saves it.
 *
 * The port is set after the security choice without firing its change event,
 * so the usual-port suggestion (htmx, GET /settings/port) does not overwrite a
 * port the lookup found. A newer lookup wins over an older one still running,
 * and a server typed while the lookup ran is kept.
 *
 * No inline script and no eval (the Content-Security-Policy allows neither).
 */
(function () {
  "use strict";

  var section = document.getElementById("discover");
  if (!section) return;
  var form = document.querySelector(section.getAttribute("data-form"));
  var kind = section.getAttribute("data-kind");
  var input = document.querySelector(section.getAttribute("data-input"));
  var button = document.getElementById("discover-button");
  var progress = document.getElementById("discover-progress");
  var result = document.getElementById("discover-result");
  var list = document.getElementById("discover-found");
  var oauth = document.getElementById("discover-oauth");
  var oauthText = document.getElementById("discover-oauth-text");
  var oauthButton = document.getElementById("discover-oauth-button");
  if (!form || !input) return;

  var SECURITY = { ssl: "SSL/TLS", starttls: "STARTTLS", none: "no encryption" };
  var LABEL = { imap: "IMAP", pop3: "POP3", smtp: "SMTP" };
  var SOURCE = {
    "built-in": "Tributary's list of providers",
    autoconfig: "the domain's autoconfig document",
    "dns-srv": "DNS SRV records",
    mx: "the domain's MX records",
    "mx-guess": "a guess from the MX records"
  };
  var counter = 0;
  var lastLooked = "";

  section.hidden = false;

  function field(name) {
    return form.querySelector("[name='" + name + "']");
  }

  function say(text) {
    result.textContent = text;
    result.hidden = !text;
  }

  function setValue(name, value) {
    var element = field(name);
    if (element && value !== null && value !== undefined && value !== "") {
      element.value = String(value);
    }
  }

  function chooseProtocol(data) {
    if (kind !== "retrieval") return "smtp";
    var checked = form.querySelector("input[name='protocol']:checked");
    var wanted = checked ? checked.value : "imap";
    if (!data[wanted]) wanted = data.imap ? "imap" : data.pop3 ? "pop3" : wanted;
    var radio = form.querySelector("input[name='protocol'][value='" + wanted + "']");
    if (radio) radio.checked = true;
    var hidden = oauth.querySelector("input[name='protocol']");  // absent without providers
    if (hidden) hidden.value = wanted;
    return wanted;
  }

  function fill(data, hostBefore) {
    var host = field("host");
    if (host && host.value !== hostBefore) {
      // The user typed a server while the lookup ran: theirs stands.
      list.hidden = true;
      say(data.message + " The server you typed was kept.");
      showOauth(data);
      return;
    }
    var protocol = chooseProtocol(data);
    var server = data[protocol];
    list.textContent = "";
    if (kind === "smtp" && field("email_address") !== input) {
      setValue("email_address", data.email);
    }
    if (server) {
      setValue("host", server.host);
      setValue("security", server.security);
      var port = field("port");
      if (port) port.value = String(server.port);
      var username = field("username");
      if (username && (!username.value || username.getAttribute("data-discovered") === "yes")) {
        username.value = server.username || data.email;
        username.setAttribute("data-discovered", "yes");
      }
      var item = document.createElement("li");
      item.textContent = LABEL[protocol] + ": " + server.host + ", port " + server.port + ", " +
        SECURITY[server.security] + " (from " + (SOURCE[server.source] || server.source) + ": " + server.where + ")";
      list.appendChild(item);
    }
    list.hidden = !list.firstChild;
    say(data.message + (server ? " Check the settings, then test and save them." : ""));
    showOauth(data);
  }

  function showOauth(data) {
    var need = data.oauth2;
    oauth.hidden = true;
    if (!need || !need.required) return;
    var who = data.provider || "This provider";
    var provider = oauth.querySelector("input[name='provider']");
    if (need.offered && provider && oauthButton) {
      provider.value = need.provider;
      oauthText.textContent = who + " needs sign-in with " + need.label + ": no password is stored.";
      oauthButton.textContent = "Sign in with " + need.label;
      oauthButton.hidden = false;
    } else {
      oauthText.textContent = who + " needs OAuth2 sign-in, which this server does not offer: " +
        "ask your administrator, or use an app password if the provider allows one.";
      if (oauthButton) oauthButton.hidden = true;
    }
    oauth.hidden = false;
  }

  function lookUp() {
    var email = input.value.trim();
    if (email.indexOf("@") < 1 || email === lastLooked) return;
    lastLooked = email;
    var mine = ++counter;
    var hostField = field("host");
    var hostBefore = hostField ? hostField.value : "";
    progress.hidden = false;
    say("");
    fetch("/api/v1/discover?email=" + encodeURIComponent(email), {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (mine !== counter) return;
        if (!answer.ok) {
          list.hidden = true;
          oauth.hidden = true;
          say(answer.body && answer.body.error ? answer.body.error : "The servers could not be looked up.");
          return;
        }
        fill(answer.body, hostBefore);
      })
      .catch(function () {
        if (mine === counter) say("The servers could not be looked up: enter them yourself.");
      })
      .then(function () {
        if (mine === counter) progress.hidden = true;
      });
  }

  input.addEventListener("change", lookUp);
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      lastLooked = "";
      lookUp();
    }
  });
  button.addEventListener("click", function () {
    lastLooked = "";
    lookUp();
  });
})();
