"""Peak memory of ``ctsam3d info`` and ``ctsam3d segment`` against the header-only estimate
(issue 17, item 8: a small ``.nii.gz`` of zeros declaring a huge volume).

For each size, writes a constant int16 volume (-1024 HU; ``.nii.gz``: a few hundred kB on
disk; and ``.mha``), runs each command in a fresh process and records its peak resident set size
minus the peak of the same command on a 14 x 13 x 12 volume (imports, model), next to
:func:`ctsam3d.io.memory.estimate_bytes` for the header. The estimate must be at least the
measured growth (else the limit could let through what does not fit), and not far above it.

Prints a table and writes JSON (``--json``). Keep sizes modest on a shared machine: the
largest default (512 x 512 x 400) peaks under 1 GB.

    python benchmarks/header_memory.py --json benchmarks/results/header_memory.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

from ctsam3d.io.memory import PIPELINE_BYTES_PER_VOXEL, READ_COPIES, estimate_bytes, file_kind

# The child reports VmHWM (its own address space's peak), not ru_maxrss: Linux carries
# ru_maxrss over fork + exec, so a child would report at least this process's peak.
WRAPPER = (
    "import sys\n"
    "from ctsam3d.cli.main import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]\n"
    "print('MAXRSS_KIB', hwm, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def peak_mib(argv: list[str]) -> float:
    r = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{r.stderr}")
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("MAXRSS_KIB"))
    return int(line.split()[1]) / 1024.0


def write_zeros(folder: Path, size, suffix: str) -> Path:
    """A constant volume of -1024 HU (air: compresses like zeros, and passes the HU sanity check)."""
    img = sitk.Image(*size, sitk.sitkInt16) - 1024
    path = folder / f"air_{'x'.join(map(str, size))}{suffix}"
    sitk.WriteImage(img, str(path), suffix == ".nii.gz")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512x512x200,512x512x400", help="comma-separated IxJxK sizes")
    ap.add_argument("--formats", default=".nii.gz,.mha")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ctsam3d-memory-") as tmp:
        d = Path(tmp)
        for fmt in args.formats.split(","):
            tiny = write_zeros(d, (14, 13, 12), fmt)
            base = {
                "info": peak_mib(["info", "-q", "-i", str(tiny)]),
                "segment": peak_mib(["segment", "-q", "-i", str(tiny), "-o", str(d / "tiny_mask.nii.gz"),
                                     "--click", "7,6,6", "--overwrite", "--allow-non-hu"]),
            }
            for size in sizes:
                path = write_zeros(d, size, fmt)
                voxels = size[0] * size[1] * size[2]
                est = estimate_bytes(voxels, "16-bit signed integer", 1, file_kind(path)) / 2**20
                info = peak_mib(["info", "-q", "-i", str(path)]) - base["info"]
                seg = peak_mib(["segment", "-q", "-i", str(path), "-o", str(d / "mask.nii.gz"),
                                "--click", ",".join(str(s // 2) for s in size), "--overwrite", "--allow-non-hu"]) - base["segment"]
                rows.append({"format": fmt, "size": list(size), "voxels": voxels, "file_kib": path.stat().st_size // 1024,
                             "estimate_mib": round(est, 1), "info_mib": round(info, 1), "segment_mib": round(seg, 1),
                             "estimate_covers": est >= max(info, seg)})
                path.unlink()
    head = f"{'format':8}{'size':>16}{'file kB':>9}{'estimate':>10}{'info':>9}{'segment':>9}  covers"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['format']:8}{'x'.join(map(str, r['size'])):>16}{r['file_kib']:>9}{r['estimate_mib']:>9.0f}M"
              f"{r['info_mib']:>8.0f}M{r['segment_mib']:>8.0f}M  {r['estimate_covers']}")
    print("(growth of peak RSS over the same command on a 14x13x12 volume; MiB)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": platform.node(), "python": platform.python_version(),
            "read_copies": READ_COPIES, "pipeline_bytes_per_voxel": PIPELINE_BYTES_PER_VOXEL, "rows": rows,
        }, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
