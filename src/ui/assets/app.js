// sluice dashboard: follows the audit trail (server-sent events, /ui/stream) and, when
// something happens, re-reads this page and swaps in its live part (#live). Soak
// countdowns tick every second. No framework, no build step.
"use strict";
(function () {
  var pending = null;

  function refresh() {
    pending = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var here = document.getElementById("live");
        if (fresh && here) {
          here.replaceWith(document.importNode(fresh, true));
          tick();
        }
      })
      .catch(function () { /* the next event tries again */ });
  }

  function soon() {
    if (pending === null) { pending = window.setTimeout(refresh, 250); }
  }

  function tick() {
    var nodes = document.querySelectorAll("[data-until]");
    for (var i = 0; i < nodes.length; i++) {
      var left = Math.max(0, Date.parse(nodes[i].getAttribute("data-until")) - Date.now());
      var s = Math.round(left / 1000);
      nodes[i].textContent = s > 0 ? Math.floor(s / 60) + "m " + (s % 60) + "s left" : "due";
    }
  }

  if (document.getElementById("live") && window.EventSource) {
    var source = new EventSource("/ui/stream");
    source.onmessage = soon;
    // A reconnect may have missed something: read the page again.
    source.addEventListener("open", soon);
  }
  tick();
  window.setInterval(tick, 1000);
})();
