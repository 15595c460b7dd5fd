// Replaces the payment code with a fresh one every 50 seconds (each code is valid for 60).
(function () {
  "use strict";
  var form = document.getElementById("paycode-form");
  if (!form) { return; }
  function refresh() {
    var current = document.getElementById("paycode");
    fetch(form.action || window.location.href, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) { throw new Error(response.status); }
      return response.text();
    }).then(function (html) {
      if (current) { current.outerHTML = html; }
    }).catch(function () {
      if (current) { current.classList.add("stale"); }
    });
  }
  window.setInterval(refresh, 50000);
})();
