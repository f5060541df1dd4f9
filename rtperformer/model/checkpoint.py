"""Model directories: ``model.safetensors`` + ``config.yaml`` + ``meta.json`` (no pickle anywhere).

    models/<name>/
        model.safetensors   weights (float32, or float16 with fp16=True; loaded back as float32)
        config.yaml         the full Config the model was built from
        meta.json           step, metrics, data description, param_count
        noise.json          optional: the texture noise table (rtperformer/dsp/noise.py), checked against the
                            config on load and kept as ``model.noise_table`` (None without one)

A bare name (``violin``) is looked up along rtperformer.paths' search order (``--models-dir``,
``$RTPERFORMER_MODELS``, the user data folder, the shipped models); anything with a path separator, or an
existing directory, is used as given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rtperformer.config import Config, ConfigError, from_dict, load_config
from rtperformer.errors import UserError
from rtperformer.model.performancenet import PerformanceNet, build_model, count_parameters
from rtperformer.atomic import atomic_write
from rtperformer import paths

DEFAULT_MODELS = {"violin": "violin", "cello": "cello", "flute": "flute"}
WEIGHTS, CONFIG, META = "model.safetensors", "config.yaml", "meta.json"


def save_checkpoint(dirpath: str | Path, model: PerformanceNet, cfg: Config, meta: Mapping[str, Any] | None = None,
                    fp16: bool = False) -> Path:
    """Write a model directory (created if needed); each file is replaced atomically. Returns the path."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    info = {**(meta or {}), "param_count": count_parameters(model), "dtype": str(dtype).removeprefix("torch.")}
    atomic_write(d / WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    atomic_write(d / CONFIG, lambda p: Path(p).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False)))
    atomic_write(d / META, lambda p: Path(p).write_text(json.dumps(info, indent=2, default=str) + "\n"))
    return d


def transplant(weights: Mapping[str, torch.Tensor], model: torch.nn.Module, label: str = "source") -> None:
    """Load ``weights`` into ``model`` (in place). A tensor narrower than the model's only in dim 1 (input
    channels appended after the old ones: the note-position inputs of the first contour conv) fills the
    leading columns and the new columns start at zero, so the model computes exactly what the source did
    until training moves them. Anything else that differs is a UserError."""
    target = model.state_dict()
    new = {}
    for k, want in target.items():
        got = weights.get(k)
        if got is not None and tuple(got.shape) == tuple(want.shape):
            new[k] = got.to(want.dtype)
        elif (got is not None and got.dim() == want.dim() >= 2 and got.shape[1] < want.shape[1]
              and tuple(got.shape[:1]) + tuple(got.shape[2:]) == tuple(want.shape[:1]) + tuple(want.shape[2:])):
            w = torch.zeros_like(want)
            w[:, : got.shape[1]] = got.to(want.dtype)
            new[k] = w
        else:
            have = tuple(got.shape) if got is not None else "missing"
            raise UserError(f"{label} does not fit this config: {k} is {have}, the model needs {tuple(want.shape)}")
    extra = [k for k in weights if k not in target]
    if extra:
        raise UserError(f"{label} does not fit this config: unexpected tensor {extra[0]}")
    model.load_state_dict(new)


def resolve_model_dir(name_or_path: str | Path, models_dir: str | Path | None = None) -> Path:
    """A bare name -> the first NAME/ on rtperformer.paths' model search path (``models_dir`` first);
    a path -> itself. Missing -> UserError naming the folders searched."""
    s = str(name_or_path)
    p = Path(s)
    if not p.is_dir() and os.sep not in s and "/" not in s:
        name = DEFAULT_MODELS.get(s, s)
        found = paths.find_model(name, models_dir)
        if found is None:
            raise UserError(f"no trained model '{name}' (looked in {paths.describe_model_search(models_dir)}): "
                            f"train one with `rtperformer train` or pass --models-dir DIR")
        return found
    if not (p / WEIGHTS).is_file():
        raise UserError(f"no trained model at {p} (expected {WEIGHTS}): train one with `rtperformer train` "
                        f"or pass a model directory")
    return p


def load_model(name_or_path: str | Path, cfg_override: Config | str | Path | None = None,
               device: str | torch.device = "cpu",
               models_dir: str | Path | None = None) -> tuple[PerformanceNet, Config, dict]:
    """Load a model directory -> (model in eval mode, float32 on ``device``, its Config, meta dict).

    ``cfg_override`` (a Config or a config file/name) replaces the stored config, e.g. to change render
    settings; its model and audio sections must still fit the weights, else UserError.
    """
    d = resolve_model_dir(name_or_path, models_dir)
    try:
        stored = from_dict(yaml.safe_load((d / CONFIG).read_text()) or {})
        meta = json.loads((d / META).read_text()) if (d / META).is_file() else {}
    except (OSError, yaml.YAMLError, json.JSONDecodeError, ConfigError) as exc:
        raise UserError(f"model directory {d} has an unreadable {CONFIG} or {META}: {exc}") from None
    if cfg_override is None:
        cfg = stored
    elif isinstance(cfg_override, Config):
        cfg = cfg_override
    else:
        cfg = load_config(cfg_override)
    try:
        weights = load_file(str(d / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {d / WEIGHTS} is not a readable safetensors file: {exc}") from None
    model = build_model(cfg)
    expected = model.state_dict()
    problems = [k for k in expected if k not in weights or tuple(weights[k].shape) != tuple(expected[k].shape)]
    problems += [k for k in weights if k not in expected]
    if problems:
        k = problems[0]
        got = tuple(weights[k].shape) if k in weights else "missing"
        want = tuple(expected[k].shape) if k in expected else "unexpected"
        raise UserError(f"checkpoint {d} does not fit config '{cfg.name}' ({len(problems)} tensors differ, "
                        f"e.g. {k}: checkpoint {got}, config {want})")
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    from rtperformer.dsp.noise import find_noise_table

    model.noise_table = find_noise_table(d, cfg.audio)  # a bad noise.json is a UserError here, before any audio
    return model.to(device).eval(), cfg, meta
