"""Metric CSVs: new columns never cost earlier rows; resume truncates to the resumed step."""

from __future__ import annotations

import csv

from ctsam3d.training.metrics import MetricsLog


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_new_columns_keep_earlier_rows(tmp_path):
    log = MetricsLog(tmp_path, 0, tensorboard=False)
    log.write("val", 250, {"dice@1": 0.5})
    log.write("val", 500, {"dice@1": 0.6, "cpp_hit": 0.1})  # a resumed run with more metrics
    log.write("val", 750, {"dice@1": 0.7})  # and fewer again
    rows = _rows(tmp_path / "val.csv")
    assert [r["step"] for r in rows] == ["250", "500", "750"]
    assert rows[0]["cpp_hit"] == "" and rows[1]["cpp_hit"] == "0.1" and rows[2]["cpp_hit"] == ""
    assert [float(r["dice@1"]) for r in rows] == [0.5, 0.6, 0.7]


def test_resume_drops_rows_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, 0, tensorboard=False)
    for s in (10, 20, 30):
        log.write("train", s, {"loss": float(s)})
    MetricsLog(tmp_path, 20, tensorboard=False)
    assert [r["step"] for r in _rows(tmp_path / "train.csv")] == ["10", "20"]
