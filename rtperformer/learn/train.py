"""Trainer: single process, or DDP under ``torchrun --nproc_per_node N`` (gloo on CPU, nccl on CUDA).

One run writes into ``out_dir`` (e.g. models/violin/):

- ``model.safetensors``, ``config.yaml``, ``meta.json``: the checkpoint with the best validation loss
  (written by the model package's ``save_checkpoint``; meta has step, metrics, data, wall time).
- ``resume/``: the latest state: ``state.safetensors`` (fp32 weights and Adam moments as tensors, param
  groups and trainer counters as JSON metadata; no pickle), ``config.yaml``, ``meta.json``. Replaced
  atomically at each validation. Not needed to use the model: leave it out when shipping models/NAME.
- ``train_log.jsonl``: one JSON line per validation (step, train loss, valid metrics, wall seconds).

Targets: the model's offline output frame t is aligned with input frame t for every form (the streaming
form's lookahead is inside ``model(x)``), so the loss compares ``model(x)`` (B, n_bins, T) with
``y`` (B, n_bins, T) directly.

Data (:mod:`rtperformer.learn.train_data`): windows ``(x (C_in, T), y (n_bins, T))`` from
``rtperformer.learn.data.dataset.WindowDataset`` (train), and a fixed list of validation windows cut from
``piece_arrays`` (valid split), so every validation of every run sees the same frames. The resume state
is :mod:`rtperformer.learn.train_state`. Each rank draws its own random windows (seed + 1000 * rank); gradients
are averaged by DDP, so all ranks hold the same parameters; only rank 0 writes files.

Every validation reports loss-independent numbers (``mse``, ``l1`` on features, ``sc`` on magnitudes)
next to the configured loss, so runs with different losses can be compared on the same budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from rtperformer.config import Config
from rtperformer.errors import UserError
from rtperformer.learn.losses import LOSSES, feature_metrics, make_loss
from rtperformer.learn.train_data import Window, as_tensor, batches, default_data
from rtperformer.learn.train_state import RESUME_DIR, STATE_FILE, read_resume, save_resume

LOG_FILE = "train_log.jsonl"


@dataclass
class TrainResult:
    """What a run ended with (every rank returns one; only rank 0 wrote files)."""

    out_dir: Path
    step: int
    best_step: int
    best_valid: float
    last_valid: dict[str, float]
    wall_seconds: float
    stopped_by: str  # "steps" | "minutes"
    model: torch.nn.Module | None = None  # the trained module (last step, unwrapped from DDP)


# ----------------------------------------------------------------------------------------------------
# distributed helpers


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment; (0, 1, 0) when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _init_distributed(device: torch.device) -> tuple[int, int]:
    rank, world, _ = dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world


def _all_sum(values: Sequence[float], world: int) -> list[float]:
    """Sum a few floats over ranks (identity when single process)."""
    if world == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _any_rank(flag: bool, world: int) -> bool:
    """True when ``flag`` is true on any rank: keeps every rank's stop decision the same."""
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# ----------------------------------------------------------------------------------------------------
# data


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def validate(model: torch.nn.Module, windows: Sequence[Window], loss_fn: Callable, power_scale: float,
             device: torch.device, rank: int = 0, world: int = 1, batch_size: int = 8) -> dict[str, float]:
    """Frame-weighted mean of the loss and of ``mse``/``l1``/``sc`` over ``windows``; rank r takes
    windows r, r+world, ... and the sums are all-reduced, so every rank returns the same numbers."""
    was_training = model.training
    model.eval()
    mine = list(windows[rank::world])
    sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # loss*n, mse*n, l1*n, sc*n, n (frames)
    i = 0
    while i < len(mine):
        T = mine[i][0].shape[-1]
        group = [w for w in mine[i : i + batch_size] if w[0].shape[-1] == T]
        i += len(group)
        x = torch.stack([as_tensor(w[0]) for w in group]).to(device)
        y = torch.stack([as_tensor(w[1]) for w in group]).to(device)
        pred = model(x)
        loss, _ = loss_fn(pred, y, x)
        m = feature_metrics(pred, y, power_scale)
        n = float(len(group) * T)
        for j, v in enumerate((float(loss), m["mse"], m["l1"], m["sc"])):
            sums[j] += v * n
        sums[4] += n
    total = _all_sum(sums, world)
    model.train(was_training)
    n = max(total[4], 1.0)
    return {"loss": total[0] / n, "mse": total[1] / n, "l1": total[2] / n, "sc": total[3] / n}


# ----------------------------------------------------------------------------------------------------
# the loop


