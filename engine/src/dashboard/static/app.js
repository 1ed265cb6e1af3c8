// Slipway dashboard: live updates only. Pages are rendered on the server;
// this refreshes the parts of a page marked `data-refresh` (a job list with
// unfinished jobs, a service's state and log, deployments), streams a
// running job's log (server-sent events from the API, authenticated by the
// session cookie, read-only) and unfolds the log step a link points into.
"use strict";

function human(ms) {
  if (ms < 1000) return ms + "ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
  const m = Math.floor(ms / 60000), s = Math.floor((ms % 60000) / 1000);
  return m + "m" + String(s).padStart(2, "0") + "s";
}

// Fetch the page again and swap in the fresh copy of `box` (same id),
// keeping the folds a person opened or closed.
function refresh(box) {
  const every = Number(box.dataset.refresh || 0);
  if (!every || !box.id) return;
  setTimeout(async () => {
    try {
      const page = await fetch(location.href, { credentials: "same-origin" });
      if (page.ok) {
        const doc = new DOMParser().parseFromString(await page.text(), "text/html");
        const fresh = doc.getElementById(box.id);
        if (fresh) {
          const scrolled = [...box.querySelectorAll(".log")].map((l) => l.scrollTop);
          box.replaceChildren(...fresh.childNodes);
          box.dataset.refresh = fresh.dataset.refresh || "";
          box.querySelectorAll(".log").forEach((l, i) => { l.scrollTop = scrolled[i] ?? l.scrollHeight; });
        }
      }
    } catch (e) { /* try again at the next tick */ }
    refresh(box);
  }, every);
}

function followLog(log) {
  const id = log.dataset.job, start = Number(log.dataset.start);
  let n = log.querySelectorAll("span.line").length;
  // Resume after what the page already shows (its byte offset in the log).
  const source = new EventSource("/api/v1/jobs/" + id + "/logs?follow=true&offset=" + log.dataset.offset);
  source.onmessage = (event) => {
    const text = event.data;
    const first = text.indexOf(" "), second = text.indexOf(" ", first + 1);
    const stamp = Number(text.slice(0, first));
    const stream = second > 0 ? text.slice(first + 1, second) : "";
    const rest = second > 0 ? text.slice(second + 1) : text;
    n++;
    const line = document.createElement("span");
    line.id = "L" + n;
    line.className = "line " + ({ slipway: "engine", stderr: "stderr", build: "build", stdout: "stdout" }[stream] || "service");
    const t = document.createElement("span"); t.className = "t"; t.textContent = "+" + human(Math.max(0, stamp - start));
    const s = document.createElement("span"); s.className = "s"; s.textContent = stream;
    line.append(t, " ", s, " ", ...ansiRuns(rest), "\n");
    log.append(line);
    log.scrollTop = log.scrollHeight;
  };
  // The record now has every step: reload for the folded, final page.
  source.addEventListener("end", () => { source.close(); location.reload(); });
}

// A link to a line (#L42) inside a folded step unfolds it.
function unfoldTarget() {
  const target = location.hash.length > 1 && document.getElementById(location.hash.slice(1));
  if (!target) return;
  const fold = target.closest("details");
  if (fold && !fold.open) { fold.open = true; target.scrollIntoView({ block: "center" }); }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  const log = document.getElementById("log");
  if (log && log.dataset.follow) followLog(log);
  unfoldTarget();
  window.addEventListener("hashchange", unfoldTarget);
});

// Terminal colours (ESC [ ... m) as spans with a class, as the server
// renders them (dashboard/ansi.rs); other escapes and control characters
// are dropped. Text goes in through textContent only.
function ansiRuns(text) {
  const out = [];
  let fg = null, bold = false, buf = "";
  const flush = () => {
    if (!buf) return;
    const cls = [fg === null ? "" : "fg-" + fg, bold ? "b" : ""].filter(Boolean).join(" ");
    if (cls) { const span = document.createElement("span"); span.className = cls; span.textContent = buf; out.push(span); }
    else out.push(buf);
    buf = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== "\x1b") { if (c >= " " || c === "\t") buf += c; continue; }
    if (text[i + 1] !== "[") { i++; continue; }
    let j = i + 2;
    while (j < text.length && !(text[j] >= "@" && text[j] <= "~")) j++;
    const params = text.slice(i + 2, j), final = text[j];
    i = j;
    if (final !== "m") continue;
    flush();
    const codes = params === "" ? [0] : params.split(";").map((p) => Number(p) || 0);
    for (let k = 0; k < codes.length; k++) {
      const n = codes[k];
      if (n === 0) { fg = null; bold = false; }
      else if (n === 1) bold = true;
      else if (n === 22) bold = false;
      else if (n >= 30 && n <= 37) fg = n - 30;
      else if (n >= 90 && n <= 97) fg = n - 90 + 8;
      else if (n === 39) fg = null;
      else if (n === 38) k += codes[k + 1] === 5 ? 2 : 4;
    }
  }
  flush();
  return out;
}
