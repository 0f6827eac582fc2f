// refnet web desk: progressive enhancement only; every page works without it.
// On a form the server sent back with violations, put the cursor in the first
// field marked invalid.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var invalid = document.querySelector("[aria-invalid=true]");
  if (invalid) { invalid.focus(); }
});

// A live page (the inbox): on each event from the server, fetch its rows
// again, rendered by the server for this session; also when the event
// stream (re)opens, so nothing is missed across a reconnection.
document.addEventListener("DOMContentLoaded", function () {
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource || !window.fetch) { return; }
  var refresh = function () {
    fetch(live.getAttribute("data-rows"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { live.innerHTML = html; } });
  };
  var source = new EventSource(live.getAttribute("data-live"));
  source.addEventListener("inbox", refresh);
  source.addEventListener("open", refresh);
});
