"""The training loop: ``train(TrainConfig)``, single process or DDP under torchrun.

Per step: fetch the step's batch (DataLoader workers, or resampled on the device), run
:class:`~ctsam3d.training.step.InteractiveStep` under bf16 autocast on CUDA, back-propagate,
clip gradients, AdamW step, LR schedule step. The main rank logs to CSV/TensorBoard, shows
a tqdm bar (loss, ETA), validates every ``val.every`` steps, writes an atomic checkpoint
every ``checkpoint_every`` steps and exports the model (``save_model``: safetensors + JSON
config with a training-data summary) to ``<output_dir>/model`` at the end — also when the
``max_minutes`` budget stops the run early.

Output folder: ``checkpoint.pt``, ``train.csv``, ``val.csv``, ``tensorboard/``,
``config.json`` (the resolved TrainConfig), ``model/`` (exported network).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from ..data.batches import StepBatches, expand_batch, step_rng
from ..data.cache import load_cache
from ..data.sampler import PatchSampler
from ..errors import InputError
from . import distributed as D
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, config_to_dict
from .metrics import MetricsLog
from .schedule import lr_factor
from .step import InteractiveStep
from .cpp_validation import CppValidationSet
from .validate import ValidationSet

__all__ = ["train", "build_model_config"]

log = logging.getLogger(__name__)

# fit_to_budget: skip the first steps (start-up, cudnn autotune), time the next ones, and
# leave a margin for validation and checkpoints
CALIB_SKIP, CALIB_STEPS, BUDGET_SAFETY = 5, 20, 0.9
MAX_BAD_STEPS = 20

LOSS_KEYS = ("total", "mask", "focal", "dice", "cpp", "quality", "train_dice")


def _merge(base: dict, over: dict, where: str = "model_overrides") -> dict:
    out = dict(base)
    for k, v in over.items():
        if k not in out:
            raise InputError(f"config: {where}.{k} is not a ModelConfig key")
        out[k] = _merge(out[k], v, f"{where}.{k}") if isinstance(v, dict) and isinstance(out[k], dict) else v
    return out


def build_model_config(cfg: TrainConfig):
    """The preset's ModelConfig with ``cfg.model_overrides`` merged in (validated)."""
    from ..modeling.config import ModelConfig
    from ..modeling.presets import get_preset

    base = get_preset(cfg.preset)
    if not cfg.model_overrides:
        return base
    mc = ModelConfig.from_dict(_merge(base.to_dict(), cfg.model_overrides), source="model_overrides")
    mc.validate()
    return mc


