"""Training checkpoints: atomic writes and exact resumption.

A checkpoint (``<output_dir>/checkpoint.pt``, a ``torch.save`` dict) holds the step, the
network (unwrapped) and optimiser and scheduler states, every RNG state (Python, NumPy,
torch CPU and CUDA), the model config and the training config. It is written to a temp
file in the same folder and moved into place with ``os.replace``, so a run killed while
writing leaves the previous checkpoint intact.

Batches and click draws are seeded by ``(seed, rank, step)`` (see :mod:`.loop`), so the
step number alone fixes the data stream: a resumed run sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict:
    """Python, NumPy, torch and (when present) CUDA RNG states."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    # RNG states must be CPU ByteTensors; a checkpoint loaded with map_location=cuda has moved them.
    torch.set_rng_state(st["torch"].cpu())
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])
        except (RuntimeError, IndexError):  # different GPU count on resume: keep fresh states
            pass


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Atomically write ``state`` to ``path`` (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, truncated or not a training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a ctsam3d training checkpoint")
    return state
