"""Corpus build with real FluidSynth on a tiny subset (two short folk tunes), via the CLI."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from rtperformer.learn.data.synth import FLUID_R3, fluidsynth_available

REQUIRE = os.environ.get("RTPERFORMER_REQUIRE_FLUIDSYNTH") == "1"


def _need_fluidsynth():
    if not fluidsynth_available(FLUID_R3):
        if REQUIRE:
            pytest.fail("FluidSynth or FluidR3_GM.sf2 missing and RTPERFORMER_REQUIRE_FLUIDSYNTH=1")
        pytest.skip("FluidSynth or FluidR3_GM.sf2 missing")
    import music21  # noqa: F401  (a dependency: never skipped)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    _need_fluidsynth()
    from rtperformer.cli import main

    root = tmp_path_factory.mktemp("corpus")
    args = ["data", "build", "--instrument", "flute", "--out", str(root / "corpus"), "--cache", str(root / "cache"),
            "--minutes", "0.35", "--sources", "folk", "--jobs", "1", "--splits", str(root / "splits"),
            "--write-splits"]
    assert main(args) == 0
    return root, args


def test_tiny_build_layout(tiny_corpus):
    root, _ = tiny_corpus
    inst = root / "corpus" / "flute"
    man = json.loads((inst / "manifest.json").read_text())
    assert man["sample_rate"] == 48000 and man["soundfont"].endswith("FluidR3_GM.sf2") and man["program"] == 73
    assert 1 <= len(man["pieces"]) <= 3
    assert 0.2 < man["minutes"]["expressive"] < 1.5
    for p in man["pieces"]:
        d = inst / p["id"]
        assert "expressive" in p["kinds"] and (d / "piece.json").is_file()
        for kind in p["kinds"]:
            audio, sr = sf.read(d / f"{kind}.flac", dtype="float32")
            assert sr == 48000 and audio.ndim == 1
            assert 0.005 < np.abs(audio).max() < 1.0
            with np.load(d / f"{kind}_rolls.npz") as z:
                assert z["roll"].shape == (128, len(audio) // 256 + 1)
                assert z["expression_cc"].shape == (1, len(audio) // 256 + 1)
                notes = z["notes"]
                assert notes.shape[1] == 4 and (notes[:, 2] >= 60).all() and (notes[:, 2] <= 96).all()
                if kind == "flat":
                    assert (z["expression_cc"] == 127).all()
                if kind == "expressive":
                    assert len(np.unique(z["expression_cc"])) > 3
            # audio is silent before the first note and sounds during it
            first = notes[:, 0].min()
            assert np.abs(audio[int((first + 0.15) * sr):int((first + 0.3) * sr)]).max() > 1e-3
    splits = (root / "splits" / "flute.yaml").read_text()
    assert all(p["id"] in splits for p in man["pieces"])
    assert (root / "cache" / "music21").is_dir()


def test_rebuild_is_cached_and_deterministic(tiny_corpus):
    from rtperformer.cli import main

    root, args = tiny_corpus
    inst = root / "corpus" / "flute"
    before = {p: p.read_bytes() for p in inst.glob("*/expressive_rolls.npz")}
    assert main(args) == 0
    man = json.loads((inst / "manifest.json").read_text())
    assert all(p.get("cached") for p in man["pieces"])
    assert {p: p.read_bytes() for p in inst.glob("*/expressive_rolls.npz")} == before


def test_tiny_corpus_windows(tiny_corpus):
    from rtperformer.config import from_dict
    from rtperformer.learn.data.dataset import WindowDataset

    root, _ = tiny_corpus
    cfg = from_dict({"model": {"velocity": True, "expression": True}, "train": {"clip_frames": 96},
                     "data": {"split_file": str(root / "splits" / "flute.yaml")}})
    ds = WindowDataset(root / "corpus", "flute", "train", cfg, kinds=("expressive", "flat", "deadpan"))
    assert len(ds) > 0
    x, y = ds[len(ds) // 2]
    assert x.shape == (385, 96) and y.shape == (513, 96)


def test_bad_arguments():
    from rtperformer.cli import main

    assert main(["data", "build", "--minutes", "0"]) == 2
    assert main(["data", "build", "--sources", "jazz"]) == 2