def _load_init_weights(model, path: str):
    """Copy a saved model's weights into ``model`` (input layers widened when it has more HU
    windows); returns the source's ModelConfig."""
    from .. import modeling

    loader = getattr(modeling, "load_model", None)
    if loader is None:
        raise InputError("init_weights: ctsam3d.modeling.load_model is not available")
    src = loader(path, device="cpu")
    c_src, c_dst = getattr(src.config, "in_channels", 1), getattr(model.config, "in_channels", 1)
    if c_src != c_dst:
        # e.g. ctsam3d-lite-wb (2 HU windows) from ctsam3d-lite weights: widen the input layers
        from .init_weights import adapt_state

        if tuple(src.config.windows()) != tuple(model.config.windows())[:c_src]:
            raise InputError(f"init_weights {path}: its HU windows {src.config.windows()} are not the first "
                             f"of this model's {model.config.windows()}")
        state, widened = adapt_state(src.state_dict(), model, c_src, c_dst, "zero")
        model.load_state_dict(state, strict=True)
        log.info("init_weights %s: %d image channel(s) -> %d, new channels zero in %s", path, c_src, c_dst, widened)
        return src.config
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if missing or unexpected:
        raise InputError(f"init_weights {path}: network differs (missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    return src.config


def _cache_summary(cache_dir: str) -> dict:
    p = Path(cache_dir) / "cache.json"
    if not p.is_file():
        return {"cache": str(cache_dir)}
    s = json.loads(p.read_text(encoding="utf-8"))
    return {"cache": str(cache_dir), "cases": len(s.get("cases", [])), "structure_cases": s.get("structure_cases", {})}


def _export(model, mcfg, cfg: TrainConfig, out_dir: Path, step: int, val: dict | None, sampler: PatchSampler,
            init_cpp_threshold: float | None = None) -> Path | None:
    from .. import modeling

    saver = getattr(modeling, "save_model", None)
    # named anatomy only: generic pseudo-structures (ctsam3d.data.pseudo) carry no names
    mcfg.structures = [n for n in sampler.names if not n.startswith("pseudo_")]
    thr = (val or {}).get("cpp_threshold")
    if thr is not None and math.isfinite(thr):
        mcfg.cpp.peak_threshold = float(thr)  # calibrated on the validation pairs
    elif val and "cpp_hit" in val:
        mcfg.cpp.peak_threshold = None  # sessions continue masks through the patch overlap instead
        log.warning("CPP net: no useful peak threshold on the validation pairs (top peak on the "
                    "structure for %.0f %%): exported without one", 100 * val["cpp_hit"])
    elif not cfg.sampler.cpp:
        # the CPP net was not trained (nor validated) in this run: keep the initial model's
        # calibration (None when there is none), never the preset's uncalibrated default
        mcfg.cpp.peak_threshold = init_cpp_threshold
    mcfg.training = {
        "steps": step,
        "preset": cfg.preset,
        "train_data": _cache_summary(cfg.data.train_cache)
        if isinstance(cfg.data.train_cache, str)
        else [_cache_summary(c) for c in cfg.data.train_cache],
        "val_data": _cache_summary(cfg.data.val_cache) if cfg.data.val_cache else None,
        "validation": {k: v for k, v in (val or {}).items() if "/" not in k},
        "recipe": {k: v for k, v in config_to_dict(cfg).items() if k not in ("output_dir",)},
    }
    model.config = mcfg
    target = out_dir / "model"
    if saver is None:
        log.warning("ctsam3d.modeling.save_model is not available: model not exported (checkpoint kept)")
        return None
    saver(model, target)
    return target


def _load_train_cases(cfg: TrainConfig) -> tuple[list, list[int] | None]:
    """Cases of the training cache(s) and, for several caches, the cache index of each case."""
    caches = cfg.data.train_caches()
    if len(caches) == 1:
        return load_cache(caches[0], case_ids=cfg.data.train_cases), None
    cases, groups = [], []
    for g, c in enumerate(caches):
        got = load_cache(c)
        if cfg.data.train_cases is not None:
            got = [k for k in got if k.case_id in set(cfg.data.train_cases)]
        cases += got
        groups += [g] * len(got)
    if cfg.data.train_cases is not None:
        missing = sorted(set(cfg.data.train_cases) - {k.case_id for k in cases})
        if missing:
            raise InputError(f"config: data.train_cases {missing[:5]} are in none of the training caches")
    return cases, groups


def _shm_ok(cfg: TrainConfig, patch_size) -> bool:
    """Whether /dev/shm can hold the batches DataLoader workers keep in flight."""
    import shutil

    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return True  # not Linux-like: torch uses another mechanism
    voxels = int(np.prod(patch_size)) * cfg.batch_size
    per_batch = voxels * (4 + 1 + (4 if cfg.sampler.cpp else 0))
    return free > 2 * per_batch * cfg.workers * max(1, cfg.prefetch)


def train(cfg: TrainConfig, *, on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Run (or resume) a training run.

    Args:
        cfg: the run's configuration.
        on_step: optional callback ``(step, losses)`` after every optimiser step (1-based
            step; losses as floats), on every rank — used by tests to interrupt a run.

    Returns:
        ``{"step", "losses": [per-step total loss of this process], "val", "model_dir",
        "stopped_early", "model"}`` (``model``: the trained network, unwrapped).
    """
    cfg.check()
    info = D.setup(cfg.device)
    try:
        return _train(cfg, info, on_step)
    finally:
        D.cleanup(info)


def _train(cfg: TrainConfig, info: D.DistInfo, on_step) -> dict:
    from ..modeling.ctsam3d import build_model

    t_start = time.time()
    out_dir = Path(cfg.output_dir)
    dev = info.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its kernels
    use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and dev.type == "cuda")
    backend = cfg.clicks.backend if cfg.clicks.backend != "auto" else ("torch" if dev.type == "cuda" else "numpy")

    mcfg = build_model_config(cfg)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(mcfg).to(dev)
    init_cpp_threshold = None
    if cfg.init_weights:
        init_cpp_threshold = _load_init_weights(model, cfg.init_weights).cpp.peak_threshold
    if cfg.train_parts == "cpp":  # only the cross-patch prompt net learns
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith("cpp_predictor."))
    stepper = InteractiveStep(model, cfg.loss, cfg.train_parts).to(dev)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
    )
    # total[0]: the schedule's length; fit_to_budget may shorten it once, early in the run
    total = [cfg.total_steps]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total[0], cfg.optim))

    start = 0
    calibrated = False
    ckpt_path = out_dir / CHECKPOINT_NAME
    if cfg.resume and ckpt_path.is_file():
        st = load_checkpoint(ckpt_path, map_location=dev)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        set_rng_state(st["rng"])
        start = int(st["step"])
        total[0] = int(st.get("total_steps", cfg.total_steps))
        calibrated = bool(st.get("calibrated", False))
        if info.is_main:
            log.info("resumed %s at step %d", ckpt_path, start)
    net = DDP(stepper, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=cfg.find_unused_parameters or not cfg.sampler.cpp) if info.enabled else stepper

    # ---- data ------------------------------------------------------------------------
    cases, groups = _load_train_cases(cfg)
    sampling = cfg.sampling
    if sampling == "loader" and cfg.workers > 0 and not _shm_ok(cfg, mcfg.patch_size):
        sampling = "device" if dev.type == "cuda" else "inline"
        log.warning("/dev/shm is too small for %d workers x %d prefetched batches: sampling %s instead",
                    cfg.workers, cfg.prefetch, "on the GPU" if sampling == "device" else "in the training process")
    sampling_dev = dev if sampling == "device" else torch.device("cpu")
    sampler = PatchSampler(cases, mcfg.patch_size, mcfg.spacing_mm, mcfg.windows(), cfg.augment, cfg.sampler, sampling_dev,
                           groups=groups, group_weights=cfg.data.train_weights)
    ds = StepBatches(sampler, cfg.batch_size, cfg.seed, info.rank, cfg.total_steps)
    if sampling != "loader" or cfg.workers == 0:
        batches = (ds[s] for s in range(start, cfg.total_steps))
    else:
        loader = DataLoader(
            ds,
            batch_size=None,
            sampler=range(start, cfg.total_steps),
            num_workers=cfg.workers,
            pin_memory=dev.type == "cuda",
            prefetch_factor=cfg.prefetch,
            persistent_workers=False,
        )
        batches = iter(loader)
    val_set = cpp_val = None
    if cfg.data.val_cache and info.is_main and cfg.val.every > 0:
        vcases = load_cache(cfg.data.val_cache, case_ids=cfg.data.val_cases)
        if cfg.train_parts == "all":
            val_set = ValidationSet(vcases, mcfg.patch_size, mcfg.spacing_mm, mcfg.windows(), cfg.val.patches, cfg.val.seed)
        if cfg.sampler.cpp:
            cpp_val = CppValidationSet(vcases, mcfg.patch_size, mcfg.spacing_mm, mcfg.windows(), cfg.val.patches, cfg.val.seed + 1,
                                       config=cfg.sampler)

    metrics = MetricsLog(out_dir, start, cfg.tensorboard) if info.is_main else None
    if info.is_main:
        (out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=1), encoding="utf-8")
    bar = None
    if info.is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total[0], initial=start, desc="train", unit="step", dynamic_ncols=True)

    def checkpoint(step: int) -> None:
        if info.is_main:
            save_checkpoint(
                ckpt_path,
                {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "total_steps": total[0],
                    "calibrated": calibrated,
                    "rng": rng_state(),
                    "model_config": mcfg.to_dict(),
                    "train_config": config_to_dict(cfg),
                },
            )
        D.barrier(info)

    def validate(step: int) -> dict | None:
        res = None
        if val_set is not None or cpp_val is not None:
            res, msg = {}, []
            if val_set is not None:
                res.update(val_set.evaluate(model, cfg.val.clicks, cfg.val.batch_size, dev, use_amp))
                msg += [f"dice@{k}={res[f'dice@{k}']:.3f}" for k in cfg.val.clicks]
            if cpp_val is not None and len(cpp_val):
                res.update(cpp_val.evaluate(model, cfg.val.batch_size, dev, use_amp))
                msg += [f"cpp_hit={res['cpp_hit']:.2f}", f"cpp_threshold={res['cpp_threshold']:.3g}"]
            metrics.write("val", step, res)
            (bar.write if bar else log.info)(f"step {step}: validation {' '.join(msg)}")
        D.barrier(info)
        return res

    net.train()
    losses_seen: list[float] = []
    acc: dict[str, float] = {}
    n_acc = 0
    wait_acc = time_acc = 0.0
    last_val = None
    stopped = False
    step = start
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    calib_from = calib_t0 = None
    bad_steps = 0
    while step < total[0]:
        t0 = time.perf_counter()
        batch = expand_batch(next(batches), dev, cfg.sampler.cpp_sigma)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_data = time.perf_counter() - t0
        rng = step_rng(cfg.seed, info.rank, step, 1)
        n_iters = int(rng.integers(1, cfg.clicks.iterations + 1)) if cfg.clicks.random_iterations else cfg.clicks.iterations
        out = net(batch, n_iters, rng, p_random_first=cfg.clicks.p_random_first, backend=backend, autocast=use_amp,
                  p_shape_first=cfg.clicks.p_shape_first, shape_rules=cfg.clicks.shape_rules)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
        lr = opt.param_groups[0]["lr"]
        if math.isfinite(gnorm):  # DDP: gradients are averaged, so every rank agrees
            opt.step()
            bad_steps = 0
        else:  # skip the update (e.g. a bf16 overflow); give up when it keeps happening
            opt.zero_grad(set_to_none=True)
            bad_steps += 1
            log.warning("step %d: non-finite gradient, update skipped", step + 1)
            if bad_steps >= MAX_BAD_STEPS:
                raise FloatingPointError(f"step {step + 1}: {bad_steps} non-finite steps in a row (diverged); lower optim.lr")
        sched.step()
        step += 1
        vals = {k: float(out[k].detach()) for k in LOSS_KEYS}
        vals["grad_norm"] = gnorm
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        wait_acc += t_data
        time_acc += dt
        losses_seen.append(vals["total"])
        for k, v in vals.items():
            acc[k] = acc.get(k, 0.0) + v
        n_acc += 1
        if on_step is not None:
            on_step(step, vals)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{vals['total']:.3f}", dice=f"{vals['train_dice']:.2f}", lr=f"{lr:.2e}", refresh=False)
        if metrics is not None and (step % cfg.log_every == 0 or step == total[0]):
            row = {k: v / n_acc for k, v in acc.items()}
            row.update(lr=lr, data_wait=wait_acc / max(time_acc, 1e-9), patches_per_s=n_acc * cfg.batch_size * info.world_size / max(time_acc, 1e-9))
            metrics.write("train", step, row)
            acc, n_acc, wait_acc, time_acc = {}, 0, 0.0, 0.0
        out_of_time = D.any_flag(time.time() - t_start > budget_s, info)
        if cfg.fit_to_budget and not calibrated and math.isfinite(budget_s):
            if calib_from is None and step - start >= CALIB_SKIP:
                calib_from, calib_t0 = step, time.time()
            elif calib_from is not None and step - calib_from >= CALIB_STEPS:
                rate = (step - calib_from) / (time.time() - calib_t0)
                left = budget_s - (time.time() - t_start)
                new_total = min(cfg.total_steps, step + int(rate * left * BUDGET_SAFETY))
                total[0] = int(D.min_int(new_total, info))
                calibrated = True
                if bar is not None:
                    bar.total = total[0]
                    bar.refresh()
                if info.is_main:
                    log.info("fit_to_budget: %.2f steps/s -> schedule of %d steps", rate, total[0])
        if cfg.val.every > 0 and (step % cfg.val.every == 0 or step == total[0] or out_of_time):
            last_val = validate(step) or last_val
        if step % cfg.checkpoint_every == 0 or step == total[0] or out_of_time:
            checkpoint(step)
        if out_of_time and step < total[0]:
            stopped = True
            if info.is_main:
                log.warning("time budget of %.1f min reached at step %d: stopping", cfg.max_minutes, step)
            break
    if bar is not None:
        bar.close()
    model_dir = None
    if info.is_main:
        model_dir = _export(model, mcfg, cfg, out_dir, step, last_val, sampler, init_cpp_threshold)
        metrics.close()
    D.barrier(info)
    return {
        "step": step,
        "losses": losses_seen,
        "val": last_val,
        "model_dir": model_dir,
        "stopped_early": stopped,
        "model": model,
    }
