"""The trainer's resume state: weights and Adam state in one safetensors file (no pickle), swapped in
atomically (``out_dir/resume``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rtperformer.config import Config
from rtperformer.errors import UserError

RESUME_DIR = "resume"
STATE_FILE = "state.safetensors"


def optimizer_tensors(opt: torch.optim.Optimizer, extra: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten an optimizer state dict to (tensors, str metadata) for safetensors (no pickle)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            tensors[f"state.{idx}.{key}"] = t.detach().cpu().contiguous()
    meta = {"param_groups": json.dumps(sd["param_groups"]), "trainer": json.dumps(extra)}
    return tensors, meta


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_tensors`; loads into ``opt`` and returns the trainer counters."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta.get("trainer", "{}"))


def save_resume(out_dir: Path, model: torch.nn.Module, cfg: Config, meta: dict[str, Any],
                 opt: torch.optim.Optimizer, extra: dict[str, Any]) -> None:
    """Write ``out_dir/resume`` atomically (build it in a temp folder, then swap it in): ``state.safetensors``
    (fp32 weights as ``model.<name>``, Adam state as ``state.<i>.<key>``; param groups and trainer counters
    in its metadata), plus ``config.yaml`` and ``meta.json`` for people reading the folder."""
    import yaml

    final = out_dir / RESUME_DIR
    tmp = out_dir / f".{RESUME_DIR}.tmp"
    old = out_dir / f".{RESUME_DIR}.old"
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    tmp.mkdir(parents=True)
    tensors, smeta = optimizer_tensors(opt, extra)
    for name, t in model.state_dict().items():
        tensors[f"model.{name}"] = t.detach().float().cpu().clone() if t.is_floating_point() else t.detach().cpu().clone()
    save_file(tensors, str(tmp / STATE_FILE), metadata=smeta)
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def read_resume(out_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Load weights and optimizer state from ``out_dir/resume``; returns the trainer counters."""
    from safetensors import safe_open

    path = out_dir / RESUME_DIR / STATE_FILE
    with safe_open(str(path), "pt") as f:
        smeta = f.metadata() or {}
    tensors = load_file(str(path))
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith("state.")}
    try:
        model.load_state_dict(weights)
        return load_optimizer_tensors(opt, opt_tensors, smeta)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--resume: the state in {path.parent} does not fit this config ({first})") from None
