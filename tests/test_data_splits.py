"""Fixed splits: committed lists are disjoint and keep a source's parts together; rule and I/O."""

import re
from pathlib import Path

import pytest

from rtperformer.config import CONFIG_DIR
from rtperformer.learn.data.splits import SPLITS, assign_split, read_splits, write_splits
from rtperformer.errors import UserError

SPLIT_FILES = sorted((CONFIG_DIR / "splits").glob("*.yaml"))


def _group(pid):
    return re.sub(r"-p\d+$", "", pid)


@pytest.mark.parametrize("path", SPLIT_FILES, ids=[p.stem for p in SPLIT_FILES])
def test_committed_splits_disjoint_by_piece_and_source(path):
    sp = read_splits(path)
    sets = {s: set(sp[s]) for s in SPLITS}
    assert sets["train"] and sets["test"] and sets["valid"]
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not sets[a] & sets[b]
                assert not {_group(x) for x in sets[a]} & {_group(x) for x in sets[b]}


def test_committed_split_files_exist():
    assert {p.stem for p in SPLIT_FILES} >= {"violin", "cello", "flute"}


def test_assign_split_rule():
    got = [assign_split(i) for i in range(20)]
    assert got.count("test") == 2 and got.count("valid") == 2
    assert got == [assign_split(i) for i in range(20)]


def test_read_write_and_overlap(tmp_path: Path):
    p = tmp_path / "x.yaml"
    write_splits(p, {"train": ["b", "a"], "valid": ["c"], "test": []})
    assert read_splits(p) == {"train": ["a", "b"], "valid": ["c"], "test": []}
    p.write_text("train: [a]\ntest: [a]\n")
    with pytest.raises(UserError):
        read_splits(p)
    p.write_text("training: [a]\n")
    with pytest.raises(UserError):
        read_splits(p)
    assert read_splits(tmp_path / "missing.yaml") == {s: [] for s in SPLITS}
