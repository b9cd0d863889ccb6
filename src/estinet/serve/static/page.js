// The estinet serve page: upload with progress, poll the jobs, show progress, previews in step, download.
// Plain JavaScript, no build step. Text from the server is only ever set as textContent (never as HTML).
"use strict";

const POLL_MS = 700;
const ACTIVE = new Set(["checking", "queued", "running", "finishing"]);
const STATE_TEXT = {
  checking: "checking",
  queued: "queued",
  running: "deraining",
  finishing: "making the preview",
  done: "done",
  failed: "failed",
  cancelled: "cancelled",
};

const cards = new Map();
let config = null;

const byId = (id) => document.getElementById(id);

function formatBytes(n) {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(0)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

function formatSeconds(s) {
  if (s === null || s === undefined) return "";
  const whole = Math.round(s);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${whole % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function showMessage(text) {
  byId("message").textContent = text;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  }
  return body;
}

// Keep a follower player on the leader's time: play, pause, seek, rate, and drift corrections while playing.
function playInStep(leader, follower) {
  const align = (tolerance) => {
    if (Math.abs(follower.currentTime - leader.currentTime) > tolerance) follower.currentTime = leader.currentTime;
  };
  leader.addEventListener("play", () => {
    align(0.05);
    follower.play().catch(() => {});
  });
  leader.addEventListener("pause", () => {
    follower.pause();
    align(0.01);
  });
  leader.addEventListener("seeking", () => align(0.01));
  leader.addEventListener("seeked", () => {
    align(0.01);
    if (!leader.paused) follower.play().catch(() => {});
  });
  leader.addEventListener("ratechange", () => {
    follower.playbackRate = leader.playbackRate;
  });
  leader.addEventListener("timeupdate", () => align(0.12));
  leader.addEventListener("ended", () => follower.pause());
}

function optionsText(job) {
  const o = job.options;
  const motion = o.motion === null ? "motion: model's default" : `motion ${o.motion ? "on" : "off"}`;
  const output = o.lossless ? "lossless" : `CRF ${o.crf}`;
  const tile = o.tile === null ? "automatic tiles" : o.tile === 0 ? "whole frames" : `${o.tile} px tiles`;
  const parts = [`model ${o.model}`, motion, output, tile];
  if (o.keep_partial) parts.push("frames that decode");
  if (job.width) parts.push(`${job.width}×${job.height}`);
  if (job.device) parts.push(job.device);
  return parts.join(" · ");
}

function progressText(job, bar) {
  switch (job.state) {
    case "checking":
      bar.removeAttribute("value");
      return `reading the upload: ${job.frames_checked} frames so far`;
    case "queued":
      bar.removeAttribute("value");
      return job.position === 1 ? "queued: next in line" : `queued: number ${job.position} in line`;
    case "running": {
      const total = job.frames_total || 1;
      bar.value = job.frames_done / total;
      const parts = [`${job.frames_done} / ${job.frames_total} frames`];
      if (job.fps) parts.push(`${job.fps.toFixed(2)} frames/s`);
      if (job.eta_seconds !== null) parts.push(`about ${formatSeconds(job.eta_seconds)} left`);
      return parts.join(" · ");
    }
    case "finishing":
      bar.value = 1;
      return "making the preview";
    case "done": {
      bar.value = 1;
      const speed = job.fps ? ` at ${job.fps.toFixed(2)} frames/s` : "";
      return `${job.frames_total} frames derained${speed} · removed from the server in ${formatSeconds(
        job.expires_in_seconds,
      )}`;
    }
    case "cancelled":
      return "cancelled; nothing was kept";
    default:
      return "";
  }
}

function newCard(job) {
  const card = byId("job-template").content.firstElementChild.cloneNode(true);
  card.dataset.id = job.id;
  card.querySelector(".cancel").addEventListener("click", async () => {
    try {
      await api(`/api/jobs/${job.id}`, { method: "DELETE", headers: { "X-Estinet": "1" } });
    } catch (error) {
      showMessage(error.message);
    }
    poll();
  });
  playInStep(card.querySelector("video.derained"), card.querySelector("video.rainy"));
  byId("jobs").appendChild(card);
  cards.set(job.id, card);
  return card;
}

function render(job) {
  const card = cards.get(job.id) || newCard(job);
  card.dataset.state = job.state;
  card.querySelector(".name").textContent = job.name;
  card.querySelector(".state").textContent = STATE_TEXT[job.state] + (job.cancelling ? " (cancelling)" : "");
  card.querySelector(".details").textContent = optionsText(job);
  const bar = card.querySelector(".bar");
  bar.hidden = !(ACTIVE.has(job.state) || job.state === "done");
  card.querySelector(".progress-text").textContent = progressText(job, bar);
  card.querySelector(".error").textContent = job.state === "failed" ? job.message : "";
  const cancel = card.querySelector(".cancel");
  cancel.textContent = ACTIVE.has(job.state) ? "Cancel" : "Remove";
  cancel.disabled = job.cancelling;
  if (job.state === "done" && card.dataset.players !== "1") {
    card.dataset.players = "1";
    card.querySelector("video.rainy").src = job.rainy_url;
    card.querySelector("video.derained").src = job.derained_url;
    card.querySelector(".players").hidden = false;
    const link = card.querySelector(".download");
    link.href = job.result_url;
    link.download = job.download_name;
    link.textContent = `Download ${job.download_name}`;
    link.hidden = false;
  }
}

async function poll() {
  let body;
  try {
    body = await api("/api/jobs");
    byId("offline").hidden = true;
  } catch (error) {
    byId("offline").hidden = false;
    return;
  }
  const seen = new Set();
  for (const job of body.jobs) {
    seen.add(job.id);
    render(job);
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  byId("no-jobs").hidden = cards.size > 0;
}

function upload(event) {
  event.preventDefault();
  const file = byId("file").files[0];
  if (!file) {
    showMessage("Choose a video file or a zip of frames first.");
    return;
  }
  if (file.size > config.max_upload_bytes) {
    showMessage(
      `${file.name} is ${formatBytes(file.size)}; this server accepts at most ` +
        `${formatBytes(config.max_upload_bytes)} (--max-upload-mb).`,
    );
    return;
  }
  const quality = byId("quality").value;
  const params = new URLSearchParams({
    name: file.name,
    model: byId("model").value,
    motion: byId("motion").value,
    tile: byId("tile").value,
    lossless: quality === "lossless" ? "1" : "0",
    crf: quality === "lossless" ? "18" : quality,
    keep_partial: byId("keep-partial").checked ? "1" : "0",
  });
  const start = byId("start");
  const bar = byId("upload-progress");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/jobs?${params}`);
  xhr.setRequestHeader("X-Estinet", "1");
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) bar.value = e.loaded / e.total;
  });
  const done = () => {
    start.disabled = false;
    bar.hidden = true;
  };
  xhr.addEventListener("load", () => {
    done();
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (error) {
      body = null;
    }
    if (xhr.status === 201) {
      showMessage("");
      byId("file").value = ""; // the options stay as chosen for the next video
      byId("drop-text").textContent = "Drop another video or zip here, or click to choose one";
      render(body);
      byId("no-jobs").hidden = true;
    } else {
      showMessage(body && body.error ? body.error : `The upload failed (HTTP ${xhr.status}).`);
    }
  });
  xhr.addEventListener("error", () => {
    done();
    showMessage("The upload failed: the server could not be reached or closed the connection.");
  });
  showMessage("");
  start.disabled = true;
  bar.value = 0;
  bar.hidden = false;
  xhr.send(file);
}

function setUpDrop() {
  const drop = byId("drop");
  const input = byId("file");
  const label = () => {
    const file = input.files[0];
    byId("drop-text").textContent = file ? `${file.name} (${formatBytes(file.size)})` : "";
  };
  input.addEventListener("change", label);
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      label();
    }
  });
}

async function main() {
  try {
    config = await api("/api/config");
  } catch (error) {
    showMessage(`Cannot read the server's settings: ${error.message}`);
    return;
  }
  const select = byId("model");
  for (const name of config.models) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    option.selected = option.defaultSelected = name === config.default_model;
    select.appendChild(option);
  }
  byId("limits").textContent =
    `Videos (mp4, mkv, mov, avi, webm, ...) or a zip of frames, up to ${formatBytes(config.max_upload_bytes)} ` +
    `and ${config.max_frames} frames. Results are kept ${config.keep_minutes} minutes after a job ends. ` +
    `Device${config.devices.length > 1 ? "s" : ""}: ${config.devices.join(", ")}, one video at a time each.`;
  setUpDrop();
  byId("upload-form").addEventListener("submit", upload);
  await poll();
  setInterval(poll, POLL_MS);
}

main();
