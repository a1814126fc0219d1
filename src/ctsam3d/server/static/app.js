// ctsam3d web tool: NiiVue viewer + clicks sent to the server.
//
// Geometry contract: a click is sent as NiiVue's world position in RAS millimetres; the server
// converts it with the image's own geometry (RAS -> LPS -> continuous index -> voxel). A 2D box,
// lasso or scribble is sent the same way, one RAS point per stroke point, with the view drawn on.
//
// Speed on any renderer, software WebGL included (issue 20):
// * The CT is shown from a display volume (`view?max_voxels=`): full resolution on a GPU,
//   block-averaged to at most DISPLAY_VOXELS_SOFTWARE voxels on a software renderer, where
//   preparing a 512 x 512 x 300 volume's textures takes most of a minute. Clicks are world mm, so
//   they reach the full-resolution CT either way; masks and exports are full resolution.
// * The label overlay is NiiVue's drawing layer (one uint8 3D texture on the display grid, RAS
//   order). After an edit the page fetches only the changed box of the label map
//   (`labels.raw?box=`, file voxel order, full resolution), writes that box into the drawing
//   bitmap and uploads just that box (`texSubImage3D`), then redraws: no volume is re-uploaded
//   and no layer re-oriented per click (NiiVue's updateGLVolume did both and took seconds).
// * Object colours live in the drawing colour table; changing one uploads a 256-entry table.
import { Niivue, SLICE_TYPE, SHOW_RENDER, DRAG_MODE } from "/static/vendor/niivue.js";

const $ = (id) => document.getElementById(id);
const WINDOWS = { soft: [40, 400], lung: [-600, 1500], bone: [400, 1800] }; // level, width (HU)
const VIEWS = {
  multi: SLICE_TYPE.MULTIPLANAR, axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL, render: SLICE_TYPE.RENDER,
};
const DISPLAY_VOXELS_SOFTWARE = 10_000_000; // 512x512x300 -> 256x256x150
const DISPLAY_VOXELS_GPU = 2 ** 31 - 1; // full resolution
const OVERLAY_OPACITY = 0.5;

const state = {
  token: null, session: null, info: null, objects: [], active: null, leftPositive: true,
  window: "soft", view: "multi", edits: 0, lastClick: null, queue: Promise.resolve(), pending: 0,
  display: null, // {factors: [fi, fj, fk], fileDims: [ni, nj, nk] of the CT, dims: display dims}
  pendingMarks: [], // clicks sent but not answered yet: {mm, positive}
  tool: "click", // prompt tool: click, box, lasso, scribble
  drawing: null, // the stroke being drawn: {tool, tile, axCorSag, xy: canvas pixels, positive}
  pendingShapes: [], // shapes sent but not answered yet: {kind, mm: RAS points, positive, view}
  timings: {},
};
window.ctsam3d = { state }; // for tests, benchmarks and debugging

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

// ---------------------------------------------------------------- status line + busy indicator
// The status line always describes the latest action: each action sets it when it starts
// ("…", busy) and when it ends (result or error). A click queued behind another says so.
let statusSerial = 0;
function status(text, { error = false, busy = false } = {}) {
  const el = $("status");
  el.textContent = text;
  el.className = error ? "error" : busy ? "busy" : "";
  return ++statusSerial;
}
function setBusy(delta) {
  state.pending = Math.max(0, state.pending + delta);
  document.body.classList.toggle("busy", state.pending > 0);
  $("busy").hidden = state.pending === 0;
}
function fail(err) { console.error(err); status(err.message || String(err), { error: true }); }

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
  crosshairWidth: 1, crosshairGap: 12, isColorbar: false, dragAndDropEnabled: false,
  multiplanarShowRender: SHOW_RENDER.ALWAYS,
  isRadiologicalConvention: true, // patient's right on screen left, as in 3D Slicer and PACS viewers
});
window.ctsam3d.nv = nv;
// Client pixel position of the RAS mm point `ras` on the tile of `sliceType` (0 axial,
// 1 coronal, 2 sagittal), its slices brought into view first (crosshair there): where tests
// and benchmarks press the mouse to click that point as a user would.
window.ctsam3d.clientPointOfRas = (ras, sliceType = 0) => {
  const frac = nv.mm2frac(ras);
  nv.scene.crosshairPos = frac;
  nv.drawScene();
  const hit = nv.frac2canvasPosWithTile(frac, sliceType);
  const rect = nv.canvas.getBoundingClientRect();
  const s = rect.width / nv.canvas.width;
  return [rect.left + hit.pos[0] * s, rect.top + hit.pos[1] * s];
};
const canvas = $("gl");
await nv.attachToCanvas(canvas);
nv.setMouseEventConfig({
  leftButton: { primary: DRAG_MODE.crosshair, withShift: DRAG_MODE.pan, withCtrl: DRAG_MODE.contrast },
  rightButton: DRAG_MODE.crosshair,
  centerButton: DRAG_MODE.pan,
});
nv.setDrawOpacity(OVERLAY_OPACITY);

