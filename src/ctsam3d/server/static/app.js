// ctsam3d web tool: NiiVue viewer + clicks sent to the server.
//
// Geometry contract: a click is sent as NiiVue's world position in RAS millimetres; the server
// converts it with the image's own geometry (RAS -> LPS -> continuous index -> voxel). The
// label overlay is a uint8 NIfTI on the input grid; after each edit the page patches the
// changed box of `volumes[1].img`, which NiiVue keeps in the file's voxel order (i fastest).
import { Niivue, SLICE_TYPE, SHOW_RENDER, DRAG_MODE } from "/static/vendor/niivue.js";

const $ = (id) => document.getElementById(id);
const WINDOWS = { soft: [40, 400], lung: [-600, 1500], bone: [400, 1800] }; // level, width (HU)
const VIEWS = {
  multi: SLICE_TYPE.MULTIPLANAR, axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL, render: SLICE_TYPE.RENDER,
};

const state = {
  token: null, session: null, info: null, objects: [], active: null, leftPositive: true,
  window: "soft", edits: 0, lastClick: null, queue: Promise.resolve(),
};
window.ctsam3d = { state }; // for tests and debugging

// ---------------------------------------------------------------- token + API
{
  const params = new URLSearchParams(location.search);
  if (params.get("token")) {
    sessionStorage.setItem("ctsam3d-token", params.get("token"));
    params.delete("token");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? "?" + q : "") + location.hash);
  }
  state.token = sessionStorage.getItem("ctsam3d-token");
}

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function request(path, { method = "GET", json, body } = {}) {
  const headers = authHeaders();
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const res = await fetch(path, { method, headers, body });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail ?? detail; } catch (_) { /* not JSON */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    const err = new Error(detail);
    err.status = res.status;
    if (res.status === 401 || res.status === 403) showTokenBox();
    throw err;
  }
  return res;
}
const api = async (path, opts) => (await request(path, opts)).json();

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}
function fail(err) { console.error(err); status(err.message || String(err), true); }

function showTokenBox() { $("token-box").hidden = false; }
$("token-btn").onclick = () => {
  state.token = $("token-input").value.trim() || null;
  if (state.token) sessionStorage.setItem("ctsam3d-token", state.token);
  $("token-box").hidden = true;
  init().catch(fail);
};

// ---------------------------------------------------------------- viewer
const nv = new Niivue({
  backColor: [0.08, 0.09, 0.1, 1], crosshairColor: [1, 0.85, 0, 0.6], show3Dcrosshair: true,
  crosshairWidth: 1, crosshairGap: 12, isColorbar: false, dragAndDropEnabled: false, multiplanarShowRender: SHOW_RENDER.ALWAYS,
  isRadiologicalConvention: true, // patient's right on screen left, as in 3D Slicer and PACS viewers
});
window.ctsam3d.nv = nv;
const canvas = $("gl");
await nv.attachToCanvas(canvas);
nv.setMouseEventConfig({
  leftButton: { primary: DRAG_MODE.crosshair, withShift: DRAG_MODE.pan, withCtrl: DRAG_MODE.contrast },
  rightButton: DRAG_MODE.crosshair,
  centerButton: DRAG_MODE.pan,
});

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
let down = null;
canvas.addEventListener("pointerdown", (e) => {
  down = { x: e.clientX, y: e.clientY, button: e.button, shift: e.shiftKey, ctrl: e.ctrlKey };
}, true);
canvas.addEventListener("pointerup", (e) => {
  const d = down;
  down = null;
  if (!d || d.shift || d.ctrl || (d.button !== 0 && d.button !== 2)) return;
  if (Math.hypot(e.clientX - d.x, e.clientY - d.y) > 4) return; // a drag, not a click
  const rect = canvas.getBoundingClientRect();
  const scale = canvas.width / rect.width;
  const frac = nv.canvasPos2frac([(e.clientX - rect.left) * scale, (e.clientY - rect.top) * scale]);
  if (!state.session || !frac || frac[0] < 0) return; // not on a 2D slice (3D view or margin)
  const mm = nv.frac2mm(frac);
  const positive = d.button === 0 ? state.leftPositive : false;
  enqueue(() => sendClick([mm[0], mm[1], mm[2]], positive));
}, true);

function enqueue(task) {
  state.queue = state.queue.then(task).catch(fail);
  return state.queue;
}

function setWindow(name) {
  state.window = name;
  document.querySelectorAll("[data-window]").forEach((b) => b.classList.toggle("active", b.dataset.window === name));
  if (!nv.volumes.length) return;
  const [level, width] = WINDOWS[name];
  nv.volumes[0].cal_min = level - width / 2;
  nv.volumes[0].cal_max = level + width / 2;
  nv.updateGLVolume();
}
function setView(name) {
  document.querySelectorAll("[data-view]").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  nv.setSliceType(VIEWS[name]);
}
document.querySelectorAll("[data-window]").forEach((b) => (b.onclick = () => setWindow(b.dataset.window)));
document.querySelectorAll("[data-view]").forEach((b) => (b.onclick = () => setView(b.dataset.view)));
$("mode-btn").onclick = () => {
  state.leftPositive = !state.leftPositive;
  const b = $("mode-btn");
  b.textContent = "Left click: " + (state.leftPositive ? "positive" : "negative");
  b.className = state.leftPositive ? "positive" : "negative";
};

