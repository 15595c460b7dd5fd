// Draws the spending page's charts from the JSON it carries; the table beside each chart has the same numbers, and
// without this script (or Chart.js) the page shows the tables only.
(function () {
  "use strict";
  function draw() {
    var source = document.getElementById("spending-data");
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    data.charts.forEach(function (chart) {
      var canvas = document.getElementById(chart.canvas);
      if (!canvas) {
        return;
      }
      var scale = Math.pow(10, chart.exponent);
      canvas.closest("figure").hidden = false;
      new window.Chart(canvas, {
        type: "bar",
        data: {
          labels: chart.months,
          datasets: chart.series.map(function (series) {
            return {
              label: series.label,
              data: series.values.map(function (minor) { return minor / scale; }),
              backgroundColor: series.colour,
              borderColor: series.colour
            };
          })
        },
        options: {
          animation: false,
          responsive: true,
          scales: {
            x: { stacked: true },
            y: { stacked: true, beginAtZero: true, title: { display: true, text: chart.unit } }
          }
        }
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
