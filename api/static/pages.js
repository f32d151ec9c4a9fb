// The job pages' live updates (api/templates): what a page needs comes in its <body>'s data attributes.
"use strict";

function bar(job) {
  const pct = job.total ? Math.round(100 * job.done / job.total) : (job.state === "succeeded" ? 100 : 0);
  return `<span class="bar" title="${job.done}/${job.total}"><span style="width:${pct}%"></span></span> ${job.total ? job.done + "/" + job.total : ""}`;
}

function live(url, onEvent) {
  const source = new EventSource(url);
  const status = document.getElementById("live");
  source.onopen = () => status.textContent = "live";
  source.onerror = () => status.textContent = "reconnecting…";
  for (const kind of ["job", "state", "progress"]) source.addEventListener(kind, e => onEvent(JSON.parse(e.data), kind));
  return source;
}

function jobsPage(filters) {
  const text = s => { const d = document.createElement("div"); d.textContent = s ?? ""; return d.innerHTML; };
  live("/v1/events", job => {
    let row = document.getElementById("job-" + job.id);
    if (!row) {
      if ((filters.state && filters.state !== job.state) || (filters.vendor && filters.vendor !== job.vendor)) return;
      row = document.createElement("tr");
      row.id = "job-" + job.id;
      row.innerHTML = `<td><a href="/ui/jobs/${encodeURIComponent(job.id)}"><code>${text(job.id)}</code></a></td><td>${text(job.name)}</td>
        <td>${text(job.vendor)}</td><td class="state"></td><td class="progress"></td><td class="credits"></td><td>0s</td><td class="error"></td>`;
      document.querySelector("#jobs tbody").prepend(row);
    }
    const state = row.querySelector(".state");
    state.textContent = job.state; state.className = "state " + job.state;
    row.querySelector(".progress").innerHTML = bar(job) + ` <span class="phase">${text(job.phase)}</span>`;
    row.querySelector(".credits").textContent = job.credits;
    row.querySelector(".error").textContent = job.error ? job.error.type : "";
  });
}

function jobPage(jobId, finished) {
  if (finished) {
    document.getElementById("live").textContent = "ended";
    return;
  }
  const source = live("/v1/jobs/" + encodeURIComponent(jobId) + "/events", job => {
    document.getElementById("state").textContent = job.state;
    document.getElementById("state").className = "state " + job.state;
    document.getElementById("progress").innerHTML = bar(job);
    document.getElementById("phase").textContent = job.phase;
    document.getElementById("credits").textContent = job.credits;
    if (["succeeded", "failed", "canceled"].includes(job.state)) { source.close(); setTimeout(() => location.reload(), 500); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset;
  if (page.page === "jobs") jobsPage({state: page.state, vendor: page.vendor});
  if (page.page === "job") jobPage(page.jobId, page.finished === "true");
});