function labelVolume() { return nv.volumes[1]; }

function applyColormap() {
  const vol = labelVolume();
  if (!vol) return;
  const maxId = Math.max(1, ...state.objects.map((o) => o.id));
  const R = [], G = [], B = [], A = [], I = [], labels = [];
  for (let id = 0; id <= maxId; id++) {
    const o = state.objects.find((x) => x.id === id);
    R.push(o ? o.color[0] : 0); G.push(o ? o.color[1] : 0); B.push(o ? o.color[2] : 0);
    A.push(o && o.visible ? 255 : 0); I.push(id); labels.push(o ? o.name : "");
  }
  vol.setColormapLabel({ R, G, B, A, I, labels });
  nv.updateGLVolume();
}

async function patchLabels(box) {
  const [[z0, y0, x0], [z1, y1, x1]] = box;
  const res = await request(`/api/sessions/${state.session}/labels.raw?box=${[z0, y0, x0, z1, y1, x1].join(",")}`);
  const buf = new Uint8Array(await res.arrayBuffer());
  const vol = labelVolume();
  const [nx, ny] = state.info.image.size; // i (x), j (y) sizes: file voxel order is i fastest
  const w = x1 - x0;
  let src = 0;
  for (let z = z0; z < z1; z++) {
    for (let y = y0; y < y1; y++) {
      vol.img.set(buf.subarray(src, src + w), (z * ny + y) * nx + x0);
      src += w;
    }
  }
  nv.updateGLVolume();
}

// ---------------------------------------------------------------- sessions
async function loadSession(sessionId) {
  status("Loading image…");
  const info = await api(`/api/sessions/${sessionId}`);
  state.session = sessionId;
  state.info = info;
  state.objects = info.objects;
  state.active = info.objects.length ? info.objects[info.objects.length - 1].id : null;
  history.replaceState(null, "", location.pathname + location.search + "#session=" + sessionId);
  const headers = authHeaders();
  await nv.loadVolumes([
    { url: `/api/sessions/${sessionId}/image.nii.gz`, name: "image.nii.gz", headers, colormap: "gray" },
    { url: `/api/sessions/${sessionId}/labels.nii.gz`, name: "labels.nii.gz", headers, opacity: 0.5 },
  ]);
  setWindow(state.window);
  applyColormap();
  renderObjects();
  const im = info.image;
  $("image-info").textContent = `${info.source.name} · ${im.size.join("×")} · ` +
    `${im.spacing.map((s) => s.toFixed(2)).join("×")} mm · ${im.orientation}${info.is_dicom ? " · DICOM" : ""}`;
  status("Ready: click on a structure.");
  document.body.dataset.session = sessionId;
}

async function openFromDatastore() {
  const id = $("datastore").value;
  if (!id) return status("Choose an image first.", true);
  status("Opening…");
  const info = await api("/api/sessions", { method: "POST", json: { image: id } });
  await loadSession(info.session_id);
}

async function uploadFiles(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  status(`Uploading ${files.length} file(s)…`);
  const info = await api("/api/sessions/upload", { method: "POST", body: form });
  await loadSession(info.session_id);
}

// ---------------------------------------------------------------- objects
function activeObject() { return state.objects.find((o) => o.id === state.active) || null; }

function replaceObject(obj) {
  const i = state.objects.findIndex((o) => o.id === obj.id);
  if (i >= 0) state.objects[i] = obj; else state.objects.push(obj);
}

async function createObject(name) {
  const obj = await api(`/api/sessions/${state.session}/objects`, { method: "POST", json: { name } });
  state.objects.push(obj);
  state.active = obj.id;
  applyColormap();
  renderObjects();
  return obj;
}

async function applyChange(change) {
  replaceObject(change.object);
  if (change.box) await patchLabels(change.box);
  state.edits += 1;
  document.body.dataset.edits = String(state.edits);
  renderObjects();
}

async function sendClick(ras, positive) {
  if (!state.session) return;
  let obj = activeObject();
  if (!obj) obj = await createObject($("new-name").value.trim() || `object ${state.objects.length + 1}`);
  const t0 = performance.now();
  const change = await api(`/api/sessions/${state.session}/objects/${obj.id}/clicks`,
    { method: "POST", json: { ras, positive } });
  await applyChange(change);
  const ms = performance.now() - t0;
  state.lastClick = { ras, positive, voxel: change.voxel, ms, server_ms: change.server_ms };
  $("latency").textContent = `Last click: ${ms.toFixed(0)} ms (model + server ${change.server_ms.toFixed(0)} ms)`;
  status(change.warning || `${positive ? "Positive" : "Negative"} click at voxel (${change.voxel.join(", ")}) on ${obj.name}.`, !!change.warning);
}

