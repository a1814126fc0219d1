"""A full-size CT (512 x 512 x N, int16 HU) built from the shared TotalSegmentator example.

The shared data has no full-size CT with its anatomy: the TotalSegmentator example CT is
122 x 101 x 112 at 3 mm (366 x 303 x 336 mm, abdomen/pelvis) and the 512 x 512 DICOM series
has only 20 slices. This module resamples the example CT onto a clinical-size grid covering
the same body: 512 x 512 in-plane with square pixels over the larger in-plane extent
(366 mm -> 0.715 mm pixels; the shorter axis padded with air, -1024 HU) and N slices over
its 336 mm (N = 133 -> 2.53 mm, N = 300 -> 1.12 mm), linear interpolation, stored in the
source's axis order (RAS, as dcm2niix writes), then adds Gaussian noise (sigma 12 HU, fixed
seed) so that the file compresses and reads like a real scan, not like a smooth upsampled
one. Its TotalSegmentator labels are resampled (nearest) onto the same grid, to place clicks
inside organs.

Files are cached under ``$CTSAM3D_BENCH_CACHE`` (default ``~/.cache/ctsam3d/bench``) as
``fullsize_<i>x<j>x<k>_ct.nii.gz`` and ``..._labels.nii.gz``; delete them to rebuild.

    python benchmarks/fullsize_ct.py 512,512,300           # build (or find) and print the paths
    from fullsize_ct import build; case = build((512, 512, 133))
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "totalseg_examples"
SOURCE_CT = SHARED / "example_ct.nii.gz"
SOURCE_LABELS = SHARED / "example_seg_fast_force_split.nii.gz"
NOISE_HU = 12.0
#: TotalSegmentator ``total`` ids of organs used as click targets (large, easy to hit).
ORGANS = {5: "liver", 1: "spleen", 2: "kidney_right", 3: "kidney_left", 6: "stomach"}


@dataclass
class FullSizeCase:
    ct: Path
    labels: Path
    size_ijk: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def organ_voxel(self, label_id: int = 5) -> tuple[int, int, int]:
        """ITK index (i, j, k) of the organ voxel nearest the organ's centroid."""
        zyx = np.argwhere(sitk.GetArrayFromImage(sitk.ReadImage(str(self.labels))) == label_id)
        if not len(zyx):
            raise ValueError(f"label {label_id} absent from {self.labels}")
        best = zyx[np.argmin(((zyx - zyx.mean(axis=0)) ** 2).sum(axis=1))]
        return tuple(int(v) for v in best[::-1])

    def organ_voxels(self, n: int, seed: int = 0) -> list[tuple[int, tuple[int, int, int]]]:
        """``n`` (label id, ITK index) pairs, random voxels inside the :data:`ORGANS`."""
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(self.labels)))
        rng = np.random.default_rng(seed)
        ids = [i for i in ORGANS if (arr == i).any()]
        out = []
        for m in range(n):
            lid = ids[m % len(ids)]
            zyx = np.argwhere(arr == lid)
            z, y, x = zyx[rng.integers(len(zyx))]
            out.append((lid, (int(x), int(y), int(z))))
        return out


def cache_dir() -> Path:
    return Path(os.environ.get("CTSAM3D_BENCH_CACHE", Path.home() / ".cache" / "ctsam3d" / "bench"))


def _grid(src: sitk.Image, size: tuple[int, int, int]) -> sitk.Image:
    ext = np.array(src.GetSize()) * np.array(src.GetSpacing())
    inplane = max(ext[0], ext[1]) / size[0]
    spacing = (inplane, max(ext[0], ext[1]) / size[1], ext[2] / size[2])
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing(spacing)
    ref.SetDirection(src.GetDirection())
    centre = src.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in src.GetSize()])
    d = np.array(src.GetDirection()).reshape(3, 3)
    half = d @ ((np.array(size) - 1) / 2 * np.array(spacing))
    ref.SetOrigin(tuple(np.array(centre) - half))
    return ref


def build(size: tuple[int, int, int] = (512, 512, 300), *, directory: Path | None = None, seed: int = 0) -> FullSizeCase:
    """Build (or reuse from the cache) the full-size CT and labels; see the module docstring."""
    if not SOURCE_CT.is_file():
        raise FileNotFoundError(f"{SOURCE_CT}: shared data not found (needs ../shared/data)")
    out = Path(directory or cache_dir())
    out.mkdir(parents=True, exist_ok=True)
    stem = f"fullsize_{size[0]}x{size[1]}x{size[2]}"
    ct_path, lab_path = out / f"{stem}_ct.nii.gz", out / f"{stem}_labels.nii.gz"
    if not (ct_path.is_file() and lab_path.is_file()):
        src = sitk.ReadImage(str(SOURCE_CT), sitk.sitkFloat32)
        ref = _grid(src, size)
        ct = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        arr = sitk.GetArrayFromImage(ct)
        del ct
        rng = np.random.default_rng(seed)
        for z in range(arr.shape[0]):  # slice by slice: no second full-size float copy
            arr[z] += rng.normal(0.0, NOISE_HU, arr.shape[1:]).astype(np.float32)
        out_img = sitk.GetImageFromArray(np.clip(np.rint(arr), -1024, 3071).astype(np.int16))
        del arr
        out_img.CopyInformation(ref)
        tmp = ct_path.with_name(".tmp_" + ct_path.name)
        sitk.WriteImage(out_img, str(tmp), True)
        os.replace(tmp, ct_path)
        labels = sitk.ReadImage(str(SOURCE_LABELS))
        lab = sitk.Resample(labels, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        tmp = lab_path.with_name(".tmp_" + lab_path.name)
        sitk.WriteImage(lab, str(tmp), True)
        os.replace(tmp, lab_path)
    r = sitk.ImageFileReader()
    r.SetFileName(str(ct_path))
    r.ReadImageInformation()
    return FullSizeCase(ct_path, lab_path, tuple(r.GetSize()), tuple(r.GetSpacing()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("size", nargs="?", default="512,512,300", help="i,j,k voxels (default 512,512,300)")
    p.add_argument("--dir", type=Path, default=None, help=f"cache folder (default {cache_dir()})")
    a = p.parse_args()
    case = build(tuple(int(v) for v in a.size.split(",")), directory=a.dir)
    print(f"{case.ct}  size {case.size_ijk}  spacing {tuple(round(s, 3) for s in case.spacing)} mm")
    print(f"{case.labels}  liver voxel (i,j,k) {case.organ_voxel(5)}")


if __name__ == "__main__":
    main()
