// The page: photos in (file picker or drop), one card per photo with its cutout and mask to download.
// The work is done in worker.js, so that the page stays responsive on a 12-megapixel photo.

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const $ = (selector) => document.querySelector(selector);
const cards = new Map(); // id -> {card, urls, started}
let nextId = 0;
let ready = false;
const waiting = []; // photos dropped before the model was ready: [id, file]

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// ------------------------------------------------------------------------------------- background

let backgroundFile = null;

function background() {
  const kind = document.querySelector("input[name=background]:checked").value;
  if (kind === "colour") {
    const hex = $("#colour").value;
    return { kind, colour: [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) };
  }
  if (kind === "image") return backgroundFile ? { kind, file: backgroundFile } : { kind: "none" };
  return { kind };
}

function recompose() {
  $("#background-error").textContent = "";
  for (const [id, entry] of cards) {
    if (entry.card.dataset.state !== "done") continue;
    setState(entry.card, "working", "composing…");
    entry.started = performance.now();
    worker.postMessage({ type: "compose", id, background: background() });
  }
}

for (const input of document.querySelectorAll("input[name=background]")) input.addEventListener("change", recompose);
$("#colour").addEventListener("input", () => {
  document.querySelector("input[name=background][value=colour]").checked = true;
  recompose();
});
$("#background-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    (await createImageBitmap(file)).close(); // read here first: a bad file must not fail every cutout
  } catch {
    $("#background-error").textContent = `${file.name}: not an image this browser can read; the background is unchanged`;
    event.target.value = "";
    return;
  }
  backgroundFile = file;
  document.querySelector("input[name=background][value=image]").checked = true;
  recompose();
});

// ------------------------------------------------------------------------------------- photos

function setState(card, state, status) {
  card.dataset.state = state;
  card.querySelector(".status").textContent = status;
}

function addPhotos(files) {
  for (const file of files) {
    const id = nextId++;
    const card = $("#result").content.firstElementChild.cloneNode(true);
    card.querySelector(".name").textContent = file.name;
    $("#results").append(card);
    cards.set(id, { card, urls: [], started: 0, name: file.name });
    if (ready) start(id, file);
    else waiting.push([id, file]);
  }
}

function start(id, file) {
  const entry = cards.get(id);
  entry.started = performance.now();
  setState(entry.card, "working", "reading the photo…");
  worker.postMessage({ type: "cutout", id, file, background: background() });
}

$("#files").addEventListener("change", (event) => {
  addPhotos([...event.target.files]);
  event.target.value = ""; // the same file chosen again is a new photo
});

const drop = $("#drop");
for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "dragend"]) document.addEventListener(name, () => drop.classList.remove("over"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  addPhotos([...event.dataTransfer.files]);
});

// ------------------------------------------------------------------------------------- the worker's answers

const STAGES = {
  decoding: "reading the photo…",
  model: "running the model…",
  composing: "composing…",
  encoding: "encoding the PNG…",
};

function stem(name) {
  return name.replace(/\.[^.]*$/, "") || name;
}

function link(entry, selector, blob, filename) {
  const a = entry.card.querySelector(selector);
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  a.title = megabytes(blob.size);
  return a.href;
}

worker.onmessage = ({ data }) => {
  if (data.type === "loading") {
    $("#model-progress").max = data.total || 1;
    $("#model-progress").value = data.loaded;
    $("#model-status").textContent = `Loading the model… ${megabytes(data.loaded)}${data.total ? ` of ${megabytes(data.total)}` : ""}`;
    return;
  }
  if (data.type === "ready") {
    ready = true;
    $("#model").dataset.state = "ready";
    $("#model-progress").hidden = true;
    $("#model-status").textContent = `Model ready (${data.threads} thread${data.threads > 1 ? "s" : ""}). Drop or choose photos.`;
    for (const [id, file] of waiting.splice(0)) start(id, file);
    return;
  }
  if (data.type === "load-failed") {
    $("#model").dataset.state = "failed";
    $("#model-progress").hidden = true;
    $("#model-status").textContent = `The model could not be loaded: ${data.message}`;
    for (const [id] of waiting.splice(0)) setState(cards.get(id).card, "failed", "not cut out: the model is not loaded");
    return;
  }
  const entry = cards.get(data.id);
  if (data.type === "preview") {
    const canvas = entry.card.querySelector("canvas");
    canvas.width = data.bitmap.width;
    canvas.height = data.bitmap.height;
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(data.bitmap, 0, 0);
    data.bitmap.close();
    entry.card.dataset.shown = "yes";
  } else if (data.type === "stage") {
    const size = data.width ? ` (${data.width}x${data.height})` : "";
    setState(entry.card, "working", STAGES[data.stage] + size);
  } else if (data.type === "failed") {
    setState(entry.card, "failed", `${entry.name}: ${data.message}`);
    entry.card.querySelector(".status").setAttribute("role", "alert");
    worker.postMessage({ type: "forget", id: data.id });
  } else if (data.type === "done") {
    const name = stem(entry.name);
    link(entry, "a.cutout", data.cutout, `${name}.png`);
    if (data.mask) link(entry, "a.mask", data.mask, `${name}-mask.png`);
    const seconds = (performance.now() - entry.started) / 1000;
    const size = data.width ? `${data.width}x${data.height}, ` : "";
    setState(entry.card, "done", `done: ${size}${seconds.toFixed(1)} s`);
    entry.card.dataset.timings = JSON.stringify(data.timings || {});
  }
};

worker.onerror = (event) => {
  $("#model").dataset.state = "failed";
  $("#model-status").textContent = `The page's worker failed: ${event.message || "it could not start (see the browser's console)"}`;
};

worker.postMessage({ type: "load" });
