"""MusicNet loaders on tiny fixtures written by the test in both formats, split by recording, import."""

import csv
import sys
import types
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtperformer.learn.data import musicnet
from rtperformer.errors import UserError

SR = 44100
LABELS = [  # start, end (samples), instrument (GM 1-based), note
    (0, 22050, 41, 69), (22050, 44100, 41, 72), (11025, 33075, 43, 48)]


def _audio(seconds=1.5):
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _write_tree(root: Path, ids=(2191, 2244, 2288)):
    for i, rid in enumerate(ids):
        sub = "test" if i == 0 else "train"
        (root / f"{sub}_data").mkdir(parents=True, exist_ok=True)
        (root / f"{sub}_labels").mkdir(parents=True, exist_ok=True)
        sf.write(root / f"{sub}_data" / f"{rid}.wav", _audio(), SR, subtype="PCM_16")
        with open(root / f"{sub}_labels" / f"{rid}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value"])
            for s, e, inst, note in LABELS:
                w.writerow([s, e, inst, note, 0.0, 1.0, "Quarter"])
    return root


@pytest.fixture
def fake_intervaltree(monkeypatch):
    """A stand-in ``intervaltree`` package (the real one pickles the same way: Interval namedtuples)."""
    pkg = types.ModuleType("intervaltree")
    mod_iv = types.ModuleType("intervaltree.interval")
    mod_tree = types.ModuleType("intervaltree.intervaltree")
    Interval = namedtuple("Interval", "begin end data")
    Interval.__module__ = "intervaltree.interval"

    class IntervalTree:
        def __init__(self, intervals=()):
            self.items = sorted(intervals)

        def __iter__(self):
            return iter(self.items)

        def __reduce__(self):
            return (IntervalTree, (self.items,))

    IntervalTree.__module__ = "intervaltree.intervaltree"
    IntervalTree.__qualname__ = "IntervalTree"
    mod_iv.Interval, mod_tree.IntervalTree = Interval, IntervalTree
    pkg.Interval, pkg.IntervalTree = Interval, IntervalTree
    for name, m in (("intervaltree", pkg), ("intervaltree.interval", mod_iv), ("intervaltree.intervaltree", mod_tree)):
        monkeypatch.setitem(sys.modules, name, m)
    return Interval, IntervalTree


def _write_npz(path: Path, Interval, IntervalTree, ids=(2202, 2203)):
    data = {}
    for rid in ids:
        tree = IntervalTree([Interval(s, e, (inst, note, 1, 0.0, "Quarter")) for s, e, inst, note in LABELS])
        obj = np.empty(2, dtype=object)
        obj[0], obj[1] = _audio(), tree
        data[str(rid)] = obj
    np.savez(path, **data)
    return path


def test_tree_loader(tmp_path):
    root = _write_tree(tmp_path / "mn")
    recs = list(musicnet.iter_recordings(root))
    assert [r.id for r in recs] == [2191, 2244, 2288]
    r = recs[0]
    assert r.sample_rate == SR and r.audio.dtype == np.float32 and len(r.audio) == int(1.5 * SR)
    assert r.notes.shape == (3, 4)
    np.testing.assert_allclose(r.notes[0], [0.0, 0.5, 69, 41])
    assert [x.id for x in musicnet.iter_tree(root, ids=[2288, 9999])] == [2288]


def test_npz_loader(tmp_path, fake_intervaltree):
    path = _write_npz(tmp_path / "musicnet.npz", *fake_intervaltree)
    recs = list(musicnet.iter_recordings(path))
    assert [r.id for r in recs] == [2202, 2203]
    np.testing.assert_allclose(recs[0].audio, _audio(), atol=0)
    np.testing.assert_allclose(recs[0].notes[:, :2] * SR, [[0, 22050], [11025, 33075], [22050, 44100]])
    assert sorted(recs[0].notes[:, 3]) == [41, 41, 43]


def test_npz_needs_intervaltree(tmp_path, fake_intervaltree, monkeypatch):
    path = _write_npz(tmp_path / "musicnet.npz", *fake_intervaltree)
    for name in ("intervaltree", "intervaltree.interval", "intervaltree.intervaltree"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    with pytest.raises(UserError, match="intervaltree"):
        list(musicnet.iter_npz(path))


def test_npz_refuses_other_pickles(tmp_path):
    obj = np.empty(1, dtype=object)
    obj[0] = types.SimpleNamespace(a=1)
    np.savez(tmp_path / "evil.npz", **{"1": obj})
    with pytest.raises(UserError, match="refusing"):
        list(musicnet.iter_npz(tmp_path / "evil.npz"))


def test_recording_splits_disjoint():
    for n in range(1, 14):
        sp = musicnet.recording_splits(range(n))
        assert len(sp) == n
        if n >= 3:
            assert {"train", "valid", "test"} <= set(sp.values())
    cello = musicnet.recording_splits(musicnet.PAPER_IDS["cello"])
    assert list(cello.values()).count("test") == 2 and list(cello.values()).count("valid") == 1


def test_import_into_corpus_and_windows(tmp_path):
    from rtperformer.config import from_dict
    from rtperformer.learn.data.dataset import WindowDataset, piece_arrays

    root = _write_tree(tmp_path / "mn")
    man = musicnet.import_musicnet(root, "violin", tmp_path / "corpus", hop=256)
    assert {p["id"]: p["split"] for p in man["pieces"]} == {
        "musicnet-2191": "train", "musicnet-2244": "valid", "musicnet-2288": "test"}
    assert all(p["notes"] == 2 and p["other_instrument_notes"] == 1 for p in man["pieces"])
    cfg = from_dict({"model": {"velocity": True}, "train": {"clip_frames": 32}})  # 48 kHz: resampled
    ds = WindowDataset(tmp_path / "corpus", "violin", "train", cfg)
    x, y = ds[0]
    assert x.shape == (384, 32) and y.shape == (513, 32)
    (pid, x, y, audio), = list(piece_arrays(tmp_path / "corpus", "violin", "test", cfg))
    assert pid == "musicnet-2288" and len(audio) == int(1.5 * 48000) and x.shape[1] == len(audio) // 256 + 1
    assert x[69, 10] == 1 and x[72, 10] == 0 and x[256 + 69, 10] == pytest.approx(100 / 127)


def test_cli_musicnet(tmp_path):
    from rtperformer.cli import main

    root = _write_tree(tmp_path / "mn")
    assert main(["data", "musicnet", "--source", str(root), "--instrument", "violin", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "violin" / "manifest.json").is_file()
    assert main(["data", "musicnet", "--source", str(tmp_path / "missing"), "--instrument", "violin"]) == 2
