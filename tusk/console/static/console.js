// tusk console: keeps the DAG and logs live by polling small JSON endpoints.
// Vanilla JavaScript, no build step; loaded as a file because the pages'
// Content-Security-Policy allows no inline script. Text is set with
// textContent only, never innerHTML: names and log lines stay text.
"use strict";

const POLL_MS = 2000;

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

function startDag(root) {
  const stateUrl = root.dataset.stateUrl;
  const shape = root.dataset.shape;
  const status = document.getElementById("dag-status");
  const barWidth = (node) => {
    const bg = node.querySelector(".bar-bg");
    return bg ? parseFloat(bg.getAttribute("width")) : 0;
  };
  async function poll() {
    try {
      const resp = await fetch(stateUrl, { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      if (data.shape !== shape) { window.location.reload(); return; }
      for (const node of root.querySelectorAll("g.node.pipeline")) {
        const p = data.pipelines[node.dataset.pipeline];
        if (!p) continue;
        setText(node.querySelector('[data-field="state"]'), "pipeline " + p.state);
        const j = p.job;
        const w = barWidth(node);
        let pr = 0, sk = 0, fa = 0, tot = 1;
        if (j) {
          const done = j.processed + j.skipped + j.failed;
          setText(node.querySelector('[data-field="job"]'),
                  "job " + j.state + " " + done + "/" + j.total);
          pr = j.processed; sk = j.skipped; fa = j.failed;
          tot = Math.max(j.total, done, 1);
        }
        const x0 = 10, w1 = w * pr / tot, w2 = w * sk / tot, w3 = w * fa / tot;
        const set = (field, x, width) => {
          const r = node.querySelector('[data-field="' + field + '"]');
          if (r) { r.setAttribute("x", x.toFixed(1)); r.setAttribute("width", width.toFixed(1)); }
        };
        set("bar-p", x0, w1); set("bar-s", x0 + w1, w2); set("bar-f", x0 + w1 + w2, w3);
        node.classList.toggle("bad", !!(j && (j.state === "failure" || j.state === "killed"
                                             || j.state === "unrunnable")));
        node.classList.toggle("ok", !!(j && j.state === "success"));
        const cell = document.querySelector(
          '[data-pipeline-job-state="' + CSS.escape(node.dataset.pipeline) + '"] .badge');
        if (cell && j) setText(cell, j.state);
      }
      root.dataset.updated = String(Date.now());
      setText(status, "Last update " + new Date().toLocaleTimeString() + ".");
    } catch (err) {
      setText(status, "Update failed (" + err.message + "); retrying.");
    }
    setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
}

function startLogs(box) {
  const url = box.dataset.logsUrl;
  const status = document.getElementById("log-status");
  let count = box.querySelectorAll(".log").length;
  if (box.dataset.done === "1") return;
  async function poll() {
    let done = false;
    try {
      const resp = await fetch(url, { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      done = data.done;
      if (data.lines.length !== count) {
        const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
        const frag = document.createDocumentFragment();
        for (const ln of data.lines) {
          const div = document.createElement("div");
          div.className = "log " + ln.stream;
          for (const [cls, text] of [["ts", ln.ts], ["datum", ln.datum], ["msg", ln.message]]) {
            const span = document.createElement("span");
            span.className = cls;
            span.textContent = text;
            div.append(span, " ");
          }
          frag.append(div);
        }
        box.replaceChildren(frag);
        count = data.lines.length;
        if (atBottom) box.scrollTop = box.scrollHeight;
      }
      box.dataset.updated = String(Date.now());
      setText(status, done ? "finished" : "following… (" + count + " lines)");
    } catch (err) {
      setText(status, "update failed (" + err.message + "); retrying");
    }
    if (!done) setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const dag = document.getElementById("dag");
  if (dag && dag.dataset.stateUrl) startDag(dag);
  const logs = document.getElementById("logs");
  if (logs && logs.dataset.logsUrl) startLogs(logs);
});
