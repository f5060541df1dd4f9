"""Fixed train/valid/test split by piece: committed lists under configs/splits/<instrument>.yaml.

Pieces cut from the same source (a quartet's two violin parts, a chorale's soprano and alto) share a
*group* and always land in the same split, so no test material is ever trained on. A piece listed in
the split file keeps its split forever; a new piece gets :func:`assign_split` (deterministic: within
each source kind, the 3rd of every 10 groups in selection order goes to test, the 7th to valid).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rtperformer.atomic import atomic_write
from rtperformer.config import CONFIG_DIR
from rtperformer.errors import UserError

SPLITS = ("train", "valid", "test")


def split_path(instrument: str, split_file: str | Path | None = None) -> Path:
    return Path(split_file) if split_file else CONFIG_DIR / "splits" / f"{instrument}.yaml"


def read_splits(path: Path) -> dict[str, list[str]]:
    """{train: [...], valid: [...], test: [...]} from a YAML file; missing file -> empty lists."""
    path = Path(path)
    if not path.is_file():
        return {s: [] for s in SPLITS}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"split file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or set(data) - set(SPLITS):
        raise UserError(f"split file {path} must map train/valid/test to lists of piece ids")
    out = {s: [str(x) for x in (data.get(s) or [])] for s in SPLITS}
    check_disjoint(out, str(path))
    return out


def check_disjoint(splits: dict[str, list[str]], where: str = "splits") -> None:
    seen: dict[str, str] = {}
    for s in SPLITS:
        for pid in splits.get(s, []):
            if pid in seen and seen[pid] != s:
                raise UserError(f"{where}: piece {pid} is in both {seen[pid]} and {s}")
            seen[pid] = s


def split_of(splits: dict[str, list[str]]) -> dict[str, str]:
    return {pid: s for s in SPLITS for pid in splits.get(s, [])}


def assign_split(index_in_kind: int) -> str:
    """Split of the ``index_in_kind``-th group (selection order) of one source kind."""
    r = index_in_kind % 10
    return "test" if r == 2 else "valid" if r == 6 else "train"


def write_splits(path: Path, splits: dict[str, list[str]], header: str = "") -> None:
    check_disjoint(splits)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (header or "") + yaml.safe_dump({s: sorted(splits.get(s, [])) for s in SPLITS},
                                           default_flow_style=False, sort_keys=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
