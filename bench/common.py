"""Shared helpers of the benchmarks: machine description, model sources, JSON writing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from rtperformer.atomic import atomic_write

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SKIP_CONFIGS = {"tiny-test"}  # not a real instrument (16 kHz, a few thousand parameters)


def machine() -> dict:
    """CPU model, cores usable, load average, torch / onnxruntime versions, GPU name (if any)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "load_avg_1m_at_start": os.getloadavg()[0], "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def read_json(path: Path) -> dict | None:
    """A results file's contents, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def num(v, fmt: str = ".3f") -> str:
    """A table cell: ``v`` formatted, "-" when missing."""
    return "-" if v is None else format(v, fmt)


def write_json(data: dict, path: Path) -> Path:
    """Write ``data`` as indented JSON via a temp file and rename."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n"))


def save_png(fig, path: Path) -> Path:
    """Save a matplotlib figure via a temp file and rename."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"), suffix=".png")


def default_sources() -> list[str]:
    """What to benchmark by default: every shipped streaming model in models/ (trained weights), then every
    streaming config in configs/ (random weights: speed does not depend on the values), one per distinct
    (audio, model) section."""
    import yaml

    from rtperformer.config import load_config

    out, seen = [], set()

    def fresh(cfg) -> bool:  # the three realtime configs share one topology: measure it once
        key = repr((cfg.to_dict()["audio"], cfg.to_dict()["model"]))
        if key in seen:
            return False
        seen.add(key)
        return True

    models = REPO / "models"
    if models.is_dir():
        for d in sorted(models.iterdir(), key=lambda d: ("violin" not in d.name, d.name)):
            if (d / "model.safetensors").is_file() and (d / "config.yaml").is_file():
                try:
                    cfg = load_config(d / "config.yaml")
                    if cfg.model.form == "streaming" and fresh(cfg):
                        out.append(str(d))
                except Exception:
                    continue
    for p in sorted((REPO / "configs").glob("*.yaml"), key=lambda p: ("violin" not in p.stem, p.stem)):
        if p.stem in SKIP_CONFIGS:
            continue
        try:
            if "model" not in (yaml.safe_load(p.read_text()) or {}):  # a settings overlay (serve-steady), no model
                continue
            cfg = load_config(p)
            if cfg.model.form == "streaming" and fresh(cfg):
                out.append(p.stem)
        except Exception:
            continue
    return out


def load_source(src: str):
    """``src``: a model folder (checkpoint) or a config name/path -> (label, model, cfg, model_dir or None).

    Configs get random weights (seeded); the model is in eval mode on the CPU.
    """
    import torch

    from rtperformer.config import load_config

    p = Path(src)
    if p.is_dir() and (p / "model.safetensors").is_file():
        from rtperformer.model.checkpoint import load_model

        model, cfg, _ = load_model(str(p))
        return f"model:{p.name}", model.eval(), cfg, p
    if not p.suffix and (REPO / "models" / src / "model.safetensors").is_file():
        return load_source(str(REPO / "models" / src))
    cfg = load_config(src)
    try:
        from rtperformer.model import build_model
    except ImportError:
        from rtperformer.model.performancenet import build_model
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return cfg.name if cfg.name != "default" else p.stem, model, cfg, None


def param_count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def run_in_batches(jobs: list[tuple[str, list[str]]], parallel: int, what: str) -> None:
    """Run ``jobs`` ((name, argv) pairs) from the repository root, ``parallel`` at a time; exit naming the
    first that failed (``what``: the word for a job in that message)."""
    for i in range(0, len(jobs), parallel):
        batch = [(name, subprocess.Popen(argv, cwd=REPO)) for name, argv in jobs[i:i + parallel]]
        for name, p in batch:
            if p.wait() != 0:
                sys.exit(f"{what} failed for {name}")


def onnx_step_cost(models: dict, steps: int, rounds: int) -> dict:
    """CPU time of one 1-frame ONNX Runtime step (the live path) for each of ``models`` ({name: (model, cfg)}),
    interleaved in ``rounds`` on the same machine (process CPU time: a shared machine disturbs it less).
    Returns {name: {"inputs", "step_cpu_us": [per round], "median_step_cpu_us"}}."""
    import numpy as np
    import torch

    from rtperformer.backends import make_backend
    from rtperformer.roll.rolls import input_channels

    torch.set_num_threads(1)
    backs, out = {}, {}
    for name, (model, cfg) in models.items():
        b = make_backend("onnx", model, cfg, chunk=1)
        b.warmup()
        backs[name] = (b, input_channels(cfg.model))
        out[name] = {"inputs": input_channels(cfg.model), "step_cpu_us": []}
    for _ in range(rounds):
        for name, (b, c) in backs.items():
            x = np.zeros((1, c, 1), np.float32)
            x[0, 60] = 1.0
            st = b.init_state()
            t0 = time.process_time()
            for _ in range(steps):
                _, st = b.step(x, st)
            out[name]["step_cpu_us"].append((time.process_time() - t0) / steps * 1e6)
    for v in out.values():
        v["median_step_cpu_us"] = float(np.median(v["step_cpu_us"]))
    return out
