"""The page on a coarse display volume (as on software WebGL with a full-size CT), in headless
Chromium: after a click the overlay on the display grid holds the server's label map sampled at
each display block's central voxel, and a marker sits at the click; two clicks in a row are
computed one after the other, the status line saying so, and it ends on the last one.

``?display=1000000`` makes the 128^3 example CT (5.42 x 5.42 x 3 mm) display at 64 x 128 x 64
(block factors 2, 1, 2 along i, j, k), the same code path a 512 x 512 x 300 CT takes by default.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from test_browser import CANVAS_POS_OF_RAS_JS, CHROMIUM_FLAGS, _target, open_ct_page, require_browser

from ctsam3d.examples import example_case
from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server.background import BackgroundServer
from ctsam3d.server.routes_view import display_factors


def test_click_on_a_coarse_display_volume(tmp_path, lite_model):
    browser, sync_api = require_browser()
    case = example_case()
    (tmp_path / "data").mkdir()
    shutil.copy(case.ct, tmp_path / "data" / "ct.nii.gz")
    ct = sitk.ReadImage(str(case.ct))
    fi, fj, fk = display_factors(ct.GetSize(), ct.GetSpacing(), 1_000_000)
    assert (fi, fj, fk) == (2, 1, 2)
    _, ras = _target(sitk.ReadImage(str(case.labels)))
    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=tmp_path / "data", expansion=False), model=lite_model)
    errors: list[str] = []
    with BackgroundServer(app) as url, sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = open_ct_page(b, url, "ct.nii.gz", errors, query="?display=1000000", view="axial", viewport=(1200, 800))
            shown = page.evaluate("() => window.ctsam3d.state.display")
            pos = page.evaluate(CANVAS_POS_OF_RAS_JS, ras)
            page.mouse.click(pos[0], pos[1])
            page.wait_for_function("document.body.dataset.edits === '1'")
            overlay = np.array(page.evaluate("() => Array.from(window.ctsam3d.overlayFileOrder())"), dtype=np.uint8)
            markers = page.evaluate("() => window.ctsam3d.markerCount()")
            sid = page.evaluate("() => document.body.dataset.session")
            server = sitk.GetArrayFromImage(app.state.ctx.store.get(sid).label_image())  # [k, j, i]
            # two clicks in a row: the second waits for the first; the status line tells of it
            page.evaluate("""() => { window.__said = [];
                new MutationObserver(() => window.__said.push(document.getElementById('status').textContent))
                    .observe(document.getElementById('status'), {childList: true, subtree: true, characterData: true}); }""")
            page.mouse.click(pos[0] + 6, pos[1] + 4)
            page.mouse.click(pos[0] + 12, pos[1] + 8, button="right")
            page.wait_for_function("document.body.dataset.edits === '3'")
            said = page.evaluate("() => window.__said")
            final = page.evaluate("() => ({status: document.getElementById('status').textContent,"
                                  " busy: !document.getElementById('busy').hidden, markers: window.ctsam3d.markerCount()})")
        finally:
            b.close()
    assert errors == []
    assert shown["factors"] == [fi, fj, fk] and shown["dims"] == [64, 128, 64]
    ci, cj, ck = (fi - 1) // 2, (fj - 1) // 2, (fk - 1) // 2
    expected = server[ck::fk, cj::fj, ci::fi]  # each display voxel: its block's central CT voxel
    assert expected.any(), "the click made no mask"
    assert np.array_equal(overlay.reshape(expected.shape), expected)
    assert markers >= 1
    assert any("more click computing" in t or "more queued" in t for t in said), said
    assert final["status"].startswith("Negative click at voxel") and not final["busy"]
    assert final["markers"] >= 2
