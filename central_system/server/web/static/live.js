// Live updates for the faculty queue: listen to the page's event stream and
// reload the queue's HTML (server-rendered) when something of ours changes.
// No framework, no build step; served from /web/static so the CSP needs no
// 'unsafe-inline'.
(function () {
  "use strict";
  var box = document.getElementById("queue");
  var state = document.getElementById("live-state");
  if (!box || !window.EventSource) { return; }
  var src = box.getAttribute("data-src");
  var pending = null;

  function say(text) { if (state) { state.textContent = text; } }

  function reload() {
    // Coalesce a burst of events into one fetch.
    if (pending) { return; }
    pending = setTimeout(function () {
      pending = null;
      fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401 || r.redirected) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            box.innerHTML = html;
            box.setAttribute("data-updated", String(Date.now()));
          }
        })
        .catch(function () { say("Live updates interrupted; retrying…"); });
    }, 50);
  }

  var events = new EventSource(box.getAttribute("data-events"));
  events.addEventListener("open", function () { say("Live: new requests appear here by themselves."); reload(); });
  events.addEventListener("consultation", reload);
  events.addEventListener("faculty", reload);
  events.addEventListener("overflow", function () { events.close(); window.location.reload(); });
  events.addEventListener("error", function () { say("Live updates reconnecting…"); });
  // Waiting times tick on the server's clock: refresh them every half minute.
  setInterval(reload, 30000);
})();
