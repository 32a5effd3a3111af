// The job editor: builds the job's JSON from the form, saves it through the
// API (If-Match on edits), shows the API's errors next to their fields, and
// previews the next fire times as the schedule is typed.
import { apiCall } from "./api.js";

const form = document.getElementById("job-form");
const banner = document.getElementById("form-status");
const previewList = document.getElementById("preview");
const previewError = document.getElementById("preview-error");
const PREVIEW_DELAY_MS = 250;

class FormProblem extends Error {
  constructor(field, reason) {
    super(reason);
    this.field = field;
  }
}

function value(name) {
  const element = form.elements.namedItem(name);
  return element ? element.value.trim() : "";
}

function checked(name) {
  const element = form.elements.namedItem(name);
  return Boolean(element && element.checked);
}

function optional(name) {
  const text = value(name);
  return text === "" ? undefined : text;
}

function number(name) {
  const text = value(name);
  if (text === "") return undefined;
  const parsed = Number(text);
  if (!Number.isFinite(parsed)) throw new FormProblem(name, "must be a number");
  return parsed;
}

function integers(name) {
  const text = value(name);
  if (text === "") return undefined;
  return text.split(/[\s,]+/).filter(Boolean).map((part) => {
    if (!/^-?\d+$/.test(part)) throw new FormProblem(name, `"${part}" is not a whole number`);
    return Number(part);
  });
}

function pairs(name, separator) {
  const out = {};
  const lines = form.elements.namedItem(name).value.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const at = line.indexOf(separator.trim());
    if (at <= 0) {
      throw new FormProblem(name, `line ${index + 1} must read key${separator}value`);
    }
    out[line.slice(0, at).trim()] = line.slice(at + separator.trim().length).trim();
  }
  return out;
}

function kind() {
  return form.querySelector('input[name="kind"]:checked')?.value ?? "shell";
}

// Drop undefined members, so that the API applies its defaults.
function compact(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined));
}

function collect() {
  const job = {
    name: value("name"),
    schedule: value("schedule"),
    timezone: optional("timezone"),
    description: value("description"),
    enabled: checked("enabled"),
    overlap: value("overlap"),
    misfire: value("misfire"),
    misfire_window: number("misfire_window"),
    timeout: number("timeout"),
    kill_grace: number("kill_grace"),
    priority: number("priority"),
    targets: pairs("targets", "="),
    retention_days: number("retention_days"),
    expect_success_within: number("expect_success_within"),
    retry: compact({
      attempts: number("retry.attempts"),
      delay: number("retry.delay"),
      multiplier: number("retry.multiplier"),
      max_delay: number("retry.max_delay"),
      jitter: number("retry.jitter"),
      on_exit_codes: integers("retry.on_exit_codes"),
      on_http_statuses: integers("retry.on_http_statuses"),
      any_worker: checked("retry.any_worker"),
    }),
  };
  if (kind() === "http") {
    job.http = compact({
      url: value("http.url"),
      method: value("http.method"),
      headers: pairs("http.headers", ": "),
      body: form.elements.namedItem("http.body").value || undefined,
      expect_status: integers("http.expect_status"),
      follow_redirects: checked("http.follow_redirects"),
    });
  } else {
    job.command = form.elements.namedItem("command").value;
    job.shell = optional("shell");
    job.cwd = optional("cwd");
    job.user = optional("user");
    job.env = pairs("env", "=");
  }
  return compact(job);
}

// -- errors -------------------------------------------------------------------

function fieldBox(field) {
  // "env.FOO" belongs to the env box, "retry.attempts" to its own.
  const parts = field.split(".");
  while (parts.length) {
    const box = form.querySelector(`.field[data-field="${CSS.escape(parts.join("."))}"]`);
    if (box && !box.closest("[hidden]")) return box;
    parts.pop();
  }
  return null;
}

function clearErrors() {
  for (const box of form.querySelectorAll(".field.invalid")) {
    box.classList.remove("invalid");
    box.querySelector("input, select, textarea")?.removeAttribute("aria-invalid");
    const message = box.querySelector(".field-error");
    message.hidden = true;
    message.textContent = "";
  }
  banner.hidden = true;
  banner.replaceChildren();
}

function showBanner(kind, title, lines = []) {
  banner.dataset.kind = kind;
  const heading = document.createElement("strong");
  heading.textContent = title;
  const parts = [heading];
  if (lines.length) {
    const list = document.createElement("ul");
    for (const line of lines) {
      const item = document.createElement("li");
      if (line instanceof Node) item.append(line); else item.textContent = line;
      list.append(item);
    }
    parts.push(list);
  }
  banner.replaceChildren(...parts);
  banner.hidden = false;
}

