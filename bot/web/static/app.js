// dreamloom playground: a Discord channel with the bot, over the playground's JSON API and live events.
"use strict";

// keep: where the channel stays while images load and jobs change: "bottom" (the newest job), a job's id (an
// address with #job-<id>, a reply's link), or null: where the reader scrolled to.
const state = { user: "you", messages: new Map(), views: new Map(), events: null, keep: "bottom" };
const $ = (id) => document.getElementById(id);

// --- small helpers ------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = { title: "Error", error: response.statusText }; }
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.title = data.title || "Error";
    error.data = data;
    throw error;
  }
  return data;
}

function when(seconds) {
  const date = new Date(seconds * 1000);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const today = new Date().toDateString() === date.toDateString();
  return today ? `Today at ${time}` : `${date.toLocaleDateString()} ${time}`;
}

// --- where the channel stays -----------------------------------------------------------------------------

const BOTTOM = "bottom";

function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 16; }

function keepPlace() {
  const box = $("channel");
  if (box.hidden) return;
  if (state.keep === BOTTOM) box.scrollTop = box.scrollHeight;
  else if (state.keep) state.messages.get(state.keep)?.scrollIntoView({ block: "center" });
}

// Every message's size, and the channel's: an image that loads, a job that changes, a window that is resized.
const resized = new ResizeObserver(() => keepPlace());

// Only the reader moves the channel away from its place: a wheel, a touch, a key, the scrollbar. Back at the
// bottom, it follows the newest job again.
function watchScrolling(box) {
  let byReaderUntil = 0;
  const byReader = () => { byReaderUntil = performance.now() + 1000; };
  box.addEventListener("wheel", (event) => {
    byReader();
    if (event.deltaY < 0 && box.scrollTop > 0) state.keep = null;
  }, { passive: true });
  box.addEventListener("touchmove", byReader, { passive: true });
  box.addEventListener("keydown", byReader);
  box.addEventListener("pointerdown", (event) => { if (event.target === box) byReaderUntil = Infinity; });
  window.addEventListener("pointerup", () => { if (byReaderUntil === Infinity) byReader(); });
  let lastTop = box.scrollTop;
  box.addEventListener("scroll", () => {
    const up = box.scrollTop < lastTop - 1;  // (a job or an image that grows below leaves scrollTop as it was)
    lastTop = box.scrollTop;
    if (performance.now() >= byReaderUntil) return;
    if (atBottom(box)) state.keep = BOTTOM;
    else if (up || state.keep !== BOTTOM) state.keep = null;
  }, { passive: true });
  resized.observe(box);
  for (const child of box.children) resized.observe(child);
}

// --- the channel --------------------------------------------------------------------------------------

function statusText(view) {
  const mode = `(${view.mode})`;
  switch (view.status) {
    case "queued": return view.position ? `Waiting to start (queued, position ${view.position})` : "Waiting to start";
    case "held": return "Waiting to start (after your earlier jobs)";
    case "running": return `(${view.progress}%) ${mode}`;
    case "done": return view.action === "separate" ? "" : mode;
    case "cancelled": return "Cancelled";
    default: return "";
  }
}

function contentLine(view) {
  const line = el("div", { class: "content" }, el("b", {}, view.prompt || "(image prompt)"), " - ");
  if (view.label) line.append(view.label + (view.action === "separate" ? " " : " by "));
  line.append(el("span", { class: "mention" }, "@" + state.user));
  const status = statusText(view);
  if (status) line.append(" ", el("span", { class: "status" }, status));
  return line;
}

function replyLine(view) {
  if (!view.parent) return null;
  const parent = state.views.get(view.parent);
  return el("div", { class: "reply" }, "↪ ",
    el("a", { href: `#job-${view.parent}`, onclick: (event) => { event.preventDefault(); focusJob(view.parent); } },
      el("b", {}, parent ? parent.prompt : view.parent.slice(0, 8)),
      view.index ? ` (image ${view.index})` : ""));
}

const SHOWN_SIDE = 400;  // images are shown to fit this square, small ones enlarged, as Discord shows them

function fit(event) {
  const image = event.currentTarget;
  const scale = Math.min(SHOWN_SIDE / image.naturalWidth, SHOWN_SIDE / image.naturalHeight);
  image.style.width = `${Math.round(image.naturalWidth * scale)}px`;
  keepPlace();
}

