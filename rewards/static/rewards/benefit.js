// A benefit page's live preview: asks the portal for a quote as the cardholder sets the points of each programme
// (or picks the one that pays the rest), and shows what each programme pays and what it is worth (or why not).
(function () {
  "use strict";
  var form = document.getElementById("redeem-form");
  if (!form) { return; }
  var preview = document.getElementById("redeem-preview");
  var error = document.getElementById("redeem-error");
  var pending = 0;
  var timer = null;

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function show(data) {
    var body = preview.querySelector("tbody");
    body.textContent = "";
    data.lines.forEach(function (line) {
      var row = document.createElement("tr");
      row.appendChild(cell(line.unit));
      row.appendChild(cell(String(line.points)));
      row.appendChild(cell("¥" + line.value_cny));
      body.appendChild(row);
    });
    preview.querySelector('[data-field="total"]').textContent = "¥" + data.total_value_cny;
    preview.hidden = data.lines.length === 0;
    error.hidden = true;
  }

  function refuse(message) {
    preview.hidden = true;
    error.textContent = message;
    error.hidden = !message;
  }

  function quote() {
    var params = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (field) {
      if ((/^p\d+$/.test(field.name) || field.name === "rest") && field.value) { params.set(field.name, field.value); }
    });
    var mine = ++pending;
    fetch(form.dataset.quoteUrl + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (mine !== pending) { return; }  // a later input has asked since
        if (data.error) { refuse(params.toString() ? data.error.message : ""); } else { show(data); }
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
