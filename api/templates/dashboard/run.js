// Live progress of the run page: listens to the run's server-sent events and updates the figures;
// reloads the page once the report is ready. No framework, no build step.
(function () {
  "use strict";
  var section = document.getElementById("progress-section");
  if (!section || !window.EventSource) { return; }
  var runId = section.getAttribute("data-run-id");
  if (section.getAttribute("data-live") !== "true") { return; }
  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }
  function duration(s) {
    if (s === null || s === undefined) { return "\u2013"; }
    if (s < 60) { return Math.round(s) + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  var source = new EventSource("/dashboard/runs/" + encodeURIComponent(runId) + "/events");
  source.addEventListener("progress", function (event) {
    var run = JSON.parse(event.data);
    var status = document.getElementById("run-status");
    if (status) { status.textContent = run.status; status.className = "status status-" + run.status; }
    var bar = document.getElementById("run-progress");
    if (bar) { bar.max = run.total || 1; bar.value = run.done + run.failed + run.cancelled; }
    text("run-total", run.total); text("run-done", run.done); text("run-cached", run.cached);
    text("run-failed", run.failed); text("run-cancelled", run.cancelled); text("run-remaining", run.remaining);
    text("run-rate", (run.rate_per_s === null ? "\u2013" : run.rate_per_s.toFixed(2)) + "/s");
    text("run-eta", duration(run.eta_s));
    text("run-cost", "$" + Number(run.cost_usd || 0).toFixed(4));
    text("run-tokens", run.input_tokens + " / " + run.output_tokens);
    var budget = document.getElementById("budget-progress");
    if (budget) { budget.value = run.cost_usd || 0; }
    (run.per_model || []).forEach(function (m) {
      var rows = document.querySelectorAll("#per-model tr.model-row");
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].getAttribute("data-model") !== m.model) { continue; }
        var row = rows[i];
        var put = function (cls, value) { var el = row.querySelector("." + cls); if (el) { el.textContent = value; } };
        var bar = row.querySelector(".pm-progress");
        if (bar) { bar.max = m.total || 1; bar.value = m.done + m.failed + m.cancelled; }
        var meter = row.querySelector(".pm-rate-meter");
        if (meter) { meter.value = m.calls_last_minute; }
        put("pm-done", m.done); put("pm-failed", m.failed); put("pm-remaining", m.remaining);
        put("pm-cached", m.cached); put("pm-rate", m.calls_last_minute); put("pm-eta", duration(m.eta_s));
        put("pm-cost", "$" + Number(m.cost_usd || 0).toFixed(4));
        var pace = (m.limiter_rpm !== null && m.limiter_rpm !== undefined) ? m.limiter_rpm : m.paced_rpm;
        put("pm-pace", pace === null || pace === undefined ? "\u2013" : Number(pace).toFixed(1));
        var slowed = (m.limiter_factor !== null && m.limiter_factor < 1) ? "slowed \u00d7" + m.limiter_factor.toFixed(2) : "";
        if (m.blocked_for_s) { slowed += " held " + m.blocked_for_s.toFixed(1) + " s"; }
        put("pm-slowed", slowed);
        put("pm-429", m.provider_429s === null || m.provider_429s === undefined ? "\u2013" : m.provider_429s);
        put("pm-failures", (m.failures_by_kind || []).map(function (f) { return f.kind + " (" + f.count + ")"; }).join(", "));
      }
    });
  });
  source.addEventListener("end", function () { text("live-note", "finished; computing the report\u2026"); });
  source.addEventListener("report", function () { source.close(); window.location.reload(); });
})();
