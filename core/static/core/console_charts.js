// Draws each dashboard chart from the JSON beside it; the table next to the chart holds the same numbers.
document.querySelectorAll("canvas[data-console-chart]").forEach((canvas) => {
  const source = document.getElementById(canvas.dataset.consoleChart.replace("console-chart-", ""));
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  new Chart(canvas, {
    type: "line",
    data: {
      labels: data.labels,
      datasets: data.series.map((series) => ({ label: series.label, data: series.values, tension: 0.2 })),
    },
    options: { animation: false, responsive: true, scales: { y: { beginAtZero: true } } },
  });
});
