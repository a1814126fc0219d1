"""End to end in a real headless browser: Debian's ``chromium`` driven by Playwright-python
(``pip install playwright``; no ``playwright install``: the system browser is used).

The page opens the bundled example CT (stored P, L, I), the test clicks on an organ in the
axial view exactly as a user would (mouse event on the canvas), waits for the overlay and
checks: the server received the organ's voxel, the overlay the page shows equals the
server's label map, the mask sits around the click, and (with the bundled trained weights)
Dice >= 0.5 against the organ's label; then a right click adds a negative click. A screenshot
(after the first click) is saved to ``.ctsam3d_artifacts/``.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import ctsam3d
from ctsam3d.examples import example_case
from ctsam3d.modeling.checkpoint import BUNDLED_DIR, WEIGHTS_FILE
from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server.app import niivue_module_path
from ctsam3d.server.background import BackgroundServer

ARTIFACTS = Path(__file__).resolve().parents[2] / ".ctsam3d_artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
ORGAN_ID, ORGAN = 7, "mandible"
HAVE_WEIGHTS = (BUNDLED_DIR / WEIGHTS_FILE).is_file()

# Page script: bring a RAS mm point's slice into view and return its client pixel position on
# the axial tile (the page's automation hook), for a mouse click at an organ voxel.
CANVAS_POS_OF_RAS_JS = "(ras) => window.ctsam3d.clientPointOfRas(ras, 0)"


def _browser_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def require_browser():
    """``(chromium path, playwright.sync_api)`` for a browser test, or skip it; NiiVue must be installed."""
    browser = _browser_path()
    if browser is None:
        pytest.skip("no chromium installed (Debian: apt-get update && apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no 'playwright install' needed)")
    assert niivue_module_path() is not None, "NiiVue is not installed: run 'npm ci' in the repository root"
    return browser, sync_api


def open_ct_page(b, url: str, name: str, errors: list[str], *, query: str = "", view: str | None = None,
                 viewport: tuple[int, int] = (1400, 900)):
    """A new page of browser ``b`` on the server at ``url`` (page ``/`` + ``query``), ``view``
    picked when given, the data-store CT ``name`` opened; page errors go to ``errors``."""
    page = b.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.set_default_timeout(180_000)  # software WebGL on a busy 2-core machine is slow
    page.on("pageerror", lambda e: errors.append(f"{e} {getattr(e, 'stack', '') or ''}"[:800]))
    page.goto(url + "/" + query)
    page.wait_for_function("document.body.dataset.ready === '1'")
    if view is not None:
        page.click(f"[data-view={view}]")
    page.select_option("#datastore", name)
    page.click("#open-btn")
    page.wait_for_function("document.body.dataset.session")
    return page


def _target(labels: sitk.Image) -> tuple[tuple[int, int, int], list[float]]:
    """The organ voxel nearest the organ's centroid (ITK i, j, k) and its RAS mm."""
    zyx = np.argwhere(sitk.GetArrayFromImage(labels) == ORGAN_ID)
    best = zyx[np.argmin(((zyx - zyx.mean(axis=0)) ** 2).sum(axis=1))]
    ijk = tuple(int(v) for v in best[::-1])
    lps = labels.TransformIndexToPhysicalPoint(ijk)
    return ijk, [-lps[0], -lps[1], lps[2]]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, lite_model):
    """Run the browser once; the tests below check what it produced."""
    browser, sync_api = require_browser()

    case = example_case()
    data = tmp_path_factory.mktemp("e2e-data")
    shutil.copy(case.ct, data / "example_ct.nii.gz")
    labels = sitk.ReadImage(str(case.labels))
    ijk, ras = _target(labels)
    if HAVE_WEIGHTS:
        model, expansion = ctsam3d.load_model(), True
    else:
        model, expansion = lite_model, False
    state = tmp_path_factory.mktemp("e2e-state")
    app = create_app(ServerConfig(state_dir=state, data_dir=data, expansion=expansion), model=model)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "server_e2e.png"
    errors: list[str] = []
    with BackgroundServer(app) as url, sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, headless=True, args=CHROMIUM_FLAGS)
        try:
            # one 2D view: a 25 px move stays on this slice
            page = open_ct_page(b, url, "example_ct.nii.gz", errors, view="axial")
            # bring the organ's slice into view, then find its pixel on the canvas
            pos = page.evaluate(CANVAS_POS_OF_RAS_JS, ras)
            page.evaluate(  # count NiiVue's whole-volume refreshes during the clicks (there should be none)
                """() => {
                    const nv = window.ctsam3d.nv;
                    window.__refreshes = 0;
                    for (const name of ["updateGLVolume", "refreshLayers", "refreshDrawing"]) {
                        const orig = nv[name].bind(nv);
                        nv[name] = (...a) => { window.__refreshes += 1; return orig(...a); };
                    }
                }"""
            )
            page.mouse.click(pos[0], pos[1])  # left click = positive
            page.wait_for_function("document.body.dataset.edits === '1'", timeout=180_000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(shot))
            last = page.evaluate("() => window.ctsam3d.state.lastClick")
            # what the page shows: nonzero count and a checksum of the overlay (file voxel order)
            overlay = page.evaluate(
                """() => {
                    const img = window.ctsam3d.overlayFileOrder();
                    let n = 0, s = 0;
                    for (let i = 0; i < img.length; i++) if (img[i]) { n += 1; s += i; }
                    return {n, s, len: img.length};
                }"""
            )
            first_ui = page.evaluate(
                """() => ({markers: window.ctsam3d.markerCount(), busy: !document.getElementById('busy').hidden,
                           status: document.getElementById('status').textContent})"""
            )
            sid = page.evaluate("() => document.body.dataset.session")
            server_labels = sitk.GetArrayFromImage(app.state.ctx.store.get(sid).label_image())
            # a right click is a negative click on the same object
            page.mouse.click(pos[0] + 25, pos[1] + 25, button="right")
            page.wait_for_function("document.body.dataset.edits === '2'", timeout=180_000)
            second = page.evaluate("() => window.ctsam3d.state.lastClick")
            refreshes = page.evaluate("() => window.__refreshes")
            second_ui = page.evaluate(
                """() => ({markers: window.ctsam3d.markerCount(), busy: !document.getElementById('busy').hidden,
                           status: document.getElementById('status').textContent})"""
            )
        finally:
            b.close()
        clicks = app.state.ctx.store.get(sid).info()["objects"][0]["clicks"]
    return {
        "target_ijk": ijk, "labels": sitk.GetArrayFromImage(labels), "last": last, "overlay": overlay,
        "server": server_labels, "errors": errors, "shot": shot, "second": second, "clicks": clicks,
        "first_ui": first_ui, "second_ui": second_ui, "refreshes": refreshes,
    }