// Software WebGL (SwiftShader, llvmpipe): coarser display volume, no 3D tile in the 4-view layout
// (ray casting a volume in software costs seconds per frame; the 3D button still shows it).
const renderer = (() => {
  const gl = nv.gl;
  const ext = gl.getExtension("WEBGL_debug_renderer_info");
  return String(ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
})();
const params = new URLSearchParams(location.search);
const software = params.get("software") !== null
  ? params.get("software") !== "0" : /swiftshader|llvmpipe|softpipe|software|lavapipe/i.test(renderer);
const displayVoxels = params.get("display") === "full" ? DISPLAY_VOXELS_GPU
  : Number(params.get("display")) > 0 ? Math.max(1_000_000, Math.round(Number(params.get("display")))) // server's floor
    : software ? DISPLAY_VOXELS_SOFTWARE : DISPLAY_VOXELS_GPU;
if (software) nv.opts.multiplanarShowRender = SHOW_RENDER.NEVER;
window.ctsam3d.renderer = { renderer, software, displayVoxels };

// Software WebGL: NiiVue computes the volume's gradients (two full-volume passes with many
// trilinear taps, only the 3D rendering's lighting uses them) every time it prepares the
// volume. Until the 3D view is asked for, its two gradient shaders are swapped for one that
// draws nothing; the 3D button restores them and computes the gradients then.
const GRADIENT_SHADERS = ["blurShader", "gradientPrePassShader", "sobelFirstOrderShader", "sobelSecondOrderShader"];
const gradients = { deferred: false, saved: null };
function deferGradients() {
  if (!software || GRADIENT_SHADERS.some((k) => !nv[k])) return; // another NiiVue: leave it alone
  const gl = nv.gl;
  const compile = (type, src) => {
    const sh = gl.createShader(type);
    gl.shaderSource(sh, src);
    gl.compileShader(sh);
    return sh;
  };
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl.VERTEX_SHADER,
    "#version 300 es\nin vec3 vPos;\nvoid main() { gl_Position = vec4(2.0, 2.0, 2.0, 1.0); }")); // off screen
  gl.attachShader(program, compile(gl.FRAGMENT_SHADER,
    "#version 300 es\nprecision highp float;\nout vec4 c;\nvoid main() { c = vec4(0.0); }"));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) return;
  gradients.none = { program, uniforms: {}, use(g) { g.useProgram(program); } };
  gradients.saved = Object.fromEntries(GRADIENT_SHADERS.map((k) => [k, nv[k]]));
  redeferGradients();
}
function redeferGradients() { // before preparing a new volume, unless the 3D view shows it
  if (!gradients.none || state.view === "render") return;
  for (const k of GRADIENT_SHADERS) nv[k] = gradients.none;
  gradients.deferred = true;
}
function computeGradients() {
  if (!gradients.deferred) return false;
  Object.assign(nv, gradients.saved);
  gradients.deferred = false;
  if (nv.volumes.length) nv.gradientGL(nv.volumes[0].hdr);
  return true;
}
deferGradients();

// Every redraw also redraws the click markers (a 2D canvas above the WebGL one).
const marks = $("marks");
const drawSceneGL = nv.drawScene.bind(nv);
nv.drawScene = (...args) => {
  const out = drawSceneGL(...args);
  drawMarkers();
  return out;
};

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
  const t0 = performance.now();
  const rect = canvas.getBoundingClientRect();
  const scale = canvas.width / rect.width;
  const frac = nv.canvasPos2frac([(e.clientX - rect.left) * scale, (e.clientY - rect.top) * scale]);
  if (!state.session || !frac || frac[0] < 0) return; // not on a 2D slice (3D view or margin)
  const mm = nv.frac2mm(frac);
  const positive = d.button === 0 ? state.leftPositive : false;
  const mark = { mm: [mm[0], mm[1], mm[2]], positive };
  state.pendingMarks.push(mark);
  drawMarkers();
  setBusy(+1);
  const queued = state.pending > 1;
  status(`${positive ? "Positive" : "Negative"} click${queued ? " queued" : ""}: computing…`, { busy: true });
  enqueue(() => sendClick(mark, t0)).finally(() => {
    state.pendingMarks = state.pendingMarks.filter((m) => m !== mark);
    setBusy(-1);
    drawMarkers();
  });
}, true);

function enqueue(task) {
  const run = state.queue.then(task);
  state.queue = run.catch(fail);
  return state.queue;
}

// ---------------------------------------------------------------- prompt tools: 2D box, lasso, scribble
// With a shape tool, a drag on a 2D tile draws the shape (visible while drawing); on release its
// points are sent as NiiVue world RAS mm (screenXY2mm on the tile the drag started in, so the
// stroke stays on that tile's slice) with the view drawn on; the server puts them on the CT
// slice and runs the session's add_box2d / add_lasso / add_scribble. Left button: positive (or
// what the mode button says); right button or Alt + left: negative. Shift / Ctrl drags still pan
// / set contrast (NiiVue); a drag on the 3D tile still rotates it. Esc cancels a stroke.
const TOOL_NAMES = { click: "click", box: "2D box", lasso: "lasso", scribble: "scribble" };
const KIND_OF_TOOL = { box: "box2d", lasso: "lasso", scribble: "scribble" };
const KIND_NAMES = { box2d: "2D box", lasso: "lasso", scribble: "scribble" };
const TOOL_KEYS = { KeyC: "click", KeyB: "box", KeyL: "lasso", KeyS: "scribble" };
const VIEW_OF_TILE = ["axial", "coronal", "sagittal"]; // NiiVue's axCorSag 0, 1, 2
const MAX_SHAPE_POINTS = 1000; // the server's limit (shape_requests.MAX_POINTS)
const STROKE_STEP_PX = 3; // a new stroke point after this many canvas pixels of travel
const TOOL_HINTS = {
  click: "Left click: positive · right click: negative · scroll: move slice · clicks count on the 2D views",
  box: "Box: drag from corner to corner on a 2D view · right button or Alt: negative box · Esc: cancel",
  lasso: "Lasso: draw a closed outline around the structure on a 2D view · right button or Alt: negative · Esc: cancel",
  scribble: "Scribble: draw a line over the structure on a 2D view · right button or Alt: negative (background) · Esc: cancel",
};
// NiiVue's own key bindings on the canvas (C: clip plane, P: cycle it, V: view mode) would act
// on the tool keys or bypass the view buttons: off.
Object.assign(nv.opts, { clipPlaneHotKey: "", cycleClipPlaneHotKey: "", viewModeHotKey: "" });

