// Slipway dashboard: live updates only. Pages are rendered on the server;
// this refreshes a job list that has unfinished jobs and streams a running
// job's log (server-sent events from the API, authenticated by the session
// cookie, read-only).
"use strict";

function human(ms) {
  if (ms < 1000) return ms + "ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
  const m = Math.floor(ms / 60000), s = Math.floor((ms % 60000) / 1000);
  return m + "m" + String(s).padStart(2, "0") + "s";
}

function refreshJobs(box) {
  const every = Number(box.dataset.refresh || 0);
  if (!every) return;
  setTimeout(async () => {
    try {
      const page = await fetch(location.href, { credentials: "same-origin" });
      const doc = new DOMParser().parseFromString(await page.text(), "text/html");
      const fresh = doc.getElementById("jobs");
      if (fresh) {
        box.replaceChildren(...fresh.childNodes);
        box.dataset.refresh = fresh.dataset.refresh || "";
      }
    } catch (e) { /* try again at the next tick */ }
    refreshJobs(box);
  }, every);
}

function followLog(pre) {
  const id = pre.dataset.job, start = Number(pre.dataset.start);
  let n = pre.querySelectorAll("span.line").length;
  // Resume after what the page already shows (its byte offset in the log).
  const source = new EventSource("/api/v1/jobs/" + id + "/logs?follow=true&offset=" + pre.dataset.offset);
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
    line.append(t, " ", s, " ", rest, "\n");
    pre.append(line);
    pre.scrollTop = pre.scrollHeight;
  };
  source.addEventListener("end", () => { source.close(); location.reload(); });
}

document.addEventListener("DOMContentLoaded", () => {
  const jobs = document.getElementById("jobs");
  if (jobs) refreshJobs(jobs);
  const log = document.getElementById("log");
  if (log && log.dataset.follow) followLog(log);
});
