"""WindowDataset / piece_arrays on a small synthetic corpus (no FluidSynth): shapes, splits, caches."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtperformer.config import from_dict
from rtperformer.learn.data.dataset import WindowDataset, piece_arrays, split_pieces
from rtperformer.learn.data.rolls_io import load_rolls, rolls_from_events, save_rolls
from rtperformer.dsp.features import n_frames
from rtperformer.errors import UserError
from rtperformer.roll.rolls import input_channels, stack_inputs


def _make_corpus(root: Path, sr=48000, hop=256, pieces=(("p-a", "train", 3.0), ("p-b", "valid", 2.0),
                                                        ("p-c", "test", 1.0))):
    inst = root / "violin"
    entries = []
    rng = np.random.default_rng(0)
    for pid, split, secs in pieces:
        d = inst / pid
        d.mkdir(parents=True)
        kinds = ["expressive", "flat"] if pid == "p-a" else ["expressive", "deadpan"]
        for kind in kinds:
            n = int(secs * sr)
            t = np.arange(n) / sr
            audio = (0.1 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)
            sf.write(d / f"{kind}.flac", audio, sr, subtype="PCM_24")
            notes = np.array([[0.1, 0.9, 69, 90], [0.8, secs - 0.2, 72, 60]])
            cc = np.array([[0.0, 100], [0.5, 64]]) if kind == "expressive" else np.zeros((0, 2))
            rolls = rolls_from_events(notes, cc, n_frames(n, hop), sr, hop)
            save_rolls(d / f"{kind}_rolls.npz", rolls, notes, cc, sr / hop, sr, hop)
        entries.append({"id": pid, "group": pid, "split": split, "kinds": kinds, "seconds": {"expressive": secs}})
    (inst / "manifest.json").write_text(json.dumps({"instrument": "violin", "sample_rate": sr, "hop": hop,
                                                    "pieces": entries}))
    return root


def _cfg(tmp_path, velocity=True, expression=True, clip=64, split_file=None, **audio):
    split = tmp_path / "none.yaml" if split_file is None else split_file
    if split_file is None:
        split.write_text("train: []\n")
    return from_dict({"audio": audio, "model": {"velocity": velocity, "expression": expression},
                      "train": {"clip_frames": clip}, "data": {"split_file": str(split)}})


@pytest.mark.parametrize("velocity,expression", [(False, False), (True, True), (True, False)])
def test_window_shapes(tmp_path, velocity, expression):
    corpus = _make_corpus(tmp_path / "c")
    cfg = _cfg(tmp_path, velocity, expression)
    ds = WindowDataset(corpus, "violin", "train", cfg)
    T = 3 * 48000 // 256 + 1
    assert len(ds) == 2 * (T - 64 + 1)  # expressive + flat of p-a
    for i in (0, len(ds) // 2, len(ds) - 1):
        x, y = ds[i]
        assert x.shape == (input_channels(cfg.model), 64) and x.dtype == np.float32
        assert y.shape == (cfg.audio.n_bins, 64) and y.dtype == np.float32
        assert np.isfinite(y).all() and y.max() > 0
    with pytest.raises(IndexError):
        ds[len(ds)]
    d = ds.describe()
    assert d["pieces"] == 1 and set(d["minutes"]) == {"expressive", "flat"}


def test_window_matches_whole_piece(tmp_path):
    corpus = _make_corpus(tmp_path / "c")
    cfg = _cfg(tmp_path)
    ds = WindowDataset(corpus, "violin", "train", cfg, kinds=("expressive",))
    (pid, x, y, audio), = list(piece_arrays(corpus, "violin", "train", cfg))
    assert pid == "p-a" and x.shape[1] == y.shape[1] == len(audio) // 256 + 1
    xw, yw = ds[100]
    np.testing.assert_array_equal(xw, x[:, 100:164])
    np.testing.assert_array_equal(yw, y[:, 100:164])
    rolls = load_rolls(corpus / "violin" / "p-a" / "expressive_rolls.npz")
    np.testing.assert_allclose(x, stack_inputs(rolls, cfg.model), atol=1e-6)
    assert x[384, 0] == pytest.approx(100 / 127) and x[384, -1] == pytest.approx(64 / 127)


def test_short_piece_is_padded_and_kinds(tmp_path):
    corpus = _make_corpus(tmp_path / "c")
    cfg = _cfg(tmp_path, clip=400)
    ds = WindowDataset(corpus, "violin", "test", cfg, kinds=("expressive", "deadpan"))
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape[1] == y.shape[1] == 400 and not y[:, 300:].any()
    assert [p for p, *_ in piece_arrays(corpus, "violin", "valid", cfg, kind="deadpan")] == ["p-b"]
    assert list(piece_arrays(corpus, "violin", "train", cfg, kind="deadpan")) == []


def test_split_file_overrides_manifest(tmp_path):
    corpus = _make_corpus(tmp_path / "c")
    sp = tmp_path / "s.yaml"
    sp.write_text("train: [p-b]\nvalid: [p-a]\ntest: []\n")
    cfg = _cfg(tmp_path, split_file=sp)
    assert [p["id"] for p in split_pieces(corpus, "violin", "train", cfg)] == ["p-b"]
    assert [p["id"] for p in split_pieces(corpus, "violin", "test", cfg)] == ["p-c"]  # unlisted: manifest
    cfg_missing = _cfg(tmp_path, split_file=tmp_path / "nope.yaml")
    with pytest.raises(UserError):
        split_pieces(corpus, "violin", "train", cfg_missing)
    with pytest.raises(UserError):
        WindowDataset(tmp_path / "empty", "violin", "train", cfg)


def test_other_rate_resamples_and_rebuilds_rolls(tmp_path):
    corpus = _make_corpus(tmp_path / "c", sr=44100)
    cfg = _cfg(tmp_path, sample_rate=48000, n_fft=1024, hop=240)
    (pid, x, y, audio), = list(piece_arrays(corpus, "violin", "train", cfg))
    assert len(audio) == 3 * 48000 and x.shape[1] == y.shape[1] == len(audio) // 240 + 1
    fr = 48000 / 240
    assert x[69, round(0.1 * fr)] == 1 and x[69, round(0.1 * fr) - 1] == 0
    files = sorted(p.name for p in (corpus / "violin" / "p-a").glob("*.npy"))
    assert len(files) == 2  # one inputs + one features cache for this audio config
