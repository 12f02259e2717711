// Drover dashboard: live refresh. The page's <main data-refresh="N"> is
// replaced every N seconds by the page's own content fragment (?partial=1),
// fetched with the session cookie. Refresh pauses while the tab is hidden
// and stops when the session has ended.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!main || !main.dataset.refresh) {
    return;
  }
  var every = Math.max(1, parseInt(main.dataset.refresh, 10) || 5) * 1000;
  var busy = false;
  var timer = null;

  function fragmentURL() {
    var u = new URL(window.location.href);
    u.searchParams.set("partial", "1");
    return u.pathname + u.search;
  }

  function say(text) {
    if (state) {
      state.textContent = text;
    }
  }

  function refresh() {
    if (!main.dataset.refresh) {
      window.clearInterval(timer);
      say("live refresh off");
      return;
    }
    if (busy || document.hidden || main.querySelector("form:hover, button:focus, input:focus, select:focus")) {
      return;
    }
    busy = true;
    fetch(fragmentURL(), { credentials: "same-origin", headers: { "Accept": "text/html" }, redirect: "error" })
      .then(function (resp) {
        if (resp.status === 401 || resp.status === 403) {
          window.clearInterval(timer);
          say("session ended · reload to log in");
          return null;
        }
        if (!resp.ok) {
          say("refresh failed (HTTP " + resp.status + ") · retrying");
          return null;
        }
        return resp.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined && main.dataset.refresh) {
          // The fragment is server-rendered by html/template (escaped).
          main.innerHTML = html;
          main.dataset.updated = String(Date.now());
          say("live · updated " + new Date().toLocaleTimeString());
        }
      })
      .catch(function () {
        say("server unreachable · retrying");
      })
      .then(function () {
        busy = false;
      });
  }

  timer = window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
})();
