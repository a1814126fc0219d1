"""Hostile input, command line: every case ends in exactly one line ``ctsam3d: error: ...``
with the expected words on stderr (captured at the file descriptor, so raw ITK/C++ output
would count too), a non-zero exit, nothing on stdout and nothing new on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_files import BAD_VOLUMES, dicom_series, good_ct, snapshot, text_file, zero_bomb, zero_spacing

import ctsam3d.io
from ctsam3d.cli.main import main


def run_cli(capfd, argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, words: str, name: str | None = None) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("ctsam3d: error: "), line
    assert words.lower() in line.lower(), f"{words!r} not in {line!r}"
    if name is not None:
        assert name in line, f"{name!r} not named in {line!r}"
    assert rc != 0 and out == ""
    return line


# --------------------------------------------------------------------------- bad volumes (info)
@pytest.mark.parametrize("case", BAD_VOLUMES, ids=[c[0] for c in BAD_VOLUMES])
def test_info_refuses_bad_volume(case, tmp_path, capfd, monkeypatch):
    _id, build, words, env, _upload = case
    path = build(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capfd, ["info", "-i", path])
    assert_one_line_error(rc, out, err, words, path.name)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- segment: before any work
def _segment(ct: Path, out: Path, *extra) -> list:
    return ["segment", "-i", ct, "-o", out, *extra]


def _exists(d: Path):
    good_ct(d, "mask.nii.gz")
    return dict(o=d / "mask.nii.gz")


def _folder(d: Path):
    (d / "out.nii.gz").mkdir()
    return dict(o=d / "out.nii.gz")


def _under_a_file(d: Path):
    (d / "plain_file").write_text("x", encoding="utf-8")
    return dict(o=d / "plain_file" / "sub" / "mask.nii.gz")


def _read_only_fs(d: Path):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc (a folder nobody can write to)")
    return dict(o=Path("/proc/ctsam3d-hostile/mask.nii.gz"), keep_outside=True)


def _read_only_folder(d: Path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    (d / "locked").mkdir()
    os.chmod(d / "locked", 0o500)
    return dict(o=d / "locked" / "mask.nii.gz")


SEGMENT_CASES = [
    # id, setup(tmp) -> overrides {o: output, args: extra args, i: input}, words
    ("output exists", _exists, "output exists"),
    ("unknown output ending", lambda d: dict(o=d / "mask.png"), "unknown output format"),
    ("output is a folder", _folder, "is a folder"),
    ("output folder under a file", _under_a_file, "is not a folder"),
    ("output on a read-only file system", _read_only_fs, "cannot write"),
    ("output folder read-only", _read_only_folder, "cannot write"),
    (".dcm output for NIfTI input", lambda d: dict(o=d / "mask.dcm"), "needs a dicom series as input"),
    (".dcm output for a series without Frame of Reference",
     lambda d: dict(i=dicom_series(d / "series", frame_of_reference=False), o=d / "mask.dcm"), "no frame of reference uid"),
    ("output is the input", lambda d: dict(o=d / "ct.nii.gz", args=["--click", "5,5,5", "--overwrite"]),
     "is the input image itself"),
    ("click with two numbers", lambda d: dict(args=["--click", "1,2"]), "expected three"),
    ("click with words", lambda d: dict(args=["--click", "a,b,c"]), "expected three"),
    ("first click negative", lambda d: dict(args=["--negative", "1,2,3", "--click", "2,2,2"]), "first click must be positive"),
    ("no clicks", lambda d: dict(args=[]), "no clicks"),
    ("negative expansion budget", lambda d: dict(args=["--click", "1,2,3", "--max-patches", "-1"]), "must be >= 0"),
    ("unknown device", lambda d: dict(args=["--click", "1,2,3", "-d", "tpu"]), "unknown device"),
]


@pytest.mark.parametrize("case", SEGMENT_CASES, ids=[c[0] for c in SEGMENT_CASES])
def test_segment_refuses_before_any_work(case, tmp_path, capfd, monkeypatch):
    _id, setup, words = case
    ct = good_ct(tmp_path)
    spec = {"o": tmp_path / "mask.nii.gz", "i": ct, "args": ["--click", "5,5,5"], **setup(tmp_path)}

    def no_reading(*a, **k):
        raise AssertionError("the CT was read before the arguments and the output were checked")

    monkeypatch.setattr(ctsam3d.io, "read_volume", no_reading)
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capfd, _segment(spec["i"], spec["o"], *spec["args"]))
    assert_one_line_error(rc, out, err, words)
    assert snapshot(tmp_path) == before


MODEL_CASES = [
    # cases that get as far as reading the image / loading the model
    ("model is a text file", lambda d: dict(args=["--click", "5,5,5", "--model", text_file(d).rename(d / "m.pth")]),
     "not a pytorch checkpoint"),
    ("model missing", lambda d: dict(args=["--click", "5,5,5", "--model", d / "nope.safetensors"]), "no such checkpoint"),
    ("click outside the image", lambda d: dict(args=["--click", "500,5,5"]), "outside"),
    ("zero spacing input", lambda d: dict(i=zero_spacing(d)), "spacing"),
    ("zip bomb input", lambda d: dict(i=zero_bomb(d), env={"CTSAM3D_MAX_MEMORY": "16M"}), "of memory"),
]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_segment_refuses_and_writes_nothing(case, tmp_path, capfd, monkeypatch):
    _id, setup, words = case
    ct = good_ct(tmp_path)
    spec = {"o": tmp_path / "mask.nii.gz", "i": ct, "args": ["--click", "5,5,5"], **setup(tmp_path)}
    for k, v in spec.get("env", {}).items():
        monkeypatch.setenv(k, v)
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capfd, _segment(spec["i"], spec["o"], *spec["args"]))
    assert_one_line_error(rc, out, err, words)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- convert-checkpoint, demo
def _torch_file(d: Path) -> Path:
    import torch

    torch.save({"model_state_dict": {"w": torch.zeros(2)}}, d / "tiny.pth")
    return d / "tiny.pth"


OTHER_CASES = [
    ("convert: text file as params.pth", lambda d: ["convert-checkpoint", "-i", text_file(d).rename(d / "params.pth"), "-o", d / "m"],
     "not a pytorch checkpoint"),
    ("convert: missing params.pth", lambda d: ["convert-checkpoint", "-i", d / "params.pth", "-o", d / "m"], "no such file"),
    ("convert: output is a file", lambda d: ["convert-checkpoint", "-i", _torch_file(d), "-o", text_file(d)],
     "not a directory"),
    ("convert: output unwritable", lambda d: ["convert-checkpoint", "-i", _torch_file(d), "-o", "/proc/ctsam3d-hostile"]
     if Path("/proc/self").is_dir() else pytest.skip("needs /proc"), "cannot write"),
    ("demo: --port without --serve", lambda d: ["demo", "-o", d / "demo", "--port", "8123"], "only used with --serve"),
    ("demo: zero clicks", lambda d: ["demo", "-o", d / "demo", "--clicks", "0"], "must be >= 1"),
    ("demo: unknown structure", lambda d: ["demo", "-o", d / "demo", "--structures", "spleen_of_mars"], "unknown structure"),
    ("demo: output folder is a file", lambda d: ["demo", "-o", text_file(d)], "is not a folder"),
    ("info: memory limit not a size", lambda d: ["info", "-i", good_ct(d)], "not a memory size"),
]


@pytest.mark.parametrize("case", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_other_commands_refuse(case, tmp_path, capfd, monkeypatch):
    _id, argv, words = case
    if _id.startswith("info: memory"):
        monkeypatch.setenv("CTSAM3D_MAX_MEMORY", "lots")
    args = argv(tmp_path)
    before = snapshot(tmp_path)
    rc, out, err = run_cli(capfd, args)
    assert_one_line_error(rc, out, err, words)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- closed pipe
def test_info_json_into_a_closed_pipe_exits_quietly(tmp_path):
    """``ctsam3d info --json ... | head -c0``: the reader is gone before we write."""
    ct = good_ct(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctsam3d.cli.main", "info", "--json", "-i", str(ct)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # like `head` exiting at once
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert err.strip() == ""
    assert proc.returncode == 141
