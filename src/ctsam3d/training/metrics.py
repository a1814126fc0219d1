"""Metric logging: CSV files (always) and TensorBoard (when installed), main rank only.

``train.csv`` gets one row per logged step, ``val.csv`` one row per validation. On resume,
rows after the resumed step are dropped so the files read like one uninterrupted run. When a
row brings new columns (e.g. a resumed run with more metrics) the file is rewritten with the
union of the columns; earlier rows keep their values, with empty cells for the new ones.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

__all__ = ["MetricsLog"]

log = logging.getLogger(__name__)


class MetricsLog:
    def __init__(self, out_dir: Path, resume_step: int, tensorboard: bool = True) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("train.csv", "val.csv"):
            self._truncate(self.dir / name, resume_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:
                log.info("tensorboard is not installed: metrics go to CSV only")

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        if not path.is_file():
            return
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            return
        keep = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= step]
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(keep)

    def write(self, name: str, step: int, values: dict[str, float]) -> None:
        path = self.dir / f"{name}.csv"
        row = {"step": step, **values}
        cells = {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()}
        header: list[str] = []
        if path.is_file() and path.stat().st_size > 0:
            with path.open(newline="") as fh:
                header = next(csv.reader(fh), [])
        if header and set(row) <= set(header):
            with path.open("a", newline="") as fh:
                csv.writer(fh).writerow([cells.get(k, "") for k in header])
        else:  # first row, or new columns: rewrite with the union, keeping every earlier row
            old: list[dict] = []
            if header:
                with path.open(newline="") as fh:
                    old = list(csv.DictReader(fh))
            columns = header + [k for k in row if k not in header]
            tmp = path.with_suffix(".csv.tmp")
            with tmp.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=columns, restval="")
                w.writeheader()
                w.writerows(old)
                w.writerow(cells)
            tmp.replace(path)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{name}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