def _model_api() -> tuple[Callable, Callable]:
    """(build_model, save_checkpoint) from the model package (imported here: torch loads with the run)."""
    from rtperformer.model import build_model
    from rtperformer.model.checkpoint import save_checkpoint

    return build_model, save_checkpoint


def _default_build(cfg: Config) -> torch.nn.Module:
    return _model_api()[0](cfg)


def _default_save(dirpath: Path, model: torch.nn.Module, cfg: Config, meta: dict[str, Any]) -> None:
    _model_api()[1](dirpath, model, cfg, meta)


def effective_config(cfg: Config, steps: int | None = None, loss: str | None = None, seed: int | None = None,
                     valid_every: int | None = None, batch_size: int | None = None, lookahead: int | None = None,
                     threads: int | None = None, learning_rate: float | None = None) -> Config:
    """``cfg`` with command-line overrides applied (what meta.json records): the train section, and
    ``lookahead`` -> model.lookahead_frames (streaming form; it adds no parameters)."""
    if lookahead is not None:
        if lookahead < 0 or cfg.model.form != "streaming":
            raise UserError(f"--lookahead needs a streaming model and a value >= 0, got {lookahead} for a "
                            f"{cfg.model.form} model")
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, lookahead_frames=lookahead))
    if threads is not None and threads < 0:
        raise UserError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if learning_rate is not None and not learning_rate > 0:
        raise UserError(f"--lr must be > 0, got {learning_rate}")
    given = {"num_threads": threads, "valid_every": valid_every, "batch_size": batch_size, "steps": steps,
             "loss": loss, "seed": seed, "learning_rate": learning_rate}
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    out = cfg.replace(train=dataclasses.replace(cfg.train, **changes)) if changes else cfg
    if out.train.loss not in LOSSES:
        raise UserError(f"train.loss must be one of {', '.join(LOSSES)}, got {out.train.loss!r}")
    if out.train.valid_every < 1 or out.train.batch_size < 1 or out.train.clip_frames < 1:
        raise UserError("train.valid_every, train.batch_size and train.clip_frames must be >= 1")
    return out


def pick_device(name: str | None = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1'), or CUDA when available else CPU; under torchrun on CUDA each
    rank takes ``cuda:LOCAL_RANK``."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", dist_env()[2])
    return torch.device("cpu")


