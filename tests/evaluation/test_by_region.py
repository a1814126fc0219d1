"""Per-region / per-family tables from report.csv rows, and the 'falls' check."""

import numpy as np
import pytest

from ctsam3d.evaluation.by_region import falls, group_curves, main, read_rows

CSV_HEAD = "method,case,structure,voxels,clicks_made,dice_1,dice_2,dice_3\n"


def _write(tmp_path, rows):
    p = tmp_path / "report.csv"
    p.write_text(CSV_HEAD + "".join(f"{m},c,{s},10,3,{a},{b},{c}\n" for m, s, a, b, c in rows))
    return p


@pytest.mark.parametrize(
    "curve, expected",
    [
        ([0.5, 0.6, 0.7], []),
        ([0.5, 0.45, 0.7], [(1, 0.05)]),
        ([0.5, 0.495, 0.49], []),          # within the 0.01 tolerance
        ([0.8, 0.7, 0.6], [(1, 0.1), (2, 0.1)]),
    ],
)
def test_falls(curve, expected):
    assert falls(np.array([curve]), tolerance=0.01) == expected


def test_groups_and_table(tmp_path, capsys):
    p = _write(tmp_path, [("model", "liver", 0.2, 0.4, 0.6), ("model", "spleen", 0.4, 0.6, 0.8),
                          ("model", "rib_left_3", 0.3, 0.2, 0.25), ("random-walker", "liver", 0.1, 0.2, 0.3)])
    rows = read_rows([p], method="model")
    assert len(rows) == 3
    g = group_curves(rows, "family")
    assert set(g) == {("model", "organ"), ("model", "rib")}
    np.testing.assert_allclose(g[("model", "organ")].mean(0), [0.3, 0.5, 0.7])
    assert main([str(p), "--by", "family", "--clicks", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "| model | rib | 1 | 0.300 | 0.250 | 1→2: −0.100 |" in out
    assert "| random-walker | organ | 1 | 0.100 | 0.300 | none |" in out


def test_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such report.csv" in capsys.readouterr().err
    p = _write(tmp_path, [("model", "liver", 0.2, 0.4, 0.6)])
    assert main([str(p), "--clicks", "one"]) == 2
    assert main([str(p), "--method", "nope"]) == 2
