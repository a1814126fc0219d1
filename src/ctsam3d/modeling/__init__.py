"""ctsam3d.modeling: pure ``nn.Module``s, presets, checkpoints, released-weights import.

Public API::

    from ctsam3d.modeling import ModelConfig, PRESETS, build_model, save_model, load_model
    model = load_model("ctsam3d-lite")            # untrained; or a directory / params.pth
    feats = model.encode(image)                   # (B,1,D,H,W) in [0,1] -> 4 features
    prompt = model.render_prompt([[(z, y, x)]], [[]], prev_mask=None)   # (B,3,D,H,W)
    logits, quality = model.decode(feats, prompt) # (B,1,D,H,W) logits, (B,1) predicted Dice
    heat = model.cpp(image_u, mask_u, image_v)    # (B,1,D,H,W)
    clicks = heatmap_peaks(heat[0, 0], threshold=0.5, max_peaks=3)
"""

from .checkpoint import bundled_models, load_model, save_model
from .config import ModelConfig
from .cpp_net import heatmap_peaks
from .ctsam3d import CTSAM3D, build_model
from .presets import PRESETS, get_preset

__all__ = [
    "CTSAM3D",
    "ModelConfig",
    "PRESETS",
    "build_model",
    "bundled_models",
    "get_preset",
    "heatmap_peaks",
    "load_model",
    "save_model",
]
