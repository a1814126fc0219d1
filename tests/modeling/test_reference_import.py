"""Released-checkpoint import: safe loading, config.py read without executing, strict mapping."""

from __future__ import annotations

import collections

import pytest
import torch

from ctsam3d.cli.main import main as cli_main
from ctsam3d.errors import CheckpointError
from ctsam3d.modeling.checkpoint import load_state_strict
from ctsam3d.modeling.ctsam3d import build_model
from ctsam3d.modeling.reference_import import (
    config_from_reference,
    load_reference_state,
    map_reference_state,
    read_reference_config,
)


class NotATensor:  # pickled by reference: needs code to unpickle
    pass


def test_config_py_read_without_executing(tmp_path):
    marker = tmp_path / "executed"
    cfg = tmp_path / "config.py"
    cfg.write_text(
        "import os\n"
        f"open({str(marker)!r}, 'w').write('x')\n"
        "cfg = {}\n"
        "cfg.dataset = {}\n"
        "cfg.dataset.patch_size = [64, 64, 64]\n"
        "cfg.dataset.target_spacing = 2.0\n"
        "cfg.dataset.img_dir = os.path.join('a', 'b')\n"
        "cfg.dataset.normalization_params.min_value = -200\n"
        "cfg.dataset.normalization_params.max_value = 300\n"
        "cfg.network = 'restv2_tiny'\n"
    )
    values = read_reference_config(cfg)
    assert not marker.exists()
    assert values["dataset.patch_size"] == [64, 64, 64] and "dataset.img_dir" not in values
    mc = config_from_reference(values)
    assert mc.hu_window == (-200.0, 300.0) and mc.spacing_mm == 2.0 and mc.reference_exact
    assert mc.preset == "ctsam3d-paper" and len(mc.structures) in (0, 107)


@pytest.mark.parametrize(
    "values, message",
    [({"network": "vit_b"}, "not supported"), ({"dataset.patch_size": [60, 64, 64]}, "divisible")],
)
def test_unsupported_reference_config(values, message):
    with pytest.raises(CheckpointError, match=message):
        config_from_reference(values)


def test_syntax_error_in_config(tmp_path):
    (tmp_path / "config.py").write_text("cfg.network = (\n")
    with pytest.raises(CheckpointError, match="not valid Python"):
        read_reference_config(tmp_path / "config.py")


def test_checkpoint_needing_code_is_refused(tmp_path):
    torch.save({"model_state_dict": {"a": torch.zeros(1)}, "extra": NotATensor()}, tmp_path / "params.pth")
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_reference_state(tmp_path / "params.pth")


@pytest.mark.parametrize(
    "obj, message",
    [({"epoch": 3}, "no 'model_state_dict'"), ({"model_state_dict": [1, 2]}, "not a dict")],
)
def test_checkpoint_layout_errors(tmp_path, obj, message):
    torch.save(obj, tmp_path / "params.pth")
    with pytest.raises(CheckpointError, match=message):
        load_reference_state(tmp_path / "params.pth")


def test_garbage_file(tmp_path):
    (tmp_path / "params.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="params.pth"):
        load_reference_state(tmp_path / "params.pth")


def test_ddp_prefix_stripped(tmp_path):
    sd = collections.OrderedDict([("module.x.weight", torch.ones(2))])
    torch.save({"model_state_dict": sd}, tmp_path / "p.pth")
    assert list(load_reference_state(tmp_path / "p.pth")) == ["x.weight"]


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return build_model(config_from_reference({}))


def test_mapping_is_one_to_one_with_prompt_permutation(paper):
    state = paper.state_dict()
    mapped = map_reference_state(state)
    assert list(mapped) == list(state)
    k = "mask_decoder.spade1.norm_0.mlp_shared.0.weight"
    # reference channel order (prev, pos, neg) -> ours (pos, neg, prev)
    assert torch.equal(mapped[k][:, 0], state[k][:, 1])
    assert torch.equal(mapped[k][:, 1], state[k][:, 2])
    assert torch.equal(mapped[k][:, 2], state[k][:, 0])
    n_perm = sum(not torch.equal(mapped[n], state[n]) for n in state)
    assert n_perm == 10  # 5 SPADE blocks x 2 norms


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("mask_decoder.spade3.conv_1.bias"), "missing .*spade3.conv_1.bias"),
        (lambda s: s.__setitem__("mask_decoder.reduce1.weight", torch.zeros(1)), "unexpected .*reduce1"),
        (
            lambda s: s.__setitem__("image_encoder.channel_mapper4.bias", torch.zeros(128)),
            "channel_mapper4.bias has shape",
        ),
    ],
)
def test_missing_extra_or_misshaped_key_is_named(paper, edit, message):
    state = dict(paper.state_dict())
    edit(state)
    with pytest.raises(CheckpointError, match=message):
        load_state_strict(paper, state, "params.pth")


def test_cli_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (tmp_path / "params.pth").write_bytes(b"x")
    rc = cli_main(["convert-checkpoint", "-i", str(tmp_path / "params.pth"), "-o", str(out)])
    assert rc != 0 and "--overwrite" in capsys.readouterr().err


def test_cli_missing_input(tmp_path, capsys):
    rc = cli_main(["convert-checkpoint", "-i", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "m")])
    assert rc != 0 and "nope.pth" in capsys.readouterr().err