async function objectAction(obj, action) {
  const base = `/api/sessions/${state.session}/objects/${obj.id}`;
  if (action === "delete") {
    if (!confirm(`Delete ${obj.name}?`)) return;
    const change = await api(base, { method: "DELETE" });
    state.objects = state.objects.filter((o) => o.id !== obj.id);
    if (state.active === obj.id) state.active = state.objects.length ? state.objects[state.objects.length - 1].id : null;
    if (change.box) await patchLabels(change.box);
    applyColormap();
    renderObjects();
    return;
  }
  if (action === "undo" || action === "clear") {
    await applyChange(await api(`${base}/${action}`, { method: "POST" }));
    return;
  }
  if (action === "nifti" || action === "dicom") {
    const res = await request(`${base}/mask.${action === "nifti" ? "nii.gz" : "dcm"}`);
    const name = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "")?.[1] || "mask";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await res.blob());
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
}

async function updateObject(obj, fields) {
  const updated = await api(`/api/sessions/${state.session}/objects/${obj.id}`, { method: "PATCH", json: fields });
  replaceObject(updated);
  applyColormap();
  renderObjects();
}

function hex(rgb) { return "#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join(""); }

function renderObjects() {
  const ul = $("objects");
  ul.replaceChildren();
  for (const obj of state.objects) {
    const li = document.createElement("li");
    li.className = obj.id === state.active ? "active" : "";
    li.dataset.id = obj.id;
    const pos = obj.clicks.filter((c) => c.positive).length;
    const neg = obj.clicks.length - pos;
    li.innerHTML = `
      <div class="row"><input type="color" title="colour"><span class="name"></span>
        <label title="visible"><input type="checkbox" class="visible"> show</label></div>
      <div class="meta"></div>
      <div class="row actions">
        <button data-a="undo" type="button">Undo</button><button data-a="clear" type="button">Clear</button>
        <button data-a="delete" type="button">Delete</button><button data-a="nifti" type="button">NIfTI</button>
        ${state.info.is_dicom ? '<button data-a="dicom" type="button">DICOM-SEG</button>' : ""}
      </div>`;
    li.querySelector(".name").textContent = obj.name;
    li.querySelector(".meta").textContent = `${obj.voxels} voxels · ${pos} positive, ${neg} negative clicks`;
    const color = li.querySelector("input[type=color]");
    color.value = hex(obj.color);
    color.onchange = () => enqueue(() => updateObject(obj, {
      color: [1, 3, 5].map((i) => parseInt(color.value.slice(i, i + 2), 16)),
    }));
    const vis = li.querySelector(".visible");
    vis.checked = obj.visible;
    vis.onchange = () => enqueue(() => updateObject(obj, { visible: vis.checked }));
    li.querySelectorAll("[data-a]").forEach((b) => (b.onclick = (e) => {
      e.stopPropagation();
      enqueue(() => objectAction(obj, b.dataset.a));
    }));
    li.onclick = (e) => {
      if (e.target.closest("input,label,button")) return;
      state.active = obj.id;
      renderObjects();
    };
    ul.appendChild(li);
  }
}

$("add-object").onclick = () => {
  if (!state.session) return status("Open an image first.", true);
  const name = $("new-name").value.trim() || `object ${state.objects.length + 1}`;
  enqueue(() => createObject(name));
};
$("open-btn").onclick = () => enqueue(openFromDatastore);
$("upload").onchange = (e) => enqueue(() => uploadFiles([...e.target.files]));

// ---------------------------------------------------------------- start
async function init() {
  const config = await api("/api/config");
  Object.assign($("model-name"), { textContent: `model: ${config.model_name} (${config.model_trained_on.split(":")[0]})`,
    title: `trained on ${config.model_trained_on}` });
  const list = $("structures");
  list.replaceChildren(...config.structures.map((n) => Object.assign(document.createElement("option"), { value: n })));
  const items = (await api("/api/datastore")).items.filter((it) => it.kind !== "label");
  const select = $("datastore");
  select.replaceChildren(...items.map((it) => Object.assign(document.createElement("option"),
    { value: it.id, textContent: it.id + (it.kind === "dicom" ? " (DICOM)" : "") })));
  if (!items.length) select.appendChild(Object.assign(document.createElement("option"), { value: "", textContent: "(no data folder: upload)" }));
  const m = /session=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (m) {
    try { await loadSession(m[1]); } catch (err) {
      history.replaceState(null, "", location.pathname + location.search);
      status(`Previous session not available (${err.message}); open an image.`, true);
    }
  } else {
    status("Open an image from the data folder or upload one.");
  }
  document.body.dataset.ready = "1";
}
enqueue(init);
