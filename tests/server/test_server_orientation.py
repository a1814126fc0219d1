"""Clicks from the page (NiiVue world RAS mm) land on the right voxel for images stored RAS,
LPS and PLI. The RAS position is computed from the sform of the NIfTI the page loads (read
from its header bytes, as NiiVue does), not with SimpleITK, so the check is independent."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import block_voxel, nifti_sform_ras, read_nifti_bytes, synthetic_ct


@pytest.mark.parametrize("code", ["RAS", "LPS", "PLI"])
@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (0.45, -0.45, 0.3)])
def test_ras_click_lands_on_the_voxel(client, code, offset):
    img, lab = synthetic_ct(code)
    ijk = block_voxel(img, lab)
    sid = client.post("/api/sessions", json={"image": f"{code.lower()}.nii.gz"}).json()["session_id"]
    affine = nifti_sform_ras(client.get(f"/api/sessions/{sid}/image.nii.gz").content)
    ras = (affine @ np.array([*(np.array(ijk) + offset), 1.0]))[:3]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "block"})
    r = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ras": ras.tolist(), "positive": True})
    assert r.status_code == 200, r.text
    assert r.json()["voxel"] == list(ijk)
    assert lab[ijk] == 1  # the voxel clicked is inside the structure in the stored image


def test_world_and_voxel_clicks_give_the_same_mask(client, tmp_path):
    img, lab = synthetic_ct("PLI")
    ijk = block_voxel(img, lab)
    sid = client.post("/api/sessions", json={"image": "pli.nii.gz"}).json()["session_id"]
    lps = img.TransformIndexToPhysicalPoint(ijk)
    for name in ("by_ras", "by_ijk"):
        client.post(f"/api/sessions/{sid}/objects", json={"name": name})
    a = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ras": [-lps[0], -lps[1], lps[2]]}).json()
    b = client.post(f"/api/sessions/{sid}/objects/2/clicks", json={"ijk": list(ijk)}).json()
    assert a["voxel"] == b["voxel"] == list(ijk)
    ma, mb = (
        sitk.GetArrayFromImage(read_nifti_bytes(client.get(f"/api/sessions/{sid}/objects/{o}/mask.nii.gz").content, tmp_path, f"{o}.nii.gz"))
        for o in (1, 2)
    )
    assert np.array_equal(ma, mb) and ma.any()