function showProblems(problems) {
  const loose = [];
  let first = null;
  for (const { field, reason } of problems) {
    const box = fieldBox(field);
    if (!box) {
      loose.push(`${field}: ${reason}`);
      continue;
    }
    box.classList.add("invalid");
    const control = box.querySelector("input, select, textarea");
    control?.setAttribute("aria-invalid", "true");
    const message = box.querySelector(".field-error");
    const prefix = field === box.dataset.field ? "" : `${field}: `;
    message.textContent = message.hidden ? prefix + reason
                                         : `${message.textContent}; ${prefix}${reason}`;
    message.hidden = false;
    first = first ?? control;
  }
  const count = problems.length;
  showBanner("error", `Not saved: ${count} problem${count === 1 ? "" : "s"} to fix.`, loose);
  first?.focus();
}

// -- saving -------------------------------------------------------------------

async function save(event) {
  event.preventDefault();
  clearErrors();
  let job;
  try {
    job = collect();
  } catch (err) {
    if (err instanceof FormProblem) return showProblems([{ field: err.field, reason: err.message }]);
    throw err;
  }
  const editing = form.dataset.mode === "edit";
  const name = form.dataset.name;
  const answer = editing
    ? await apiCall("PUT", `/api/jobs/${encodeURIComponent(name)}`,
                    { body: job, etag: form.dataset.etag })
    : await apiCall("POST", "/api/jobs", { body: job });
  if (answer.ok) {
    if (!editing) {
      window.location.assign(`/?name=${encodeURIComponent(job.name)}`);
      return;
    }
    form.dataset.etag = answer.etag;
    showBanner("ok", `Saved (revision ${answer.data.revision}).`);
    banner.focus();
    return;
  }
  if (answer.status === 412) {
    const reload = document.createElement("a");
    reload.href = window.location.pathname;
    reload.textContent = "Reload to see the current version";
    showBanner("conflict", "Someone else changed this job since you opened it. Nothing was saved.",
               [`Your copy was revision ${form.dataset.etag.replaceAll('"', "")}.`, reload]);
    banner.focus();
    return;
  }
  if (answer.fields.length) return showProblems(answer.fields);
  showBanner("error", `Not saved: ${answer.message}`);
  banner.focus();
}

async function remove() {
  const name = form.dataset.name;
  if (!window.confirm(`Delete the job ${name}? Its run history stays.`)) return;
  const answer = await apiCall("DELETE", `/api/jobs/${encodeURIComponent(name)}`,
                               { etag: form.dataset.etag });
  if (answer.ok) {
    window.location.assign("/");
    return;
  }
  showBanner(answer.status === 412 ? "conflict" : "error",
             answer.status === 412 ? "Someone else changed this job meanwhile; not deleted."
                                   : `Not deleted: ${answer.message}`);
  banner.focus();
}

// -- preview ------------------------------------------------------------------

function weekday(iso, zone) {
  try {
    return new Intl.DateTimeFormat("en-GB", { weekday: "short", timeZone: zone })
      .format(new Date(iso));
  } catch {
    return "";
  }
}

let previewTimer = null;
let previewSeq = 0;

async function preview() {
  const expr = value("schedule");
  const zone = value("timezone") || "UTC";
  const seq = ++previewSeq;
  if (expr === "") {
    previewList.replaceChildren();
    previewError.hidden = true;
    return;
  }
  const params = new URLSearchParams({ expr, tz: zone, n: "10" });
  const answer = await apiCall("GET", `/api/preview?${params}`);
  if (seq !== previewSeq) return; // a newer preview is on its way
  if (!answer.ok) {
    previewList.replaceChildren();
    const reasons = answer.fields.map((f) => `${f.field === "tz" ? "timezone" : "schedule"}: ${f.reason}`);
    previewError.textContent = reasons.length ? reasons.join("; ") : answer.message;
    previewError.hidden = false;
    return;
  }
  previewError.hidden = true;
  const items = answer.data.next.map((iso) => {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = iso;
    const day = weekday(iso, zone);
    time.textContent = `${day ? day + " " : ""}${iso.replace("T", " ").replace(/([+-]\d\d:\d\d|Z)$/, " $1")}`;
    item.append(time);
    return item;
  });
  if (!items.length) {
    const item = document.createElement("li");
    item.textContent = "This schedule never fires.";
    items.push(item);
  }
  previewList.replaceChildren(...items);
}

function schedulePreview() {
  window.clearTimeout(previewTimer);
  previewTimer = window.setTimeout(preview, PREVIEW_DELAY_MS);
}

function showKind() {
  const http = kind() === "http";
  document.getElementById("http-fields").hidden = !http;
  document.getElementById("shell-fields").hidden = http;
}

if (form) {
  form.addEventListener("submit", save);
  form.elements.namedItem("schedule").addEventListener("input", schedulePreview);
  form.elements.namedItem("timezone").addEventListener("input", schedulePreview);
  for (const radio of form.querySelectorAll('input[name="kind"]')) {
    radio.addEventListener("change", showKind);
  }
  document.getElementById("delete")?.addEventListener("click", remove);
  banner.tabIndex = -1;
  preview();
}

// Handlers attached: tests (and scripts) may act on the page now.
document.documentElement.dataset.scriptReady = "true";
