"""ctsam3d.training: losses, click simulation for training, the training loop, DDP.

Public API::

    cfg = load_config("configs/smoke-cpu.yaml")   # TrainConfig (typed dataclasses)
    result = train(cfg)                           # or: torchrun ... -m ctsam3d.train --config FILE

Never imports SimpleITK (the GPU machines that run training may not have it).
"""

from .config import TrainConfig, load_config
from .loop import train

__all__ = ["TrainConfig", "load_config", "train"]