function attachment(view, preview) {
  if (view.status === "done" && view.image) {
    const full = view.image;
    return el("div", { class: "attachment" },
      el("a", { href: full, target: "_blank", title: "open the full-size image" },
        el("img", { class: "result", src: full, alt: view.prompt, onload: fit })));
  }
  if (preview) {
    return el("div", { class: "attachment" }, el("img", { class: "preview", src: preview, alt: "preview", onload: fit }));
  }
  return null;
}

function buttons(view) {
  if (view.status !== "done" || !view.buttons.length) return null;
  return el("div", { class: "components" }, view.buttons.map((row) => el("div", { class: "row" }, row.map((button) =>
    el("button", {
      type: "button", class: "btn", title: button.title || button.label,
      onclick: (event) => press(view, button, event.currentTarget),
    }, button.label)))));
}

function failure(view) {
  if (view.status !== "failed") return null;
  return el("div", { class: "embed error" }, el("div", { class: "title" }, "Job failed"),
    el("div", { class: "text" }, view.error || "The job failed."));
}

const STAGE = { queued: 0, held: 0, running: 1, done: 2, failed: 2, cancelled: 2 };
const WAITING = new Set(["queued", "held", "running"]);  // only these show a preview: a finished job shows its
// images, a failed one its error, a cancelled one "Cancelled", never a blurry picture that looks like a result

function renderJob(view, { preview = null, scroll = false } = {}) {
  const known = state.views.get(view.id);
  if (known && state.messages.has(view.id)) {  // answers and events may arrive out of order: never go back
    if (STAGE[known.status] > STAGE[view.status]) return state.messages.get(view.id);
    if (known.status === "running" && view.status === "running" && view.progress < known.progress) {
      view = { ...view, progress: known.progress };
    }
  }
  state.views.set(view.id, view);
  const box = $("channel");
  if (scroll) state.keep = BOTTOM;
  const old = state.messages.get(view.id);
  const keepPreview = WAITING.has(view.status) ? preview || (old && old.dataset.preview) || null : null;
  const used = old ? [...old.querySelectorAll(".btn.used")].map((b) => b.textContent) : [];
  const message = el("article", {
    class: "message", id: `job-${view.id}`,
    dataset: { job: view.id, status: view.status, action: view.action, preview: keepPreview || "" },
  },
  el("div", { class: "avatar bot" }, "dl"),
  el("div", { class: "body" },
    el("div", { class: "meta" }, el("span", { class: "author" }, "dreamloom"), el("span", { class: "tag" }, "BOT"),
      el("time", { title: new Date(view.created_at * 1000).toLocaleString() }, when(view.created_at))),
    replyLine(view), contentLine(view), attachment(view, keepPreview), failure(view), buttons(view)));
  for (const button of message.querySelectorAll(".btn")) {
    if (used.includes(button.textContent)) button.classList.add("used");
  }
  if (old) {
    resized.unobserve(old);
    old.replaceWith(message);
  } else {
    insertInOrder(box, message, view.created_at);
  }
  state.messages.set(view.id, message);
  resized.observe(message);
  keepPlace();
  return message;
}

function insertInOrder(box, message, createdAt) {
  message.dataset.created = createdAt;
  const later = [...box.querySelectorAll("article.message[data-created]")].find((m) => Number(m.dataset.created) > createdAt);
  if (later) later.before(message); else box.append(message);
}

function ephemeral(title, text) {
  const box = $("channel");
  const message = el("article", { class: "message ephemeral", dataset: { ephemeral: "1" } },
    el("div", { class: "avatar bot" }, "dl"),
    el("div", { class: "body" },
      el("div", { class: "meta" }, el("span", { class: "author" }, "dreamloom"), el("span", { class: "tag" }, "BOT"),
        el("time", {}, when(Date.now() / 1000))),
      el("div", { class: "embed error" }, el("div", { class: "title" }, title), el("div", { class: "text" }, text)),
      el("div", { class: "ephemeral-note" }, "👁 Only you can see this • ",
        el("a", { onclick: () => { resized.unobserve(message); message.remove(); } }, "Dismiss message"))));
  message.dataset.created = Date.now() / 1000;
  box.append(message);
  resized.observe(message);
  state.keep = BOTTOM;
  keepPlace();
}

