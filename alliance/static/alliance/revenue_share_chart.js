// Draws the revenue-share chart from the JSON the page carries (the table beside it has the same numbers).
(function () {
  "use strict";
  function draw() {
    var source = document.getElementById("revenue-share-data");
    var canvas = document.getElementById("revenue-share-chart");
    if (!source || !canvas || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.months,
        datasets: data.banks.map(function (bank) {
          return {
            label: bank.label,
            data: bank.values,
            borderColor: bank.colour,
            backgroundColor: bank.colour,
            spanGaps: true,
            tension: 0.2
          };
        })
      },
      options: {
        animation: false,
        responsive: true,
        scales: { y: { beginAtZero: true, title: { display: true, text: data.unit } } }
      }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
