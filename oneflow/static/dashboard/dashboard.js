/* Progressive enhancement for the dashboard: every page works without it.
   (The organization switcher keeps its button: switching on "change" would
   fire while a keyboard user arrows through the options, WCAG 3.2.2.) */
(function () {
  "use strict";

  function copyButtons(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var field = document.getElementById(button.dataset.copy);
        var status = button.parentElement.querySelector(".copy-status");
        navigator.clipboard.writeText(field.value).then(function () {
          if (status) status.textContent = "Copied to the clipboard.";
        }, function () {
          field.select();
          if (status) status.textContent = "Copy failed: the secret is selected, press Ctrl+C.";
        });
      });
    });
  }

  function left(until) {
    var seconds = Math.max(0, Math.floor((until - Date.now()) / 1000));
    if (seconds === 0) return "no time";
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + s + "s";
  }

  function countdowns(root) {
    var items = Array.prototype.slice.call(root.querySelectorAll("[data-countdown-left]"));
    if (!items.length) return;
    function tick() {
      items.forEach(function (item) { item.textContent = left(Date.parse(item.dataset.countdownLeft)); });
    }
    tick();
    window.setInterval(tick, 1000);
  }

  function charts(root) {
    if (!window.Chart) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chartSource);
      if (!source) return;
      var data = JSON.parse(source.textContent);
      var spend = canvas.dataset.chart === "spend";
      new window.Chart(canvas, {
        type: spend ? "bar" : "line",
        data: {
          labels: data.labels,
          datasets: [{
            label: spend ? "Credits" : "Requests",
            data: (spend ? data.spend : data.requests).map(Number),
            backgroundColor: spend ? "#0b57d0" : "rgba(11, 87, 208, 0.15)",
            borderColor: "#0b57d0",
            fill: !spend,
            tension: 0.2
          }]
        },
        options: {
          animation: false,
          maintainAspectRatio: false,
          plugins: { legend: { display: false } },
          scales: { y: { beginAtZero: true } }
        }
      });
    });
  }

  function enhance(root) {
    copyButtons(root);
    countdowns(root);
    charts(root);
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
})();
