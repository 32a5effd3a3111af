// Calls to the JSON API with the dashboard session: the cookie goes by itself,
// the CSRF token (from the page's <meta name="csrf-token">) in a header.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export async function apiCall(method, path, { body, etag } = {}) {
  const headers = { "Accept": "application/json", "X-CSRF-Token": csrf };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
    return { ok: false, status: 0, data: null, etag: null,
             message: `The master did not answer (${err.message}).` };
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch { data = null; }
  }
  const error = data && data.error ? data.error : null;
  return {
    ok: response.ok,
    status: response.status,
    data,
    etag: response.headers.get("ETag"),
    message: error ? error.message : (response.ok ? "" : `HTTP ${response.status}`),
    fields: error && Array.isArray(error.fields) ? error.fields : [],
  };
}

// "2026-01-01 00:00:00 UTC", as the pages write times.
export function formatTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

// A status line for screen readers and eyes alike.
export function say(element, text, kind = "info") {
  if (!element) return;
  element.textContent = text;
  element.dataset.kind = kind;
}
