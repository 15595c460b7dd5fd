// The exchange page's live preview: asks the portal for a quote as the cardholder picks programmes and types an
// amount, and shows the rate, the fee and what they would receive (or why it would be refused).
(function () {
  "use strict";
  var form = document.getElementById("exchange-form");
  if (!form) { return; }
  var preview = document.getElementById("exchange-preview");
  var error = document.getElementById("exchange-error");
  var pending = 0;
  var timer = null;

  function show(data) {
    preview.querySelector('[data-field="rate"]').textContent = data.rate;
    preview.querySelector('[data-field="value_cny"]').textContent = "¥" + data.value_cny;
    preview.querySelector('[data-field="fee_cny"]').textContent = "¥" + data.fee_cny;
    preview.querySelector('[data-field="points_out"]').textContent = data.points_out + " " + data.to_unit;
    preview.hidden = false;
    error.hidden = true;
  }

  function refuse(message) {
    preview.hidden = true;
    error.textContent = message;
    error.hidden = !message;
  }

  function quote() {
    var params = new URLSearchParams({
      from_program: form.elements.from_program.value,
      to_program: form.elements.to_program.value,
      amount: form.elements.amount.value
    });
    if (!params.get("from_program") || !params.get("to_program") || !params.get("amount")) { refuse(""); return; }
    var mine = ++pending;
    fetch(form.dataset.quoteUrl + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (mine !== pending) { return; }  // a later input has asked since
        if (data.error) { refuse(data.error.message); } else { show(data); }
      })
      .catch(function () { if (mine === pending) { refuse(""); } });
  }

  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(quote, 250);
  });
  form.addEventListener("submit", function () { form.querySelector('button[type="submit"]').disabled = true; });
  quote();
})();