function setTool(name) {
  if (!TOOL_NAMES[name]) return;
  state.tool = name;
  state.drawing = null;
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === name));
  document.body.classList.toggle("drawing-tool", name !== "click");
  $("hint").textContent = TOOL_HINTS[name];
  drawMarkers();
  status(`Tool: ${TOOL_NAMES[name]}.`);
}
document.querySelectorAll("[data-tool]").forEach((b) => (b.onclick = () => setTool(b.dataset.tool)));
window.ctsam3d.setTool = setTool;
window.addEventListener("keydown", (e) => {
  if (e.target.closest?.("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.code === "Escape" && state.drawing) {
    state.drawing = null;
    drawMarkers();
    status("Stroke cancelled.");
  } else if (TOOL_KEYS[e.code] && !e.repeat) {
    setTool(TOOL_KEYS[e.code]);
  }
}, true);

function canvasXY(e) {
  const rect = canvas.getBoundingClientRect();
  const scale = canvas.width / rect.width;
  return [(e.clientX - rect.left) * scale, (e.clientY - rect.top) * scale];
}
function tileRect(s) {
  const q = s.leftTopWidthHeight.slice();
  if (q[2] < 0) { q[0] += q[2]; q[2] = -q[2]; }
  return q;
}
/** Index in nv.screenSlices of the 2D tile under canvas position `xy`, or -1. */
function tileAt(xy) {
  const slices = nv.screenSlices || [];
  for (let i = 0; i < slices.length; i++) {
    const s = slices[i];
    if (s.axCorSag > 2 || !s.AxyzMxy || s.AxyzMxy.length < 4) continue;
    const [l, t, w, h] = tileRect(s);
    if (xy[0] >= l && xy[0] <= l + w && xy[1] >= t && xy[1] <= t + h) return i;
  }
  return -1;
}

/** Display-volume affine inverted: RAS mm -> continuous voxel of the CT (file order, full resolution). */
function mmToFileVoxel(mm) {
  const a = nv.volumes[0].hdr.affine;
  const m = [0, 1, 2].map((r) => [a[r][0], a[r][1], a[r][2]]);
  const d = [0, 1, 2].map((r) => mm[r] - a[r][3]);
  const det = (q) => q[0][0] * (q[1][1] * q[2][2] - q[1][2] * q[2][1]) - q[0][1] * (q[1][0] * q[2][2] - q[1][2] * q[2][0])
    + q[0][2] * (q[1][0] * q[2][1] - q[1][1] * q[2][0]);
  const D = det(m);
  const v = [0, 1, 2].map((c) => det(m.map((row, r) => row.map((x, k) => (k === c ? d[r] : x)))) / D); // Cramer
  const f = state.display.factors;
  return v.map((x, k) => x * f[k] + (f[k] - 1) / 2);
}

/** Continuous CT voxel (file order) of canvas position `xy` on tile `tile` (clamped to the tile
 * and into the CT), or null. */
function strokeVoxel(tile, xy) {
  const [l, t, w, h] = tileRect(nv.screenSlices[tile]);
  const x = Math.min(Math.max(xy[0], l + 0.5), l + w - 0.5), y = Math.min(Math.max(xy[1], t + 0.5), t + h - 0.5);
  const mm = nv.screenXY2mm(x, y, tile);
  if (!Number.isFinite(mm[0]) || !Number.isFinite(mm[1]) || !Number.isFinite(mm[2])) return null;
  const n = state.display.fileDims;
  return mmToFileVoxel(mm).map((v, k) => Math.min(Math.max(v, -0.49), n[k] - 0.51)); // voxel n spans n +- 0.5
}

/** Put a stroke's voxels on the CT slice the tile shows: NiiVue draws the slice at the crosshair,
 * anywhere within a display voxel, and the overlay there shows the CT voxel at that display
 * block's centre (patchOverlay), so along the tile's normal the points go to that voxel. */
function onShownSlice(voxels, axCorSag) {
  const vol = nv.volumes[0];
  const a = Math.abs(vol.permRAS[[2, 1, 0][axCorSag]]) - 1; // file axis along the tile's normal (S, A, R)
  const f = state.display.factors[a];
  const depth = voxels.reduce((sum, v) => sum + v[a], 0) / voxels.length;
  const block = Math.round((depth - (f - 1) / 2) / f);
  const shown = Math.min(Math.max(block * f + Math.floor((f - 1) / 2), 0), state.display.fileDims[a] - 1);
  return voxels.map((v) => v.map((x, k) => (k === a ? shown : x)));
}

function crossing(p, q, r, s) { // proper intersection point of segments pq and rs, or null
  const d = (q[0] - p[0]) * (s[1] - r[1]) - (q[1] - p[1]) * (s[0] - r[0]);
  if (d === 0) return null;
  const u = ((r[0] - p[0]) * (s[1] - r[1]) - (r[1] - p[1]) * (s[0] - r[0])) / d;
  const v = ((r[0] - p[0]) * (q[1] - p[1]) - (r[1] - p[1]) * (q[0] - p[0])) / d;
  return u > 0 && u < 1 && v > 0 && v < 1 ? [p[0] + u * (q[0] - p[0]), p[1] + u * (q[1] - p[1])] : null;
}
/** A hand-drawn lasso's loop: where the stroke crosses itself (a closing overshoot), the
 * outermost loop between the crossing segments; otherwise the stroke as drawn. */
function lassoLoop(pts) {
  const n = pts.length;
  for (let i = 0; i < n - 3; i++) {
    for (let j = n - 2; j > i + 1; j--) {
      const x = crossing(pts[i], pts[i + 1], pts[j], pts[j + 1]);
      if (x) return [x, ...pts.slice(i + 1, j + 1)];
    }
  }
  return pts;
}
function polygonArea(pts) {
  let a = 0;
  for (let i = 0; i < pts.length; i++) {
    const p = pts[i], q = pts[(i + 1) % pts.length];
    a += p[0] * q[1] - q[0] * p[1];
  }
  return Math.abs(a) / 2;
}
function thinTo(pts, max) { // evenly spaced points, first and last kept
  if (pts.length <= max) return pts;
  return Array.from({ length: max }, (_, n) => pts[Math.round((n * (pts.length - 1)) / (max - 1))]);
}

const wrap = $("canvas-wrap");
wrap.addEventListener("pointerdown", (e) => {
  if (state.tool === "click" || !state.session || !state.display) return; // clicks: the canvas's own handlers
  if (e.shiftKey || e.ctrlKey || e.metaKey || (e.button !== 0 && e.button !== 2)) return; // pan, contrast: NiiVue
  const xy = canvasXY(e);
  const tile = tileAt(xy);
  if (tile < 0) return; // the 3D tile or a margin: NiiVue's
  e.stopPropagation(); // neither NiiVue nor the click handler sees this drag
  e.preventDefault();
  canvas.setPointerCapture?.(e.pointerId);
  state.strokeMouse = true;
  state.drawing = {
    tool: state.tool, tile, axCorSag: nv.screenSlices[tile].axCorSag, pointerId: e.pointerId, xy: [xy],
    positive: e.button === 0 && !e.altKey ? state.leftPositive : false,
  };
  drawMarkers();
}, true);
wrap.addEventListener("pointermove", (e) => {
  const d = state.drawing;
  if (!d || e.pointerId !== d.pointerId) return;
  e.stopPropagation();
  const xy = canvasXY(e);
  if (d.tool === "box") {
    d.xy = [d.xy[0], xy];
  } else {
    const last = d.xy[d.xy.length - 1];
    if (Math.hypot(xy[0] - last[0], xy[1] - last[1]) < STROKE_STEP_PX) return;
    d.xy.push(xy);
  }
  drawMarkers();
}, true);
wrap.addEventListener("pointerup", (e) => {
  const d = state.drawing;
  if (!d || e.pointerId !== d.pointerId) return;
  e.stopPropagation();
  state.drawing = null;
  setTimeout(() => { state.strokeMouse = false; }, 0); // after this press's mouse events
  const xy = canvasXY(e);
  if (d.tool === "box") d.xy = [d.xy[0], xy];
  else if (Math.hypot(xy[0] - d.xy[d.xy.length - 1][0], xy[1] - d.xy[d.xy.length - 1][1]) > 0.5) d.xy.push(xy);
  finishStroke(d);
}, true);
wrap.addEventListener("pointercancel", () => { state.drawing = null; drawMarkers(); }, true);
for (const type of ["mousedown", "mousemove", "mouseup", "dblclick"]) { // NiiVue listens to mouse events
  wrap.addEventListener(type, (e) => { if (state.drawing || state.strokeMouse) e.stopPropagation(); }, true);
}

function finishStroke(d) {
  const t0 = performance.now();
  const kind = KIND_OF_TOOL[d.tool];
  let xy = d.xy;
  const problem = (text) => { drawMarkers(); status(text, { error: true }); };
  if (kind === "box2d" && (xy.length < 2 || Math.abs(xy[1][0] - xy[0][0]) < 3 || Math.abs(xy[1][1] - xy[0][1]) < 3)) {
    return problem("Box too small: drag from one corner of the structure to the opposite one.");
  }
  if (kind === "lasso") {
    xy = lassoLoop(xy);
    if (xy.length < 3 || polygonArea(xy) < 25) return problem("Lasso too small: draw a closed outline around the structure.");
  }
  const voxels = thinTo(xy, MAX_SHAPE_POINTS).map((p) => strokeVoxel(d.tile, p));
  if (voxels.some((p) => !p)) return problem("That stroke left the slice it started on; draw it again inside one 2D view.");
  const mm = onShownSlice(voxels, d.axCorSag).map(fileVoxelToMM);
  const shape = { kind, mm, positive: d.positive, view: VIEW_OF_TILE[d.axCorSag] };
  state.pendingShapes.push(shape);
  drawMarkers();
  setBusy(+1);
  const queued = state.pending > 1;
  status(`${d.positive ? "Positive" : "Negative"} ${KIND_NAMES[kind]}${queued ? " queued" : ""}: computing…`, { busy: true });
  enqueue(() => sendShape(shape, t0)).finally(() => {
    state.pendingShapes = state.pendingShapes.filter((s) => s !== shape);
    setBusy(-1);
    drawMarkers();
  });
}

async function sendShape(shape, t0) {
  if (!state.session) return;
  let obj = activeObject();
  if (!obj) obj = await createObject($("new-name").value.trim() || `object ${state.objects.length + 1}`);
  const sign = shape.positive ? "Positive" : "Negative";
  const name = KIND_NAMES[shape.kind];
  status(`${sign} ${name} on ${obj.name}: computing…`, { busy: true });
  const change = await api(`/api/sessions/${state.session}/objects/${obj.id}/shapes`,
    { method: "POST", json: { kind: shape.kind, ras: shape.mm, view: shape.view, positive: shape.positive } });
  const tServer = performance.now();
  await applyChange(change);
  state.pendingShapes = state.pendingShapes.filter((s) => s !== shape);
  const t1 = await presented();
  const ms = t1 - t0;
  state.lastShape = {
    kind: shape.kind, view: shape.view, positive: shape.positive, ras: shape.mm, prompt: change.prompt,
    voxels: change.object.voxels, ms, server_ms: change.server_ms, request_ms: tServer - t0,
  };
  finishEdit();
  $("latency").textContent = `Last ${name}: ${ms.toFixed(0)} ms (model + server ${change.server_ms.toFixed(0)} ms)`;
  if (change.warning) return status(change.warning, { error: true });
  const p = change.prompt;
  status(`${sign} ${name} on ${shape.view} slice ${"ijk"[p.axis]} = ${p.slice} of ${obj.name}: ` +
    `${change.object.voxels.toLocaleString()} voxels${change.box ? "" : " (no change)"}, ${ms.toFixed(0)} ms.`);
}

async function setWindow(name) {
  state.window = name;
  document.querySelectorAll("[data-window]").forEach((b) => b.classList.toggle("active", b.dataset.window === name));
  if (!nv.volumes.length) return;
  const [level, width] = WINDOWS[name];
  status(`Window ${name} (level ${level}, width ${width} HU)…`, { busy: true });
  setBusy(+1);
  await new Promise((r) => requestAnimationFrame(r)); // let the status show: re-preparing the volume takes a while
  try {
    nv.volumes[0].cal_min = level - width / 2;
    nv.volumes[0].cal_max = level + width / 2;
    nv.updateGLVolume(); // the window is applied when the volume's texture is prepared
    await presented();
    status(`Window ${name}: level ${level}, width ${width} HU.`);
  } finally {
    setBusy(-1);
  }
}
async function setView(name) {
  state.view = name;
  document.querySelectorAll("[data-view]").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  if (name === "render" && gradients.deferred && nv.volumes.length) {
    status("3D view: computing the volume's gradients for shading…", { busy: true });
    setBusy(+1);
    await new Promise((r) => requestAnimationFrame(r));
    try { computeGradients(); } finally { setBusy(-1); }
  } else if (name === "render") {
    computeGradients();
  } else {
    redeferGradients(); // software WebGL: no tile shows the 3D rendering any more
  }
  nv.setSliceType(VIEWS[name]);
  if (state.session) status(`View: ${{ multi: "4 views", render: "3D" }[name] || name}.`);
}
document.querySelectorAll("[data-window]").forEach((b) => (b.onclick = () => enqueue(() => setWindow(b.dataset.window))));
document.querySelectorAll("[data-view]").forEach((b) => (b.onclick = () => enqueue(() => setView(b.dataset.view))));
$("mode-btn").onclick = () => {
  state.leftPositive = !state.leftPositive;
  const b = $("mode-btn");
  b.textContent = "Left button: " + (state.leftPositive ? "positive" : "negative");
  b.className = state.leftPositive ? "positive" : "negative";
  status(`The left button now adds ${state.leftPositive ? "positive" : "negative"} prompts.`);
};

// ---------------------------------------------------------------- overlay (drawing layer)
// The drawing bitmap is NiiVue's: uint8, display grid, RAS voxel order (x fastest), dims = back.dims.
// Display volume voxel (i', j', k') in file order -> RAS index via the volume's img2RAS steps.

/** Object colours into the drawing colour table (index = object id); only the table is uploaded. */
function applyColormap() {
  if (!nv.volumes.length) return;
  const lut = new Uint8ClampedArray(256 * 4);
  const labels = new Array(256).fill("");
  for (const o of state.objects) {
    if (o.id < 1 || o.id > 255) continue;
    lut.set([o.color[0], o.color[1], o.color[2], o.visible ? 255 : 0], o.id * 4);
    labels[o.id] = o.name;
  }
  nv.drawLut = { lut, labels };
  nv.refreshColormaps();
  nv.drawScene();
}

/** A new, empty overlay for the display volume just loaded. */
function createOverlay() {
  nv.createEmptyDrawing();
  nv.clickToSegmentGrowingBitmap = null; // NiiVue's click-to-segment buffer: never used here
  nv.drawClearAllUndoBitmaps?.(); // NiiVue's drawing undo: the server keeps the history
}

/**
 * Write the label values of a full-resolution box (file order [z0, y0, x0] .. [z1, y1, x1)) into
 * the drawing bitmap and upload only the display voxels it covers. A display voxel shows the
 * label of the full-resolution voxel nearest its centre (the block's central voxel).
 */
function patchOverlay(box, buf) {
  const vol = nv.volumes[0];
  const [[z0, y0, x0], [z1, y1, x1]] = box;
  const [fi, fj, fk] = state.display.factors;
  const [ni, nj, nk] = state.display.dims; // display volume, file order
  const c = [Math.floor((fi - 1) / 2), Math.floor((fj - 1) / 2), Math.floor((fk - 1) / 2)];
  // display voxels whose sample (block centre) lies in the box
  const lo = [Math.ceil((x0 - c[0]) / fi), Math.ceil((y0 - c[1]) / fj), Math.ceil((z0 - c[2]) / fk)].map((v) => Math.max(0, v));
  const hi = [
    Math.min(ni, Math.floor((x1 - 1 - c[0]) / fi) + 1), Math.min(nj, Math.floor((y1 - 1 - c[1]) / fj) + 1),
    Math.min(nk, Math.floor((z1 - 1 - c[2]) / fk) + 1),
  ];
  if (hi[0] <= lo[0] || hi[1] <= lo[1] || hi[2] <= lo[2]) return 0;
  // the same block in RAS order: axis p of RAS is file axis |permRAS[p]| - 1, flipped when negative
  const perm = vol.permRAS;
  const dimsRAS = [vol.dimsRAS[1], vol.dimsRAS[2], vol.dimsRAS[3]];
  const fileDims = [ni, nj, nk];
  const rlo = [0, 0, 0], rhi = [0, 0, 0];
  for (let p = 0; p < 3; p++) {
    const a = Math.abs(perm[p]) - 1;
    if (perm[p] > 0) { rlo[p] = lo[a]; rhi[p] = hi[a]; } else { rlo[p] = fileDims[a] - hi[a]; rhi[p] = fileDims[a] - lo[a]; }
  }
  const w = rhi[0] - rlo[0], h = rhi[1] - rlo[1], d = rhi[2] - rlo[2];
  const sub = new Uint8Array(w * h * d);
  const bw = x1 - x0, bh = y1 - y0; // box strides (file order, x fastest)
  const step = vol.img2RASstep, start = vol.img2RASstart;
  const bitmap = nv.drawBitmap;
  // walk RAS voxels of the block; find the display file voxel, then the full-resolution sample
  const s0 = step[0], s1 = step[1], s2 = step[2];
  const planeD = ni * nj;
  let o = 0;
  for (let rz = rlo[2]; rz < rhi[2]; rz++) {
    for (let ry = rlo[1]; ry < rhi[1]; ry++) {
      let idx = start[0] + start[1] + start[2] + rlo[0] * s0 + ry * s1 + rz * s2; // display file index
      let ras = rlo[0] + dimsRAS[0] * (ry + dimsRAS[1] * rz);
      for (let rx = rlo[0]; rx < rhi[0]; rx++, idx += s0, ras++) {
        const k = Math.floor(idx / planeD), rem = idx - k * planeD;
        const j = Math.floor(rem / ni), i = rem - j * ni;
        const v = buf[(k * fk + c[2] - z0) * bw * bh + (j * fj + c[1] - y0) * bw + (i * fi + c[0] - x0)];
        sub[o++] = v;
        bitmap[ras] = v;
      }
    }
  }
  const gl = nv.gl;
  gl.activeTexture(gl.TEXTURE7); // NiiVue's drawing texture unit
  gl.bindTexture(gl.TEXTURE_3D, nv.drawTexture);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
  gl.texSubImage3D(gl.TEXTURE_3D, 0, rlo[0], rlo[1], rlo[2], w, h, d, gl.RED, gl.UNSIGNED_BYTE, sub);
  return w * h * d;
}

async function fetchBox(box) {
  const [[z0, y0, x0], [z1, y1, x1]] = box;
  const res = await request(`/api/sessions/${state.session}/labels.raw?box=${[z0, y0, x0, z1, y1, x1].join(",")}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** Resolves once the GPU has finished all queued drawing (benchmarks wait for it between steps). */
window.ctsam3d.idle = async () => {
  await state.queue;
  syncGPU();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
};

/** The overlay in the CT's file voxel order on the display grid (tests compare it with the server's). */
window.ctsam3d.overlayFileOrder = () => {
  const vol = nv.volumes[0];
  const [ni, nj, nk] = state.display.dims;
  const out = new Uint8Array(ni * nj * nk);
  const step = vol.img2RASstep, start = vol.img2RASstart;
  const [dx, dy, dz] = [vol.dimsRAS[1], vol.dimsRAS[2], vol.dimsRAS[3]];
  let ras = 0;
  for (let z = 0; z < dz; z++) for (let y = 0; y < dy; y++) for (let x = 0; x < dx; x++, ras++) {
    out[start[0] + start[1] + start[2] + x * step[0] + y * step[1] + z * step[2]] = nv.drawBitmap[ras];
  }
  return out;
};

/** Draw and wait until the GPU has drawn it (the benchmark's "overlay updated"): a one-pixel
 * readback, unlike gl.finish, blocks until every queued command (uploads, passes) has run. */
const pixel = new Uint8Array(4);
const profile = params.get("profile") !== null; // ?profile: wait for the GPU after each step of an open
function syncGPU() {
  const gl = nv.gl;
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
}
async function presented() {
  nv.drawScene();
  syncGPU();
  return new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now())));
}

// ---------------------------------------------------------------- click markers
// A marker per placed click (green ring: positive, red cross: negative) on every 2D tile whose
// slice passes within half a display voxel of it; clicks of hidden objects are not shown.
function fileVoxelToMM(ijk) {
  const a = nv.volumes[0].hdr.affine; // display volume: voxel (file order) -> RAS mm
  const [fi, fj, fk] = state.display.factors;
  const c = [(fi - 1) / 2, (fj - 1) / 2, (fk - 1) / 2];
  const v = [(ijk[0] - c[0]) / fi, (ijk[1] - c[1]) / fj, (ijk[2] - c[2]) / fk];
  return [0, 1, 2].map((r) => a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3]);
}

/** Where a world point (RAS mm) falls on 2D tile `s`: canvas pixels and whether it lies within
 * `tol` mm of the tile's slice; null for a tile that is not a 2D slice. */
function tileProjector(s) {
  if (s.axCorSag > 2 || !s.AxyzMxy || s.AxyzMxy.length < 4) return null;
  // in-plane axes and depth axis of this tile (NiiVue: axial x,y|z; coronal x,z|y; sagittal y,z|x)
  const ax = s.axCorSag === 0 ? [0, 1, 2] : s.axCorSag === 1 ? [0, 2, 1] : [1, 2, 0];
  const v = s.AxyzMxy;
  const ltwh = s.leftTopWidthHeight.slice();
  const mirror = ltwh[2] < 0;
  if (mirror) { ltwh[0] += ltwh[2]; ltwh[2] = -ltwh[2]; }
  return (mm) => {
    const x = mm[ax[0]], y = mm[ax[1]], z = mm[ax[2]];
    const plane = v[2] + v[4] * (y - v[1]) - v[3] * (x - v[0]);
    let fx = (x - s.leftTopMM[0]) / s.fovMM[0];
    const fy = (y - s.leftTopMM[1]) / s.fovMM[1];
    const inside = fx >= 0 && fx <= 1 && fy >= 0 && fy <= 1;
    if (mirror) fx = 1 - fx;
    return { px: ltwh[0] + fx * ltwh[2], py: ltwh[1] + (1 - fy) * ltwh[3], depth: Math.abs(z - plane), depthAxis: ax[2], inside };
  };
}

const POS_COLOUR = "#3cf06a", NEG_COLOUR = "#ff4d6a";

/** Trace a shape's outline in canvas pixels: a box's rectangle, a lasso's closed contour, a scribble's line. */
function traceShape(ctx, kind, pts) {
  ctx.beginPath();
  if (kind === "box2d" && pts.length >= 2) {
    const [a, b] = pts;
    ctx.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
    return;
  }
  pts.forEach((p, n) => (n ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
  if (kind === "lasso") ctx.closePath();
  if (pts.length === 1) ctx.arc(pts[0][0], pts[0][1], 2, 0, 2 * Math.PI); // a one-point scribble
}

function drawMarkers() {
  if (marks.width !== canvas.width || marks.height !== canvas.height) {
    marks.width = canvas.width;
    marks.height = canvas.height;
  }
  const ctx = marks.getContext("2d");
  ctx.clearRect(0, 0, marks.width, marks.height);
  if (!state.session || !nv.volumes.length || !state.display) return;
  const points = [], shapes = [];
  for (const o of state.objects) {
    if (!o.visible) continue;
    for (const c of o.clicks) points.push({ mm: fileVoxelToMM(c.ijk), positive: c.positive, active: o.id === state.active });
    for (const p of o.prompts || []) {
      if (p.kind === "click") continue;
      shapes.push({ kind: p.kind, mm: p.points.map(fileVoxelToMM), positive: p.positive, active: o.id === state.active });
    }
  }
  for (const m of state.pendingMarks) points.push({ mm: m.mm, positive: m.positive, active: true, pending: true });
  for (const m of state.pendingShapes) shapes.push({ kind: m.kind, mm: m.mm, positive: m.positive, active: true, pending: true });
  const pix = nv.volumes[0].pixDimsRAS; // display voxel size along R, A, S
  const half = [pix[1] / 2, pix[2] / 2, pix[3] / 2];
  const r = Math.max(5, Math.round(5 * (window.devicePixelRatio || 1)));
  let shown = 0, shownShapes = 0;
  for (const s of nv.screenSlices || []) {
    const project = tileProjector(s);
    if (!project) continue;
    for (const p of points) {
      const q = project(p.mm);
      if (q.depth > half[q.depthAxis] + 1e-3 || !q.inside) continue;
      const { px, py } = q;
      ctx.lineWidth = p.active ? 2.5 : 1.5;
      ctx.strokeStyle = p.positive ? POS_COLOUR : NEG_COLOUR;
      ctx.setLineDash(p.pending ? [3, 3] : []);
      ctx.beginPath();
      if (p.positive) {
        ctx.arc(px, py, r, 0, 2 * Math.PI);
      } else {
        ctx.moveTo(px - r, py - r); ctx.lineTo(px + r, py + r);
        ctx.moveTo(px + r, py - r); ctx.lineTo(px - r, py + r);
      }
      ctx.stroke();
      shown++;
    }
    // shapes (2D box, lasso, scribble) on the tiles whose slice holds all their points
    ctx.save();
    const [l, t, w, h] = (() => { const q = s.leftTopWidthHeight.slice(); if (q[2] < 0) { q[0] += q[2]; q[2] = -q[2]; } return q; })();
    ctx.beginPath();
    ctx.rect(l, t, w, h);
    ctx.clip();
    for (const sh of shapes) {
      const qs = sh.mm.map(project);
      if (qs.some((q) => q.depth > half[q.depthAxis] + 1e-3)) continue;
      ctx.lineWidth = sh.active ? 2 : 1.25;
      ctx.strokeStyle = sh.positive ? POS_COLOUR : NEG_COLOUR;
      ctx.setLineDash(sh.pending ? [3, 3] : [7, 4]);
      traceShape(ctx, sh.kind, qs.map((q) => [q.px, q.py]));
      ctx.stroke();
      shownShapes++;
    }
    ctx.restore();
  }
  const d = state.drawing; // the stroke being drawn, in canvas pixels
  if (d) {
    ctx.lineWidth = 2;
    ctx.strokeStyle = d.positive ? POS_COLOUR : NEG_COLOUR;
    ctx.setLineDash([]);
    traceShape(ctx, KIND_OF_TOOL[d.tool], d.xy);
    ctx.stroke();
  }
  marks.dataset.shown = String(shown);
  marks.dataset.shapes = String(shownShapes);
}
window.ctsam3d.markerCount = () => Number(marks.dataset.shown || 0);
window.ctsam3d.shapeMarkerCount = () => Number(marks.dataset.shapes || 0);
window.addEventListener("resize", () => requestAnimationFrame(drawMarkers));

// ---------------------------------------------------------------- sessions
async function loadSession(sessionId) {
  const t0 = performance.now();
  const stages = {};
  status("Loading image…", { busy: true });
  setBusy(+1);
  try {
    const info = await api(`/api/sessions/${sessionId}`);
    state.display = null; // no markers until the new volume's grid is known
    state.session = sessionId;
    state.info = info;
    state.objects = info.objects;
    state.active = info.objects.length ? info.objects[info.objects.length - 1].id : null;
    history.replaceState(null, "", location.pathname + location.search + "#session=" + sessionId);
    const url = `/api/sessions/${sessionId}/view?max_voxels=${displayVoxels}`; // NIfTI, gzip or plain
    stages.info_ms = performance.now() - t0;
    if (profile) { // the display volume's bytes alone (the server caches it: loadVolumes' fetch is then cheap)
      await (await fetch(url, { headers: authHeaders() })).arrayBuffer();
      stages.fetch_ms = performance.now() - t0;
    }
    redeferGradients();
    const [level, width] = WINDOWS[state.window]; // set at load: a later change re-prepares the volume
    await nv.loadVolumes([{ url, name: "image.nii", headers: authHeaders(), colormap: "gray",
      cal_min: level - width / 2, cal_max: level + width / 2 }]);
    if (profile) syncGPU();
    stages.load_ms = performance.now() - t0;
    const vol = nv.volumes[0];
    // display block factors: display spacing / CT spacing, per file axis (1, 1, 1 at full resolution)
    const factors = [0, 1, 2].map((a) => Math.max(1, Math.round(vol.hdr.pixDims[a + 1] / info.image.spacing[a])));
    state.display = { factors, dims: [vol.hdr.dims[1], vol.hdr.dims[2], vol.hdr.dims[3]], fileDims: info.image.size };
    createOverlay();
    if (profile) { syncGPU(); stages.overlay_ms = performance.now() - t0; }
    if (state.objects.some((o) => o.voxels > 0)) { // a reopened session: its masks, once
      const [ni, nj, nk] = info.image.size;
      const box = [[0, 0, 0], [nk, nj, ni]];
      patchOverlay(box, await fetchBox(box));
    }
    applyColormap();
    renderObjects();
    const im = info.image;
    const coarse = factors.some((f) => f > 1) ? ` · shown at 1/${factors.join("×1/")} (software rendering)` : "";
    $("image-info").textContent = `${info.source.name} · ${im.size.join("×")} · ` +
      `${im.spacing.map((s) => s.toFixed(2)).join("×")} mm · ${im.orientation}${info.is_dicom ? " · DICOM" : ""}${coarse}`;
    const t1 = await presented();
    stages.drawn_ms = t1 - t0;
    state.timings.open_stages = stages;
    state.timings.open_ms = (state.timings.open_start ? t1 - state.timings.open_start : t1 - t0);
    state.timings.open_start = undefined;
    status(`Opened ${info.source.name} in ${(state.timings.open_ms / 1000).toFixed(1)} s: click on a structure.`);
    document.body.dataset.session = sessionId;
  } finally {
    setBusy(-1);
  }
}

async function openFromDatastore() {
  const id = $("datastore").value;
  if (!id) return status("Choose an image first.", { error: true });
  state.timings.open_start ??= performance.now();
  status(`Opening ${id}…`, { busy: true });
  const info = await api("/api/sessions", { method: "POST", json: { image: id } });
  state.timings.open_server_ms = performance.now() - state.timings.open_start;
  await loadSession(info.session_id);
}

async function uploadFiles(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  state.timings.open_start = performance.now();
  status(`Uploading ${files.length} file(s)…`, { busy: true });
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
window.ctsam3d.newObject = () => enqueue(async () => {
  await createObject(`object ${state.objects.length + 1}`);
  status(`New object: ${activeObject().name}.`);
});

/** Apply an edit's result: the object, then the overlay's changed box; returns voxels uploaded. */
async function applyChange(change) {
  replaceObject(change.object);
  let uploaded = 0;
  if (change.box) uploaded = patchOverlay(change.box, await fetchBox(change.box));
  state.edits += 1;
  renderObjects();
  return uploaded;
}

function finishEdit() { // after the frame is drawn: tests and benchmarks wait for this
  document.body.dataset.edits = String(state.edits);
}

async function sendClick(mark, t0) {
  if (!state.session) return;
  let obj = activeObject();
  if (!obj) obj = await createObject($("new-name").value.trim() || `object ${state.objects.length + 1}`);
  const sign = mark.positive ? "Positive" : "Negative";
  const queued = state.pending - 1; // clicks placed after this one
  status(`${sign} click on ${obj.name}: computing…${queued > 0 ? ` (${queued} more queued)` : ""}`, { busy: true });
  const tSend = performance.now();
  const change = await api(`/api/sessions/${state.session}/objects/${obj.id}/clicks`,
    { method: "POST", json: { ras: mark.mm, positive: mark.positive } });
  const tServer = performance.now();
  const uploaded = await applyChange(change);
  state.pendingMarks = state.pendingMarks.filter((m) => m !== mark);
  const t1 = await presented();
  const ms = t1 - t0;
  state.lastClick = {
    ras: mark.mm, positive: mark.positive, voxel: change.voxel, ms, overlay_ms: ms, server_ms: change.server_ms,
    request_ms: tServer - t0, queue_ms: tSend - t0, apply_ms: t1 - tServer, box_voxels: uploaded,
  };
  finishEdit();
  $("latency").textContent = `Last click: ${ms.toFixed(0)} ms (model + server ${change.server_ms.toFixed(0)} ms)`;
  const b = change.box;
  const where = `voxel (${change.voxel.join(", ")})`;
  if (change.warning) return status(change.warning, { error: true });  // e.g. an empty result (issue 19)
  const more = state.pending - 1; // clicks placed after this one, still to compute
  status(`${sign} click at ${where} on ${obj.name}: ${change.object.voxels.toLocaleString()} voxels` +
    `${b ? "" : " (no change)"}, ${ms.toFixed(0)} ms.` +
    (more > 0 ? ` ${more} more click${more > 1 ? "s" : ""} computing…` : ""), { busy: more > 0 });
}

async function objectAction(obj, action) {
  const base = `/api/sessions/${state.session}/objects/${obj.id}`;
  if (action === "delete") {
    if (!confirm(`Delete ${obj.name}?`)) return;
    status(`Deleting ${obj.name}…`, { busy: true });
    const change = await api(base, { method: "DELETE" });
    state.objects = state.objects.filter((o) => o.id !== obj.id);
    if (state.active === obj.id) state.active = state.objects.length ? state.objects[state.objects.length - 1].id : null;
    if (change.box) patchOverlay(change.box, await fetchBox(change.box));
    applyColormap();
    renderObjects();
    await presented();
    status(`Deleted ${obj.name}.`);
    return;
  }
  if (action === "undo" || action === "clear") {
    const verb = action === "undo" ? "Undo" : "Clear";
    status(`${verb} on ${obj.name}…`, { busy: true });
    setBusy(+1);
    try {
      const change = await api(`${base}/${action}`, { method: "POST" });
      await applyChange(change);
      await presented();
      finishEdit();
      const left = (change.object.prompts || change.object.clicks).length;
      status(`${verb} on ${obj.name}: ${change.object.voxels.toLocaleString()} voxels, ${left} prompt(s) left.`);
    } finally {
      setBusy(-1);
    }
    return;
  }
  if (action === "nifti" || action === "dicom") {
    status(`Exporting ${obj.name} as ${action === "nifti" ? "NIfTI" : "DICOM-SEG"}…`, { busy: true });
    const res = await request(`${base}/mask.${action === "nifti" ? "nii.gz" : "dcm"}`);
    const name = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "")?.[1] || "mask";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await res.blob());
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    status(`Exported ${obj.name} as ${name}.`);
  }
}

async function updateObject(obj, fields) {
  const updated = await api(`/api/sessions/${state.session}/objects/${obj.id}`, { method: "PATCH", json: fields });
  replaceObject(updated);
  applyColormap();
  renderObjects();
  const what = "visible" in fields ? (fields.visible ? "shown" : "hidden") : "recoloured";
  status(`${updated.name} ${what}.`);
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
    const shapes = (obj.prompts || []).filter((p) => p.kind !== "click").length;
    li.querySelector(".meta").textContent = `${obj.voxels} voxels · ${pos} positive, ${neg} negative clicks` +
      (shapes ? ` · ${shapes} shape${shapes > 1 ? "s" : ""}` : "");
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
      drawMarkers();
      status(`Clicks now go to ${obj.name}.`);
    };
    ul.appendChild(li);
  }
}

$("add-object").onclick = () => {
  if (!state.session) return status("Open an image first.", { error: true });
  const name = $("new-name").value.trim() || `object ${state.objects.length + 1}`;
  enqueue(async () => {
    await createObject(name);
    status(`New object: ${name}; clicks now go to it.`);
  });
};
$("open-btn").onclick = () => {
  state.timings.open_start = state.timings.open_pressed = performance.now(); // the wait starts at the press
  enqueue(openFromDatastore);
};
$("upload").onchange = (e) => enqueue(() => uploadFiles([...e.target.files]));

// ---------------------------------------------------------------- start
async function init() {
  const config = await api("/api/config");
  const modelEl = $("model-name");  // which model segments (issue 19)
  if (modelEl && config.model_name) Object.assign(modelEl, {
    textContent: `model: ${config.model_name} (${(config.model_trained_on || "").split(":")[0]})`,
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
      status(`Previous session not available (${err.message}); open an image.`, { error: true });
    }
  } else {
    status("Open an image from the data folder or upload one.");
  }
  document.body.dataset.ready = "1";
}
enqueue(init);
