"""Where rtperformer finds models and configs: one search order, the same in a checkout and in a wheel.

Models (a bare name such as ``violin``): the first of these folders that holds ``NAME/model.safetensors``:

  1. ``--models-dir DIR`` (``serve``, ``render``, ``export``, ``eval`` and the demo take it),
  2. ``$RTPERFORMER_MODELS`` (one or more folders, separated by ``:``),
  3. the user data folder ``$XDG_DATA_HOME/rtperformer/models`` (default ``~/.local/share/rtperformer/models``),
  4. the models shipped with the package, ``rtperformer/_shipped/models``.

Configs (a bare name such as ``serve-steady``): ``$XDG_CONFIG_HOME/rtperformer/NAME.yaml`` (default
``~/.config/rtperformer``), then the shipped ``rtperformer/_shipped/configs/NAME.yaml``.

In a checkout, ``rtperformer/_shipped/models`` and ``rtperformer/_shipped/configs`` are symbolic links to
the top-level ``models/`` and ``configs/`` (which the Makefile, the tests and training write to); building a
wheel copies the files behind them into the package (pyproject.toml's package-data lists exactly the
shipped ones), so an installed package finds the same files inside itself.

Outputs that belong to a working folder (``train``'s model, ``eval``'s JSON, the demo's out/) go to the
checkout when running from one (:func:`checkout_root`), else to the user data folder or the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_MODELS = PACKAGE_DIR / "_shipped" / "models"
SHIPPED_CONFIGS = PACKAGE_DIR / "_shipped" / "configs"
WEIGHTS = "model.safetensors"


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/rtperformer`` (default ``~/.local/share/rtperformer``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rtperformer"


def user_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/rtperformer`` (default ``~/.config/rtperformer``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rtperformer"


def checkout_root() -> Path | None:
    """The source checkout this package runs from (it holds pyproject.toml next to rtperformer/), or None
    for an installed package."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "rtperformer").is_dir() else None


def model_search_path(models_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for a bare model name, in order (see the module docstring)."""
    dirs: list[Path] = []
    if models_dir:
        dirs.append(Path(models_dir))
    env = os.environ.get("RTPERFORMER_MODELS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(user_data_dir() / "models")
    dirs.append(SHIPPED_MODELS)
    return dirs


def find_model(name: str, models_dir: str | os.PathLike | None = None) -> Path | None:
    """``DIR/name`` for the first folder of :func:`model_search_path` holding ``name/model.safetensors``."""
    for d in model_search_path(models_dir):
        if (d / name / WEIGHTS).is_file():
            return d / name
    return None


def describe_model_search(models_dir: str | os.PathLike | None = None) -> str:
    """The search path as one line, for error messages."""
    return ", ".join(str(d) for d in model_search_path(models_dir))


def find_config(name: str) -> Path | None:
    """The YAML file for a bare config name: the user config folder, then the shipped configs."""
    for d in (user_config_dir(), SHIPPED_CONFIGS):
        p = d / f"{name}.yaml"
        if p.is_file():
            return p
    return None


def writable_models_dir() -> Path:
    """Where ``train`` puts a new model by default: the checkout's models/, else the user data folder."""
    root = checkout_root()
    return root / "models" if root is not None else user_data_dir() / "models"


def output_dir() -> Path:
    """Default folder for demo/eval outputs: the checkout's out/, else ./out."""
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "out"
