"""The CPP net's own residual U-Net equals MONAI's ``UNet`` (names, shapes, outputs), so
released weights and checkpoints saved with the MONAI network load unchanged."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.modeling.residual_unet import ResidualUNet

CASES = [  # (in, channels, strides, num_res_units, patch)
    (3, (8, 16, 32, 64), (2, 2, 2), 1, 16),  # starter / lite preset
    (3, (16, 32, 64, 128, 256), (2, 2, 2, 2), 2, 32),  # paper preset
    (5, (4, 8), (2,), 0, 8),  # no residual units
    (3, (4, 8, 8), (2, 1), 3, 8),  # stride 1 level, three subunits
]


@pytest.mark.parametrize("cin, channels, strides, nres, n", CASES)
def test_same_network_as_monai_unet(cin, channels, strides, nres, n):
    nets = pytest.importorskip("monai.networks.nets", reason="MONAI not installed (reference network)")
    from monai.networks.layers.factories import Norm

    torch.manual_seed(0)
    ref = nets.UNet(spatial_dims=3, in_channels=cin, out_channels=1, channels=channels, strides=strides,
                    num_res_units=nres, norm=Norm.INSTANCE).eval()
    with torch.no_grad():  # PReLU slopes differ from their 0.25 default, so a mix-up would show
        for name, p in ref.named_parameters():
            if name.endswith("A.weight"):
                p.uniform_(0.05, 0.5)
    ours = ResidualUNet(cin, 1, channels, strides, nres).eval()
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == want
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, cin, n, n, n)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="strides"):
        ResidualUNet(3, 1, (8, 16, 32), (2,), 1)
