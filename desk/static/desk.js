// refnet web desk: progressive enhancement only; every page works without it.
// On a form the server sent back with violations, put the cursor in the first
// field marked invalid.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var invalid = document.querySelector("[aria-invalid=true]");
  if (invalid) { invalid.focus(); }
});