def set_learning_rate(opt, tc, step: int, t0: float, deadline: float | None) -> float:
    """Cosine decay from ``tc.learning_rate`` to ``tc.final_lr_fraction`` of it over the run.

    Progress is the larger of steps done and wall time spent (with ``--minutes``), so a run cut by its
    time budget still ends at the low learning rate.
    """
    progress = step / max(tc.steps, 1)
    if deadline is not None:
        progress = max(progress, (time.monotonic() - t0) / max(deadline - t0, 1e-9))
    progress = min(progress, 1.0)
    lr = tc.learning_rate * (tc.final_lr_fraction + (1 - tc.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def train(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    minutes: float | None = None,
    device: str | None = None,
    data: tuple[Any, Sequence[Window], dict[str, Any]] | None = None,
    build: Callable[[Config], torch.nn.Module] = _default_build,
    save: Callable[..., None] = _default_save,
    progress: bool = True,
) -> TrainResult:
    """Train ``build(cfg)`` for ``cfg.train.steps`` steps (or until ``minutes`` of wall time) on
    ``data`` = (train dataset, valid windows, description) (default: the corpus of ``cfg.data``).

    Validates every ``cfg.train.valid_every`` steps and at the end; keeps the best-valid checkpoint in
    ``out_dir`` and the latest state in ``out_dir/resume``. Under torchrun every rank calls this.
    ``init_from`` (a model name or directory) starts from its weights with a fresh optimizer and schedule,
    e.g. to fine-tune a shipped model to another lookahead or loss; its topology must fit ``cfg``.
    """
    tc = cfg.train
    out_dir = Path(out_dir)
    dev = pick_device(device)
    if dev.type == "cuda" and dist_env()[1] > 1:
        torch.cuda.set_device(dev)
    rank, world = _init_distributed(dev)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    elif world > 1 and dev.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    seed_everything(tc.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)

    # checked on every rank before any work, so all ranks raise together
    if resume and not (out_dir / RESUME_DIR / STATE_FILE).is_file():
        raise UserError(f"--resume: no resume state in {out_dir / RESUME_DIR} (start without --resume)")
    if not resume and (out_dir / RESUME_DIR).exists():
        raise UserError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    if data is None and not Path(cfg.data.corpus_dir, cfg.data.instrument).is_dir():
        raise UserError(f"no corpus at {Path(cfg.data.corpus_dir, cfg.data.instrument)}; build it with "
                        f"`rtperformer data build --instrument {cfg.data.instrument}`")
    if build is _default_build or save is _default_save:
        _model_api()
    train_ds, valid, desc = data if data is not None else default_data(cfg)
    model = build(cfg)
    if init_from is not None and not resume:
        from rtperformer.model.checkpoint import load_model, transplant

        transplant(load_model(init_from)[0].state_dict(), model, f"--init-from {init_from}")
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=tc.learning_rate)
    loss_fn = make_loss(tc.loss, cfg.audio.power_scale, tc.sc_weight, tc.flux_weight, tc.onset_weight, tc.onset_frames)
    n_params = sum(p.numel() for p in model.parameters())

    counters: dict[str, Any] = {"step": 0, "best_valid": math.inf, "best_step": 0, "wall_seconds": 0.0}
    if resume:
        counters.update(read_resume(out_dir, model, opt))
        if counters["step"] >= tc.steps:
            raise UserError(f"--resume: the run in {out_dir} is already at step {counters['step']} >= "
                            f"{tc.steps}; pass a larger --steps")
    _barrier(world)
    start_step = int(counters["step"])
    seed_everything(tc.seed + 1000 * rank + start_step)  # per-rank data stream
    stream = batches(train_ds, tc.batch_size, tc.seed + 1000 * rank + start_step)

    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    model.train()

    wall0 = float(counters["wall_seconds"])
    t0 = time.monotonic()
    deadline = t0 + minutes * 60.0 if minutes else None
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=tc.steps, initial=start_step, desc=f"train {cfg.name} ({tc.loss})", dynamic_ncols=True)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)

    step = start_step
    ema = None
    last_valid: dict[str, float] = {}
    stopped_by = "steps"
    while step < tc.steps:
        x, y = next(stream)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        pred = net(x)
        loss, _parts = loss_fn(pred, y, x)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {float(loss)} at step {step + 1}; lower train.learning_rate or set train.grad_clip")
        set_learning_rate(opt, tc, step, t0, deadline)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        step += 1
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        out_of_time = _any_rank(deadline is not None and time.monotonic() >= deadline, world)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", **({"valid": f"{last_valid['loss']:.4f}"} if last_valid else {}))
        if step % tc.valid_every == 0 or step >= tc.steps or out_of_time:
            last_valid = validate(model, valid, loss_fn, cfg.audio.power_scale, dev, rank, world)
            wall = wall0 + time.monotonic() - t0
            improved = last_valid["loss"] < counters["best_valid"]
            if improved:
                counters["best_valid"], counters["best_step"] = last_valid["loss"], step
            counters.update(step=step, wall_seconds=wall)
            meta = {
                "step": step,
                "best_step": counters["best_step"],
                "loss": tc.loss,
                "metrics": {"train_loss_ema": ema, "valid": last_valid, "best_valid_loss": counters["best_valid"]},
                "data": desc,
                **({"init_from": str(init_from)} if init_from is not None else {}),
                "wall_seconds": round(wall, 1),
                "world_size": world,
                "global_batch": tc.batch_size * world,
                "param_count": n_params,
                "device": str(dev.type),
                "torch": torch.__version__,
                "config": cfg.to_dict(),
            }
            if rank == 0:
                if improved:
                    save(out_dir, model, cfg, meta)
                save_resume(out_dir, model, cfg, meta, opt, counters)
                with open(out_dir / LOG_FILE, "a") as f:
                    f.write(json.dumps({"step": step, "wall_seconds": round(wall, 1), "train_loss_ema": ema,
                                        "valid": last_valid, "best": improved}) + "\n")
                line = (f"step {step}: train {ema:.4f} valid {last_valid['loss']:.4f} (mse {last_valid['mse']:.4f} "
                        f"l1 {last_valid['l1']:.4f} sc {last_valid['sc']:.4f}){' best' if improved else ''} "
                        f"{wall:.0f} s")
                if bar is not None:
                    bar.set_postfix(loss=f"{ema:.4f}", valid=f"{last_valid['loss']:.4f}")
                    bar.write(line)
                else:
                    print(line, flush=True)
            _barrier(world)
        if out_of_time:
            stopped_by = "minutes"
            break
    if bar is not None:
        bar.close()
    _barrier(world)
    return TrainResult(out_dir, step, int(counters["best_step"]), float(counters["best_valid"]), last_valid,
                       float(counters["wall_seconds"]), stopped_by, model)


def finish_distributed() -> None:
    """Tear down the process group a torchrun run opened (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