// "1.5" or "1.5 --ar 16:9" (--aspect too) as {scale, aspect}; null for anything else, which would otherwise
// zoom by the default without a word.
function customZoom(answer) {
  const match = /^(\d+(?:\.\d*)?|\.\d+)(?:\s+--(?:ar|aspect)\s+(\d+:\d+))?$/.exec(answer.trim());
  if (!match) return null;
  return match[2] ? { scale: Number(match[1]), aspect: match[2] } : { scale: Number(match[1]) };
}

async function press(view, button, node) {
  const body = { action: button.action };
  for (const key of ["index", "scale", "direction"]) if (button[key] !== undefined) body[key] = button[key];
  if (button.ask === "zoom") {
    const answer = window.prompt("Zoom out by (1.0 to 2.0); add --ar W:H to change the shape", "1.5");
    if (answer === null) return;
    const zoom = customZoom(answer);
    if (!zoom) {
      ephemeral("Invalid parameter", `Custom Zoom takes a number from 1.0 to 2.0, then --ar W:H for a new shape `
        + `(got “${answer.trim()}”)`);
      return;
    }
    Object.assign(body, zoom);
  }
  node.disabled = true;
  try {
    const result = await api(`/api/jobs/${view.id}/actions`, body);
    node.classList.add("used");
    renderJob(result.job, { scroll: true });
  } catch (error) {
    ephemeral(error.title, error.message);
  } finally {
    node.disabled = false;
  }
}

async function imagine(event) {
  event.preventDefault();
  const input = $("prompt");
  const prompt = input.value.trim();
  if (!prompt) return;
  try {
    const result = await api("/api/imagine", { prompt });
    input.value = "";
    for (const view of result.jobs) renderJob(view, { scroll: true });
  } catch (error) {
    for (const view of (error.data && error.data.jobs) || []) renderJob(view, { scroll: true });
    ephemeral(error.title, error.message);
  }
}

async function refresh(jobId, preview) {
  try {
    renderJob(await api(`/api/jobs/${jobId}`), { preview });
    if (!$("gallery").hidden) showGallery();
  } catch (error) {
    console.warn("could not load job", jobId, error);
  }
}

function onEvent(message) {
  const event = JSON.parse(message.data);
  const shown = state.messages.get(event.job);
  if (!shown || ["done", "failed", "cancelled"].includes(event.type)) {
    refresh(event.job, event.preview);
    return;
  }
  const view = { ...state.views.get(event.job), status: "running", progress: event.percent ?? 0 };
  renderJob(view, { preview: event.preview });
}

function listen() {
  const events = new EventSource("/api/events");
  events.onmessage = onEvent;
  events.onopen = () => {  // what changed before the stream (re)opened: a job that finished meanwhile
    $("live").classList.add("on");
    state.events = events;
    loadHistory().catch((error) => console.warn("could not load the jobs", error));
  };
  events.onerror = () => $("live").classList.remove("on");
}

async function loadHistory() {
  const { jobs } = await api("/api/jobs?limit=50");
  for (const view of jobs.reverse()) {
    if (!state.messages.has(view.id) || state.views.get(view.id).status !== view.status) renderJob(view);
  }
}

// --- the gallery and job details ----------------------------------------------------------------------

async function showGallery() {
  const { jobs } = await api("/api/jobs?limit=200");
  const done = jobs.filter((job) => job.status === "done");
  const box = $("gallery");
  box.replaceChildren(...(done.length ? done.map(card) : [el("div", { class: "empty" }, "No finished jobs yet.")]));
}

function card(view) {
  return el("div", { class: "card", dataset: { job: view.id }, onclick: () => showDetails(view.id) },
    el("img", { src: view.image, alt: view.prompt, loading: "lazy" }),
    el("div", { class: "caption" }, el("b", {}, view.prompt || "(image prompt)"),
      el("span", {}, [view.label || view.action, view.model, view.seed === null ? null : `seed ${view.seed}`]
        .filter(Boolean).join(" · "))));
}

