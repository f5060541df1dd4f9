"""``rtperformer train``: train a model from a config (single process, or under torchrun for DDP).

    rtperformer train --config configs/X.yaml [--out models/NAME] [--resume] [--steps N] [--minutes M]
                      [--loss mse|l1|l1_sc|l1_flux|l1_onset] [--lr LR] [--lookahead N] [--init-from MODEL] [--threads N]
    torchrun --standalone --nproc_per_node 2 -m rtperformer train --config ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtperformer import paths

HELP = "Train a model from a config."



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config (path, or a name under configs/)")
    p.add_argument("--out", default=None, help="model directory (default: models/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/resume (weights + optimizer)")
    p.add_argument("--steps", type=int, default=None, help="total steps (overrides train.steps)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops, validates and saves")
    p.add_argument("--loss", choices=("mse", "l1", "l1_sc", "l1_flux", "l1_onset"), default=None, help="overrides train.loss")
    p.add_argument("--lr", type=float, default=None, help="overrides train.learning_rate (e.g. lower to fine-tune)")
    p.add_argument("--lookahead", type=int, default=None, help="overrides model.lookahead_frames (streaming form)")
    p.add_argument("--init-from", default=None, metavar="MODEL",
                   help="start from this model's weights (fresh optimizer and schedule; same topology, or the "
                        "same plus note-position inputs, whose new weights start at zero)")
    p.add_argument("--threads", type=int, default=None, help="overrides train.num_threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--valid-every", type=int, default=None, help="overrides train.valid_every")
    p.add_argument("--batch-size", type=int, default=None, help="overrides train.batch_size (per process)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--synthetic", action="store_true", help="smoke test on a synthetic toy corpus (no data needed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rtperformer.config import load_config
    from rtperformer.errors import UserError
    from rtperformer.learn.train import dist_env, effective_config, finish_distributed, train
    from rtperformer.learn.train_data import SyntheticWindows

    if args.minutes is not None and args.minutes <= 0:
        raise UserError(f"--minutes must be > 0, got {args.minutes}")
    cfg = effective_config(load_config(args.config), steps=args.steps, loss=args.loss, seed=args.seed,
                           valid_every=args.valid_every, batch_size=args.batch_size, lookahead=args.lookahead,
                           threads=args.threads, learning_rate=args.lr)
    out = Path(args.out) if args.out else paths.writable_models_dir() / cfg.name
    data = None
    if args.synthetic:
        rank = dist_env()[0]
        ds = SyntheticWindows(cfg, seed=cfg.train.seed + 1000 * rank)
        data = (ds, ds.valid(max(8, min(cfg.train.valid_windows, 64))), {"synthetic": True})
    try:
        res = train(cfg, out, resume=args.resume, init_from=args.init_from, minutes=args.minutes,
                    device=args.device, data=data, progress=not args.no_progress)
    finally:
        finish_distributed()
    if dist_env()[0] == 0:
        v = res.last_valid
        print(f"{out}: step {res.step} (stopped by {res.stopped_by}), best valid {res.best_valid:.4f} at step "
              f"{res.best_step}; last valid mse {v.get('mse', float('nan')):.4f} l1 {v.get('l1', float('nan')):.4f} "
              f"sc {v.get('sc', float('nan')):.4f}; {res.wall_seconds:.0f} s")
    return 0
