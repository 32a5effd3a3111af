// The jobs list: pause/resume, run now and kill through the API, and a light
// refresh of each row's live state (last run, running now, next run).
import { apiCall, formatTime, say } from "./api.js";

const table = document.querySelector("table.jobs");
const flash = document.getElementById("flash");
const REFRESH_MS = 2000;

function row(name) {
  for (const tr of table.tBodies[0].rows) {
    if (tr.dataset.job === name) return tr;
  }
  return null;
}

function setEnabled(tr, enabled) {
  const button = tr.querySelector('[data-action="toggle"]');
  if (button) {
    button.setAttribute("aria-checked", String(enabled));
    button.textContent = enabled ? "Enabled" : "Paused";
  }
  tr.classList.toggle("paused", !enabled);
}

function timeElement(ms) {
  const time = document.createElement("time");
  time.dateTime = new Date(ms).toISOString();
  time.textContent = formatTime(ms);
  return time;
}

function showNext(tr, job) {
  const cell = tr.querySelector('[data-cell="next"]');
  if (!cell) return;
  if (!job.enabled || job.next_fire === null) {
    const span = document.createElement("span");
    span.className = "muted";
    span.textContent = job.enabled ? "never" : "paused";
    cell.replaceChildren(span);
  } else {
    cell.replaceChildren(timeElement(job.next_fire));
  }
}

function showLast(tr, job) {
  const cell = tr.querySelector('[data-cell="last"]');
  const live = tr.querySelector('[data-cell="running"]');
  if (!cell || !live) return;
  const last = job.last_run;
  const parts = [];
  if (last) {
    const link = document.createElement("a");
    link.className = `badge ${last.status}`;
    link.href = `/runs/${encodeURIComponent(last.record_id)}`;
    link.textContent = last.status;
    const when = document.createElement("span");
    when.className = "when";
    when.append(timeElement(last.started ?? last.tick));
    parts.push(link, " ", when);
  } else {
    const never = document.createElement("span");
    never.className = "muted";
    never.textContent = "never";
    parts.push(never);
  }
  live.hidden = job.running.length === 0;
  if (job.running.length) live.href = `/runs/${encodeURIComponent(job.running[0])}`;
  cell.replaceChildren(...parts, " ", live);
  const kill = tr.querySelector('[data-action="kill"]');
  if (kill) kill.hidden = job.running.length === 0;
}

async function refresh() {
  if (document.hidden) return;
  const params = new URLSearchParams(window.location.search);
  params.set("limit", table.dataset.pageSize);
  const answer = await apiCall("GET", `/api/jobs?${params}`);
  if (!answer.ok) return;
  for (const job of answer.data.jobs) {
    const tr = row(job.name);
    if (!tr) continue;
    setEnabled(tr, job.enabled);
    showNext(tr, job);
    showLast(tr, job);
  }
}

async function act(button) {
  const name = button.dataset.job;
  const tr = row(name);
  const path = `/api/jobs/${encodeURIComponent(name)}`;
  button.disabled = true;
  try {
    if (button.dataset.action === "toggle") {
      const enable = button.getAttribute("aria-checked") !== "true";
      const answer = await apiCall("POST", `${path}/${enable ? "resume" : "pause"}`);
      if (!answer.ok) return say(flash, `${name}: ${answer.message}`, "error");
      setEnabled(tr, answer.data.enabled);
      showNext(tr, { ...answer.data });
      say(flash, `${name} ${answer.data.enabled ? "resumed" : "paused"}.`);
    } else if (button.dataset.action === "run") {
      const answer = await apiCall("POST", `${path}/run`);
      if (!answer.ok) return say(flash, `${name}: ${answer.message}`, "error");
      say(flash, `${name}: run ${answer.data.run_id} requested; a worker will start it.`);
    } else if (button.dataset.action === "kill") {
      const answer = await apiCall("POST", `${path}/kill`, { body: {} });
      if (!answer.ok) return say(flash, `${name}: ${answer.message}`, "error");
      const runs = answer.data.requested;
      say(flash, runs.length ? `${name}: stopping ${runs.join(", ")}.`
                             : `${name}: nothing was running.`);
    }
  } finally {
    button.disabled = false;
  }
  refresh();
}

if (table) {
  table.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button && table.contains(button)) act(button);
  });
  window.setInterval(refresh, REFRESH_MS);
  document.addEventListener("visibilitychange", refresh);
}

// Handlers attached: tests (and scripts) may act on the page now.
document.documentElement.dataset.scriptReady = "true";
