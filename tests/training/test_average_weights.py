"""Weight averages of fine-tunes of one network ("model soups"): the values, the training record,
and every refusal (different networks, different CPP nets, bad weights, an existing folder)."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.errors import CheckpointError
from ctsam3d.modeling import load_model, save_model
from ctsam3d.training.average_weights import average_models, main

from train_helpers import random_wb_model


def _model(seed: int, cpp_from=None, **over):
    m = random_wb_model(seed, threshold=0.5, **over)
    if cpp_from is not None:  # one shared CPP net, as fine-tunes with a frozen CPP net have
        with torch.no_grad():
            own = m.state_dict()
            for k, v in cpp_from.state_dict().items():
                if k.startswith("cpp_predictor."):
                    own[k].copy_(v)
    return m


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("soup")
    a = _model(0)
    a.config.structures, a.config.training = ["liver"], {"steps": 7}
    b = _model(1, cpp_from=a)
    b.config.structures, b.config.training = ["spleen"], {"steps": 9}
    other_cpp = _model(2)
    other_net = _model(3, cpp_from=a, spacing_mm=1.5)
    for name, m in {"a": a, "b": b, "other_cpp": other_cpp, "other_net": other_net}.items():
        save_model(m, d / name)
    return d, a, b


@pytest.mark.parametrize("weights", [None, (0.25, 0.75)])
def test_average_is_the_weighted_mean_and_records_its_sources(folders, tmp_path, weights):
    d, a, b = folders
    out = average_models([d / "a", d / "b"], tmp_path / "avg", weights, note="test soup")
    m = load_model(out)
    wa, wb = weights or (0.5, 0.5)
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in m.state_dict().items():
        want = (wa * sa[k].double() + wb * sb[k].double()).to(sa[k].dtype)
        assert torch.allclose(v, want, atol=1e-6), k
        if k.startswith("cpp_predictor."):
            assert torch.equal(v.contiguous(), sa[k].contiguous()), k  # the shared CPP net is unchanged
    t = m.config.training
    assert t["history"] == "test soup"
    assert [s["weight"] for s in t["averaged_from"]] == [wa, wb]
    assert [s["training"]["steps"] for s in t["averaged_from"]] == [7, 9]
    assert m.config.structures == ["liver", "spleen"]
    assert m.config.cpp.peak_threshold == pytest.approx(0.5)


@pytest.mark.parametrize(
    "names, weights, message",
    [
        (["a"], None, "at least two models"),
        (["a", "b"], (1.0,), "1 weight(s) for 2 models"),
        (["a", "b"], (1.5, -0.5), "must be > 0"),
        (["a", "b"], (0.5, 0.6), "must sum to 1"),
        (["a", "other_net"], None, "not the same network"),
        (["a", "other_cpp"], None, "CPP net differs"),
    ],
)
def test_refusals_name_the_problem(folders, tmp_path, names, weights, message):
    d, _, _ = folders
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        average_models([d / n for n in names], tmp_path / "avg", weights)
    assert not (tmp_path / "avg").exists()  # no partial output


def test_cli_writes_once_and_never_overwrites(folders, tmp_path, capsys):
    d, _, _ = folders
    out = tmp_path / "avg"
    assert main([str(d / "a"), str(d / "b"), "-o", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    assert main([str(d / "a"), str(d / "b"), "-o", str(out)]) == 1
    assert "already holds a model" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before
    with pytest.raises(FileExistsError):
        average_models([d / "a", d / "b"], out)
