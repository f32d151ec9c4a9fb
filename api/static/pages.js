// The job pages' live updates (api/templates): what a page needs comes in its <body>'s data attributes.
"use strict";

// A count as the page shows it: a finite number, else 0. An event's values are never markup.
function count(value) {
  const number = Number(value);
  return Number.isFinite(number) ? number : 0;
}

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

// The progress bar and "done/total", as nodes.
function bar(job) {
  const done = count(job.done), total = count(job.total);
  const pct = total > 0 ? Math.min(100, Math.max(0, Math.round(100 * done / total))) : (job.state === "succeeded" ? 100 : 0);
  const filled = element("span");
  filled.style.width = pct + "%";
  return [element("span", {className: "bar", title: `${done}/${total}`}, filled), total > 0 ? ` ${done}/${total}` : ""];
}

function live(url, onEvent) {
  const source = new EventSource(url);
  const status = document.getElementById("live");
  source.onopen = () => status.textContent = "live";
  source.onerror = () => status.textContent = "reconnecting…";
  for (const kind of ["job", "state", "progress"]) source.addEventListener(kind, e => onEvent(JSON.parse(e.data), kind));
  return source;
}

function newRow(job) {
  const link = element("a", {href: "/ui/jobs/" + encodeURIComponent(job.id)}, element("code", {textContent: job.id}));
  return element("tr", {id: "job-" + job.id}, element("td", {}, link), element("td", {textContent: job.name}),
    element("td", {textContent: job.vendor}), element("td", {className: "state"}), element("td", {className: "progress"}),
    element("td", {className: "credits"}), element("td", {textContent: "0s"}), element("td", {className: "error"}));
}

function jobsPage(filters) {
  live("/v1/events", job => {
    let row = document.getElementById("job-" + job.id);
    if (!row) {
      if ((filters.state && filters.state !== job.state) || (filters.vendor && filters.vendor !== job.vendor)) return;
      row = newRow(job);
      document.querySelector("#jobs tbody").prepend(row);
    }
    const state = row.querySelector(".state");
    state.textContent = job.state; state.className = "state " + job.state;
    row.querySelector(".progress").replaceChildren(...bar(job), " ", element("span", {className: "phase", textContent: job.phase}));
    row.querySelector(".credits").textContent = count(job.credits);
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
    document.getElementById("progress").replaceChildren(...bar(job));
    document.getElementById("phase").textContent = job.phase;
    document.getElementById("credits").textContent = count(job.credits);
    if (["succeeded", "failed", "canceled"].includes(job.state)) { source.close(); setTimeout(() => location.reload(), 500); }
  });
}

// The job's tasks in Flower, asked for once the page is shown: a slow Flower delays only this list.
async function showTasks(jobId) {
  const list = document.getElementById("tasks");
  if (!list) return;
  const answer = await fetch("/ui/jobs/" + encodeURIComponent(jobId) + "/tasks", {credentials: "same-origin"});
  const tasks = answer.ok ? (await answer.json()).tasks : [];
  list.replaceChildren(...tasks.map(task => element("li", {},
    element("a", {href: task.url, target: "_blank", rel: "noopener"}, task.name + " ", element("code", {textContent: task.uuid})),
    " " + task.state)));
  if (!tasks.length) list.replaceChildren(element("li", {textContent: "Flower did not answer"}));
}

document.addEventListener("DOMContentLoaded", () => {
  // Widths come as data, set here: the policy allows no inline style.
  for (const filled of document.querySelectorAll(".bar > span[data-pct]")) filled.style.width = count(filled.dataset.pct) + "%";
  const page = document.body.dataset;
  if (page.page === "jobs") jobsPage({state: page.state, vendor: page.vendor});
  if (page.page === "job") { showTasks(page.jobId); jobPage(page.jobId, page.finished === "true"); }
});