async function showDetails(jobId) {
  const view = await api(`/api/jobs/${jobId}`);
  const rows = [
    ["job", view.id], ["action", view.label || view.action], ["status", view.status], ["model", view.model],
    ["source", view.model_source], ["seed", view.seed], ["image seeds", (view.image_seeds || []).join(" ")],
    ...Object.entries(view.settings || {}).map(([key, value]) => [key, typeof value === "object" ? JSON.stringify(value) : value]),
    ["created", new Date(view.created_at * 1000).toLocaleString()],
  ].filter(([, value]) => value !== undefined && value !== null && value !== "");
  const lineage = [...(view.lineage || []), view.id];
  const files = Object.entries(view.files || {}).map(([name, href]) =>
    el("a", { href, target: "_blank" }, href.split("/").pop()));
  $("details-body").replaceChildren(
    view.image ? el("a", { href: view.image, target: "_blank" }, el("img", { src: view.image, alt: view.prompt })) : "",
    el("h3", {}, "Prompt"), el("div", {}, view.prompt),
    el("h3", {}, "Settings"), el("table", {}, rows.map(([key, value]) => el("tr", {}, el("td", {}, key), el("td", {}, String(value))))),
    el("h3", {}, "Lineage"),
    el("div", { class: "lineage" }, lineage.map((id, index) => el("a", {
      href: `#job-${id}`, title: id, style: `padding-left: ${Math.min(index, 6) * 12}px`,
      onclick: (event) => { event.preventDefault(); if (id !== view.id) showDetails(id); },
    }, `${index ? "↳ " : ""}${id.slice(0, 8)}${id === view.id ? " (this job)" : ""}`))),
    (view.notes || []).length ? el("h3", {}, "Notes") : "", (view.notes || []).map((note) => el("div", {}, note)),
    el("h3", {}, "Full-size files"), el("div", { class: "files" }, files.flatMap((link) => [link, " "])),
  );
  $("details").hidden = false;
}

function focusJob(jobId) {
  showView("channel");
  const message = state.messages.get(jobId);
  if (!message) { showDetails(jobId); return; }
  state.keep = jobId;  // and there it stays while the images above it load, until the reader scrolls
  keepPlace();
  message.classList.add("highlight");
  setTimeout(() => message.classList.remove("highlight"), 2000);
}

function showView(name) {
  const gallery = name === "gallery";
  $("channel").hidden = gallery;
  $("composer").hidden = gallery;
  $("gallery").hidden = !gallery;
  $("nav-channel").classList.toggle("active", !gallery);
  $("nav-gallery").classList.toggle("active", gallery);
  $("view-name").textContent = gallery ? "gallery" : "imagine";
  $("view-topic").textContent = gallery ? "every finished job: click one for its settings, lineage and full-size files"
    : "/imagine a prompt: four images, then the buttons under them";
  if (gallery) showGallery();
  else keepPlace();
}

function route() {
  const hash = location.hash.slice(1);
  if (hash === "gallery") showView("gallery");
  else if (hash.startsWith("job-")) focusJob(hash.slice(4));
  else showView("channel");
}

// --- start --------------------------------------------------------------------------------------------

async function start() {
  const info = await api("/api/info");
  state.user = info.user;
  $("me-name").textContent = info.user;
  $("me-avatar").textContent = info.user.slice(0, 1).toUpperCase();
  $("me-model").textContent = info.default_model ? `model: ${info.default_model}` : "no model configured";
  if (info.example) {  // a prompt the served model draws (the demo model knows only coloured shapes)
    $("prompt").placeholder = info.example;
    $("welcome-example").textContent = info.example;
    $("welcome-try").hidden = false;
  }
  if (info.notice) {
    $("notice").hidden = false;
    $("notice").classList.add(info.notice.kind);
    $("notice-title").textContent = info.notice.title + ":";
    $("notice-text").textContent = info.notice.text;
  }
  $("composer").addEventListener("submit", imagine);
  $("details-close").addEventListener("click", () => { $("details").hidden = true; });
  watchScrolling($("channel"));
  window.addEventListener("hashchange", route);
  await loadHistory();
  listen();
  route();
  document.body.dataset.ready = "1";
  $("prompt").focus();
}

start().catch((error) => ephemeral("Cannot reach dreamloom", error.message));
