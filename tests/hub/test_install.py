"""``ctsam3d download`` against a local stand-in for ModelScope serving a generated checkpoint
shaped like the released one (428 tensors of the ``ctsam3d-paper`` network, 74 M values, ~296 MB,
``{"model_state_dict": ...}`` + ``config.py``): install, resume, refusals, nothing partial left."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ctsam3d.cli.main import main as cli_main
from ctsam3d.hub import paths, registry
from ctsam3d.hub.install import record_path

from fake_modelscope import FakeModelScope, Hub, Served, sha256_of

CONFIG_PY = (
    "import os\n"
    "cfg.network = 'restv2_tiny'\n"
    "cfg.dataset.patch_size = [64, 64, 64]\n"
    "cfg.dataset.target_spacing = 1.5\n"
    "cfg.dataset.normalization_params.min_value = -125\n"
    "cfg.dataset.normalization_params.max_value = 225\n"
    "cfg.dataset.img_dir = os.path.join('data', 'img')\n"
)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    """A params.pth like the released one (random weights of the paper network) and its config.py."""
    from ctsam3d.modeling.ctsam3d import build_model
    from ctsam3d.modeling.reference_import import config_from_reference

    root = tmp_path_factory.mktemp("release")
    torch.manual_seed(0)
    state = build_model(config_from_reference({})).state_dict()
    assert len(state) == 428
    torch.save({"model_state_dict": state}, root / "params.pth")
    del state
    (root / "config.py").write_text(CONFIG_PY)
    yield {"params": root / "params.pth", "config": root / "config.py"}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    yield tmp_path / "home"
    shutil.rmtree(tmp_path / "home", ignore_errors=True)


def _hub(release, **files) -> Hub:
    return Hub(files={"params.pth": Served(release["params"]), "config.py": Served(release["config"]), **files})


def _models_left(home: Path) -> list[str]:
    d = home / "models"
    return sorted(p.name for p in d.iterdir() if p.name != ".downloads") if d.is_dir() else []


def _download(url: str, *extra: str) -> int:
    return cli_main(["download", "--endpoint", url, "-q", *extra])


@pytest.mark.slow
def test_download_installs_verified_and_becomes_default(release, home, capsys):
    hub = _hub(release)
    with FakeModelScope(hub) as url:
        assert _download(url) == 0
    assert "installed ct-sam3d-released" in capsys.readouterr().out
    target = home / "models" / registry.RELEASED_NAME
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "source.json"]
    assert _models_left(home) == [registry.RELEASED_NAME]  # no install folder left over
    assert not (home / "models" / ".downloads" / registry.RELEASED_NAME).exists()  # downloads removed
    sha = sha256_of(release["params"])
    source = json.loads((target / "source.json").read_text())
    assert source["files"]["params.pth"] == {"size": release["params"].stat().st_size, "sha256": sha}
    assert source["model_id"] == "xiuan123/CT-SAM3D" and source["licence"] == "Apache-2.0"
    record = json.loads(record_path().read_text())
    assert record["files"]["params.pth"]["sha256"] == sha
    assert json.loads((target / "config.json").read_text())["reference_exact"] is True
    # now the default of load_model(), named
    entry = registry.default_model()
    assert entry.name == registry.RELEASED_NAME and entry.preset == "ctsam3d-paper"
    import ctsam3d

    model = ctsam3d.load_model()
    assert model.model_name == registry.RELEASED_NAME and model.config.preset == "ctsam3d-paper"
    # a second run does nothing
    with FakeModelScope(hub) as url:
        n = len(hub.requests)
        assert _download(url) == 0
    assert "already installed" in capsys.readouterr().out and len(hub.requests) == n


@pytest.mark.slow
def test_interrupted_transfer_resumes_with_a_range_request(release, home, capsys):
    cut = 40 << 20
    hub = _hub(release)
    hub.cut["params.pth"] = cut
    with FakeModelScope(hub) as url:
        assert _download(url, "--retries", "0") == 2
        err = capsys.readouterr().err
        assert "interrupted after 41,943,040 of" in err and "run the same command again to resume" in err
        part = home / "models" / ".downloads" / registry.RELEASED_NAME / "params.pth.part"
        assert part.stat().st_size == cut
        assert _models_left(home) == []  # nothing installed
        assert _download(url, "--retries", "0") == 0
    params_requests = [r for p, r in hub.requests if p == "params.pth"]
    assert params_requests == [None, f"bytes={cut}-"]
    source = json.loads((home / "models" / registry.RELEASED_NAME / "source.json").read_text())
    assert source["files"]["params.pth"]["sha256"] == sha256_of(release["params"])


def test_interruption_retried_within_one_run(release, home, tmp_path):
    """The transfer layer alone: a cut connection is resumed in the same run (``retries``)."""
    from ctsam3d.hub.transfer import fetch

    hub = _hub(release)
    hub.cut["config.py"] = 10
    with FakeModelScope(hub) as url:
        from ctsam3d.hub.modelscope import file_url

        dest = tmp_path / "config.py.part"
        n = fetch(file_url(url, hub.model_id, "config.py"), dest, size=len(CONFIG_PY), progress=False, backoff_s=0)
    assert n == len(CONFIG_PY) and dest.read_text() == CONFIG_PY
    assert [r for p, r in hub.requests if p == "config.py"] == [None, "bytes=10-"]


def _truncated(release, tmp_path) -> Path:
    out = tmp_path / "truncated.pth"
    with open(release["params"], "rb") as f:
        out.write_bytes(f.read(5 << 20))
    return out


def _corrupt(release, tmp_path) -> Path:
    out = tmp_path / "corrupt.pth"
    shutil.copyfile(release["params"], out)
    with open(out, "r+b") as f:
        f.seek(100 << 20)
        b = f.read(1)
        f.seek(100 << 20)
        f.write(bytes([b[0] ^ 0xFF]))
    return out


@pytest.mark.parametrize(
    "make, listed, message",
    [
        ("truncated", "real", "sends 5,242,880 bytes but the listing says"),
        ("corrupt", "real", "differs from ModelScope's listing"),
        ("garbage", "none", "not a usable CT-SAM3D checkpoint"),
    ],
)
def test_truncated_or_corrupt_file_refused_and_nothing_left(release, home, tmp_path, capsys, make, listed, message):
    if make == "garbage":  # a file nobody can check by hash: the converter refuses it
        body = tmp_path / "garbage.pth"
        body.write_bytes(b"\x80\x02not a checkpoint" * 100)
    else:
        body = _truncated(release, tmp_path) if make == "truncated" else _corrupt(release, tmp_path)
    real = release["params"]
    served = Served(body, size=real.stat().st_size if listed == "real" else None,
                    sha256=sha256_of(real) if listed == "real" else "")
    hub = _hub(release, **{"params.pth": served})
    with FakeModelScope(hub) as url:
        assert _download(url) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert _models_left(home) == []
    assert not list((home / "models" / ".downloads").glob("**/params.pth*"))  # refused bytes not kept
    assert not record_path().exists()


@pytest.mark.slow
def test_from_file_offline_and_record_enforced(release, home, tmp_path, capsys):
    # offline: the endpoint is a closed port; --from needs no network
    assert cli_main(["download", "--from", str(release["params"]), "--endpoint", "http://127.0.0.1:9", "-q"]) == 0
    target = home / "models" / registry.RELEASED_NAME
    assert (target / "model.safetensors").is_file()
    capsys.readouterr()
    # a different file later is refused against the record, and the installed model stays
    before = (target / "model.safetensors").stat().st_mtime_ns
    bad = _truncated(release, tmp_path)
    assert cli_main(["download", "--from", str(bad), "--force", "-q"]) == 2
    err = capsys.readouterr().err
    assert "record of the first download" in err and "truncated" in err
    assert (target / "model.safetensors").stat().st_mtime_ns == before
    assert _models_left(home) == [registry.RELEASED_NAME]


@pytest.mark.parametrize(
    "status, message",
    [(404, "not found on http://127.0.0.1"), (403, "refused the request (HTTP 403"), (503, "HTTP 503")],
)
def test_hub_errors_are_one_line(home, capsys, status, message):
    with FakeModelScope(Hub(status=status)) as url:
        assert _download(url) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert _models_left(home) == []


def test_offline_is_one_line(home, capsys):
    assert _download("http://127.0.0.1:9") == 2
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9" in err and "--from FILE" in err and err.count("\n") == 1


def test_listing_without_params(home, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("hi")
    with FakeModelScope(Hub(files={"README.md": Served(readme)})) as url:
        assert _download(url) == 2
    assert "no params.pth in the repository (it has: README.md)" in capsys.readouterr().err


def test_nothing_downloads_by_itself(home, monkeypatch):
    """load_model(), the registry and `ctsam3d models` never open a connection."""
    import urllib.request

    def refuse(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    import ctsam3d

    assert cli_main(["models", "-q"]) == 0
    assert ctsam3d.load_model().model_name == registry.default_model().name


def test_not_enough_disk_refused_before_downloading(release, home, capsys, monkeypatch):
    import collections

    from ctsam3d.hub import install

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda p: usage(1 << 40, 0, 100 << 20))
    hub = _hub(release)
    with FakeModelScope(hub) as url:
        assert _download(url) == 2
    err = capsys.readouterr().err
    assert "GiB free" in err and "$CTSAM3D_HOME" in err and err.count("\n") == 1
    assert [p for p, _ in hub.requests] == ["listing"]  # no file transfer started
    assert _models_left(home) == []
