// Polls GET /v1/dashboard once a second and redraws the tables. A token, if
// serve wants one, comes from the page's fragment (#token=...), which the
// browser never sends to the server.
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function age(seconds) {
  if (seconds < 90) return seconds.toFixed(0) + " s";
  if (seconds < 5400) return (seconds / 60).toFixed(0) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function bar(td, b) {
  const total = b.total_chunks;
  const div = document.createElement("div");
  div.className = "bar";
  const done = document.createElement("div");
  done.className = "done";
  const failed = document.createElement("div");
  failed.className = "failed";
  const label = document.createElement("span");
  label.className = "label";
  if (total) {
    done.style.width = (100 * b.succeeded / total) + "%";
    failed.style.left = done.style.width;
    failed.style.width = (100 * b.failed / total) + "%";
    label.textContent = Math.floor(100 * b.progress) + "%";
  } else {
    label.textContent = b.done + " done, not sealed";
  }
  div.append(done, failed, label);
  td.appendChild(div);
}

function drawBatches(batches) {
  const body = document.querySelector("#batches tbody");
  body.replaceChildren();
  for (const b of batches) {
    const row = body.insertRow();
    row.dataset.batch = b.batch_id;
    row.dataset.state = b.state;
    row.dataset.status = b.status;
    cell(row, b.batch_id, "id");
    const s = cell(row, b.state === "complete" ? "complete: " + b.status : b.state);
    s.className = "state state-" + b.state + " status-" + b.status;
    bar(row.insertCell(), b);
    cell(row, b.done + " / " + (b.total_chunks === null ? "?" : b.total_chunks), "num");
    cell(row, b.succeeded, "num");
    cell(row, b.failed, "num");
    cell(row, b.outstanding, "num");
    cell(row, age(b.age_s), "num");
  }
  document.getElementById("no-batches").hidden = batches.length > 0;
}

function drawQueues(queues) {
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  for (const q of queues) {
    const row = body.insertRow();
    cell(row, q.queue);
    cell(row, q.group);
    cell(row, q.depth, "num");
    cell(row, q.in_flight < 0 ? "?" : q.in_flight, "num");
    cell(row, q.consumers, "num");
    cell(row, q.dead_letters, "num");
  }
}

function drawAlarms(alarms) {
  const list = document.getElementById("alarms");
  list.replaceChildren();
  for (const a of alarms) {
    const li = document.createElement("li");
    li.textContent = a.alarm + " on " + a.queue + " since " + a.raised_at + ": " + a.message;
    list.appendChild(li);
  }
  if (!alarms.length) list.textContent = "none raised";
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const r = await fetch("/v1/dashboard", { headers: token ? { Authorization: "Bearer " + token } : {} });
    if (!r.ok) throw new Error("GET /v1/dashboard: " + r.status);
    const d = await r.json();
    // Open batches first, then the most recent decided ones.
    d.batches.sort((a, b) => (a.state === "complete") - (b.state === "complete") || a.age_s - b.age_s);
    drawBatches(d.batches);
    drawQueues(d.queues);
    drawAlarms(d.alarms);
    document.getElementById("bus").textContent = d.bus;
    document.getElementById("updated").textContent = "updated " + d.time;
    error.hidden = true;
  } catch (e) {
    error.textContent = String(e);
    error.hidden = false;
  } finally {
    setTimeout(refresh, 1000);
  }
}
refresh();