def test_click_reaches_the_organ_voxel(e2e):
    assert e2e["errors"] == []
    assert e2e["last"]["positive"] is True
    assert tuple(e2e["last"]["voxel"]) == e2e["target_ijk"]
    assert e2e["labels"][tuple(reversed(e2e["target_ijk"]))] == ORGAN_ID


def test_right_click_is_negative(e2e):
    assert e2e["second"]["positive"] is False
    assert [c["positive"] for c in e2e["clicks"]] == [True, False]
    assert e2e["clicks"][1]["ijk"] == e2e["second"]["voxel"] != e2e["clicks"][0]["ijk"]


def test_overlay_in_page_equals_server_mask_around_the_click(e2e):
    server = e2e["server"]
    flat = np.flatnonzero(server.ravel())
    assert flat.size > 0, "no overlay after the click"
    assert e2e["overlay"] == {"n": int(flat.size), "s": int(flat.sum()), "len": server.size}
    zyx = np.argwhere(server > 0)
    lo, hi = zyx.min(axis=0), zyx.max(axis=0)
    click = np.array(e2e["target_ijk"][::-1])
    assert np.all(lo <= click) and np.all(click <= hi), "the mask does not surround the clicked voxel"
    assert e2e["shot"].stat().st_size > 10_000


@pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"bundled weights absent ({BUNDLED_DIR}): an untrained model is used, Dice not meaningful")
def test_one_click_dice(e2e):
    mask, truth = e2e["server"] > 0, e2e["labels"] == ORGAN_ID
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    print(f"one-click Dice on the {ORGAN}: {dice:.3f}")
    assert dice >= 0.5, f"Dice {dice:.3f} from one click on the {ORGAN}"


def test_markers_busy_indicator_and_status_follow_the_clicks(e2e):
    """A marker at each placed click (the first on the axial slice shown; the second, 25 px away,
    on the same slice), no busy indicator once the overlay is drawn, and a status line that
    describes the latest click."""
    assert e2e["first_ui"]["markers"] >= 1
    assert e2e["second_ui"]["markers"] >= 2
    assert not e2e["first_ui"]["busy"] and not e2e["second_ui"]["busy"]
    assert e2e["first_ui"]["status"].startswith("Positive click at voxel")
    assert e2e["second_ui"]["status"].startswith("Negative click at voxel")


def test_clicks_update_the_overlay_in_place(e2e):
    """No whole-volume refresh (updateGLVolume, refreshLayers, refreshDrawing) per click: only the
    changed box of the overlay texture is uploaded, and it is smaller than the volume."""
    assert e2e["refreshes"] == 0
    assert 0 < e2e["last"]["box_voxels"] < e2e["overlay"]["len"]
    assert e2e["second"]["box_voxels"] < e2e["overlay"]["len"]
