// A running run's output, live: server-sent events from the master
// ({"offset", "data"} messages, then "end" with the final status). Without
// the live endpoint the page keeps the stored output it was rendered with.
const box = document.getElementById("output");
const state = document.getElementById("live-state");
const statusBox = document.getElementById("run-status");
const encoder = new TextEncoder();

function setStatus(status) {
  const badge = document.createElement("span");
  badge.className = `badge ${status}`;
  badge.textContent = status;
  statusBox.dataset.status = status;
  statusBox.replaceChildren(badge);
}

function follow() {
  const record = box.dataset.record;
  const pre = document.createElement("pre");
  pre.className = "log";
  pre.tabIndex = 0;
  pre.setAttribute("aria-label", "Output (live)");
  let expected = 0;
  let started = false;
  const source = new EventSource(`/api/runs/${encodeURIComponent(record)}/live`);
  state.textContent = "Connecting to the live output…";

  source.onopen = () => {
    state.textContent = "Following the output live.";
  };
  source.onmessage = (event) => {
    let chunk;
    try { chunk = JSON.parse(event.data); } catch { return; }
    if (!started) {
      // The stream starts from the first byte: it replaces the stored copy.
      box.replaceChildren(pre);
      started = true;
    }
    if (chunk.offset > expected) {
      const gap = document.createElement("span");
      gap.className = "gap";
      gap.textContent = `\n… ${chunk.offset - expected} bytes not shown …\n`;
      pre.append(gap);
    }
    pre.append(document.createTextNode(chunk.data));
    expected = Math.max(expected, chunk.offset + encoder.encode(chunk.data).length);
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    if (atBottom) pre.scrollIntoView({ block: "end" });
  };
  source.addEventListener("end", (event) => {
    source.close();
    let status = "";
    try { status = JSON.parse(event.data).status ?? ""; } catch { status = ""; }
    if (status) setStatus(status);
    state.textContent = `The run ended${status ? ` (${status})` : ""}. Reload for its exit code and duration.`;
  });
  source.addEventListener("error", (event) => {
    // A stream that ends without "end", or no live endpoint at all: stop
    // rather than reconnect, and keep what is shown.
    source.close();
    let message = "";
    if (event.data) {
      try { message = JSON.parse(event.data).message ?? ""; } catch { message = ""; }
    }
    state.textContent = message
      ? `Live output stopped: ${message}`
      : "Live output is not available; this is the output stored so far. Reload to update it.";
  });
}

if (box && box.dataset.live === "true" && typeof EventSource === "function") follow();

// Handlers attached: tests (and scripts) may act on the page now.
document.documentElement.dataset.scriptReady = "true";
