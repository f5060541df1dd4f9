"""Training windows cut on the fly from per-piece caches (no precomputed overlapping windows).

For each piece and render kind the corpus holds ``<kind>.flac`` and ``<kind>_rolls.npz``. The first use
under an audio config writes two compact caches next to them (atomically, safe with DataLoader
workers) and memory-maps them afterwards:

- ``<kind>.feat-<key>.npy``  float16 (n_bins, T): log1p(power_scale*|S|^2) of the audio
  (resampled to cfg.audio.sample_rate when the corpus rate differs), ``rtperformer.dsp.features.log_power``.
- ``<kind>.in-<key>.npy``    uint8 (385, T): roll, onoff+1, velocity*127 (128 rows each), CC11 (1 row).
- ``<kind>.pos-<key>.npy``   uint8 (256, T): note-position counters (rtperformer.roll.rolls.positions_of), written
  only for models with note-position inputs (``model.onset_decay_frames`` / ``release_decay_frames``).

The bend row ``<kind>_bend.npy`` (float32 (T,), semitones; rtperformer/learn/data/bends.py) is read as it is (the
corpus's own rate and hop: a config with others cannot use it). Models with ``model.bend_input`` get it as
their last input channel; ``train.dewarp_bend`` (with ``model.bend_warp``) warps each target frame back by
it, so the model learns the unbent note that the audio stage then bends.

``WindowDataset(corpus_dir, instrument, split, cfg)`` is map-style: item i is the window starting at
the i-th valid frame position over all (piece, kind) pairs of the split, so uniform sampling of indices
is uniform over positions. ``piece_arrays`` gives whole pieces for evaluation.

Splits: the manifest records each piece's split at build time; a split file (cfg.data.split_file, else
configs/splits/<instrument>.yaml when it exists) overrides it for the pieces it lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.learn.data.rolls_io import load_rolls
from rtperformer.learn.data.splits import read_splits, split_of, split_path
from rtperformer.errors import UserError
from rtperformer.roll.rolls import BEND_INPUT_SEMITONES, position_channels, position_taus, positions_of

try:
    import torch.utils.data as _tud

    _Base = _tud.Dataset
except ImportError:  # pragma: no cover - torch is a dependency
    _Base = object

FEATURE_VERSION = 1
N_INPUT_ROWS = 385


def _key(cfg, corpus_rate: int) -> str:
    a = cfg.audio
    text = json.dumps([FEATURE_VERSION, corpus_rate, a.sample_rate, a.n_fft, a.hop, float(a.power_scale)])
    return f"{a.sample_rate}-{a.n_fft}-{a.hop}-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda tmp: np.save(tmp, arr), suffix=".npy")


def load_manifest(corpus_dir: str | Path, instrument: str) -> dict:
    path = Path(corpus_dir) / instrument / "manifest.json"
    if not path.is_file():
        raise UserError(f"no corpus manifest at {path}; build it with `rtperformer data build --instrument {instrument}`")
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise UserError(f"corpus manifest {path} is not valid JSON; rebuild the corpus") from None


def split_pieces(corpus_dir: str | Path, instrument: str, split: str, cfg=None) -> list[dict]:
    """Manifest entries of ``split`` (train|valid|test|all), the split file overriding the manifest."""
    if split not in ("train", "valid", "test", "all"):
        raise UserError(f"unknown split {split!r} (train, valid, test, all)")
    man = load_manifest(corpus_dir, instrument)
    split_file = getattr(getattr(cfg, "data", None), "split_file", "") if cfg is not None else ""
    path = split_path(instrument, split_file or None)
    if split_file and not path.is_file():
        raise UserError(f"split file not found: {split_file}")
    fixed = split_of(read_splits(path)) if path.is_file() else {}
    out = []
    for p in man["pieces"]:
        s = fixed.get(p["id"], p.get("split", "train"))
        if split == "all" or s == split:
            out.append(dict(p, split=s))
    return out


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` (resampled with soxr when the file differs)."""
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != sample_rate:
        import soxr

        audio = soxr.resample(audio, sr, sample_rate).astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _encode_inputs(rolls) -> np.ndarray:
    out = np.empty((N_INPUT_ROWS, rolls.roll.shape[1]), np.uint8)
    out[0:128] = rolls.roll > 0.5
    out[128:256] = np.round(rolls.onoff + 1.0)
    out[256:384] = np.round(rolls.velocity * 127.0)
    out[384:385] = np.round(rolls.expression * 127.0)
    return out


def decode_inputs(enc: np.ndarray, model_cfg, pos: np.ndarray | None = None, bend: np.ndarray | None = None) -> np.ndarray:
    """uint8 (385, T) cache (+ uint8 (256, T) position counters, needed when ``model_cfg`` has note-position
    inputs; + the bend row (T,) semitones, needed when it has ``bend_input``) -> x (C_in, T) float32 in the
    stack_inputs layout for ``model_cfg``."""
    parts = [enc[0:128].astype(np.float32), enc[128:256].astype(np.float32) - 1.0]
    if model_cfg.velocity:
        parts.append(enc[256:384].astype(np.float32) * np.float32(1.0 / 127.0))
    if model_cfg.expression:
        parts.append(enc[384:385].astype(np.float32) * np.float32(1.0 / 127.0))
    if any(position_taus(model_cfg)):
        if pos is None:
            raise ValueError("decode_inputs: this model has note-position inputs; pass the position counters")
        parts.extend(position_channels(np.asarray(pos), model_cfg))
    if getattr(model_cfg, "bend_input", False):
        if bend is None:
            raise ValueError("decode_inputs: this model has a bend input; pass the bend row")
        parts.append(np.asarray(bend, np.float32).reshape(1, -1) * np.float32(1.0 / BEND_INPUT_SEMITONES))
    return np.concatenate(parts, axis=0)


def needs_bend(cfg) -> bool:
    """Whether training/eval on ``cfg`` reads the corpus's bend rows."""
    return bool(getattr(cfg.model, "bend_input", False) or dewarps(cfg))


def dewarps(cfg) -> bool:
    return bool(getattr(cfg.train, "dewarp_bend", False) and getattr(cfg.model, "bend_warp", True))


def bend_cache(piece_dir: Path, kind: str, cfg, corpus_rate: int, corpus_hop: int, T: int,
               required: bool = True) -> np.ndarray | None:
    """The render's bend row (T,) float32 semitones. Missing: a UserError when ``required`` (pointing at
    ``rtperformer data bends``), else None."""
    from rtperformer.learn.data.bends import load_bend

    if int(corpus_rate) != cfg.audio.sample_rate or int(corpus_hop) != cfg.audio.hop:
        if not required:
            return None
        raise UserError(f"the corpus's bend rows are at {corpus_rate} Hz / hop {corpus_hop}; this config needs "
                        f"{cfg.audio.sample_rate} / {cfg.audio.hop}")
    row = load_bend(piece_dir, kind)
    if row is None:
        if not required:
            return None
        raise UserError(f"no bend row for {piece_dir.name} ({kind}); add them with "
                        f"`rtperformer data bends --instrument {piece_dir.parent.name}`")
    if row.shape[0] != T:
        raise UserError(f"bend row of {piece_dir} ({kind}) has {row.shape[0]} frames, the render {T}; "
                        "run `rtperformer data bends` again")
    return row


def dewarp_targets(y: np.ndarray, bend: np.ndarray, cfg) -> np.ndarray:
    """Target frames y (n_bins, T) warped back by ``bend`` (T,) semitones (rtperformer.voice.audio_stage)."""
    from rtperformer.voice.audio_stage import warp_features

    return warp_features(y, -np.asarray(bend, np.float64), cfg.audio.power_scale)


def needs_positions(cfg) -> bool:
    return any(position_taus(cfg.model))


def position_cache(piece_dir: Path, kind: str, cfg, corpus_rate: int, enc: np.ndarray) -> np.ndarray:
    """uint8 (256, T) note-position counters of a piece's cached inputs (built on first use, memmapped)."""
    path = piece_dir / f"{kind}.pos-{_key(cfg, corpus_rate)}.npy"
    if not path.is_file():
        e = np.asarray(enc)
        _save_npy(path, positions_of(e[0:128], e[128:256].astype(np.float32) - 1.0))
    return np.load(path, mmap_mode="r")


def piece_cache(piece_dir: Path, kind: str, cfg, corpus_rate: int, need_audio: bool = False):
    """(inputs uint8 (385, T) memmap, features float16 (n_bins, T) memmap, audio or None).

    Builds both caches on first use. T = len(audio at cfg rate) // hop + 1.
    """
    key = _key(cfg, corpus_rate)
    feat_path = piece_dir / f"{kind}.feat-{key}.npy"
    in_path = piece_dir / f"{kind}.in-{key}.npy"
    audio = None
    if not (feat_path.is_file() and in_path.is_file()):
        from rtperformer.dsp.features import log_power

        audio = load_audio(piece_dir / f"{kind}.flac", cfg.audio.sample_rate)
        feats = log_power(audio, cfg.audio)
        T = feats.shape[1]
        rolls = load_rolls(piece_dir / f"{kind}_rolls.npz", cfg.audio.sample_rate, cfg.audio.hop, T)
        _save_npy(in_path, _encode_inputs(rolls))
        _save_npy(feat_path, feats.astype(np.float16))
    enc = np.load(in_path, mmap_mode="r")
    feats = np.load(feat_path, mmap_mode="r")
    if enc.shape[1] != feats.shape[1]:
        raise UserError(f"cache mismatch in {piece_dir} ({kind}); delete its *.npy files")
    if need_audio and audio is None:
        audio = load_audio(piece_dir / f"{kind}.flac", cfg.audio.sample_rate)
    return enc, feats, audio


class WindowDataset(_Base):
    """Map-style dataset of windows ``(x (C_in, clip_frames) float32, y (n_bins, clip_frames) float32)``.

    ``kinds``: renders to draw from (default cfg.data.kinds, e.g. expressive + flat); a piece without a
    kind is skipped for that kind. Windows shorter pieces would not fill are zero-padded (silence).
    ``len`` = number of window start positions; ``ds[i]`` is deterministic.
    """

    def __init__(self, corpus_dir, instrument: str, split: str, cfg, kinds=None, clip_frames: int | None = None):
        self.cfg = cfg
        self.instrument = instrument
        self.split = split
        self.clip = int(clip_frames or cfg.train.clip_frames)
        kinds = tuple(kinds or getattr(cfg.data, "kinds", ("expressive",)))
        man = load_manifest(corpus_dir, instrument)
        rate = int(man["sample_rate"])
        hop = int(man.get("hop", cfg.audio.hop))
        todo = [(p["id"], kind) for p in split_pieces(corpus_dir, instrument, split, cfg)
                for kind in kinds if kind in p.get("kinds", [])]
        self.dewarp = dewarps(cfg)

        def prepare(item):
            pdir = Path(corpus_dir) / instrument / item[0]
            enc, feats, _ = piece_cache(pdir, item[1], cfg, rate)
            pos = position_cache(pdir, item[1], cfg, rate, enc) if needs_positions(cfg) else None
            bend = bend_cache(pdir, item[1], cfg, rate, hop, feats.shape[1]) if needs_bend(cfg) else None
            return (item[0], item[1], enc, feats, pos, bend)

        # first use builds the caches: FFTs and FLAC decoding release the GIL, so threads help
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as ex:
            self.entries = list(ex.map(prepare, todo))  # (piece_id, kind, enc, feats, pos, bend), in split order
        counts = [max(1, e[3].shape[1] - self.clip + 1) for e in self.entries]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.frames = int(sum(e[3].shape[1] for e in self.entries))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int):
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        j = int(np.searchsorted(self._starts, i, side="right") - 1)
        _, _, enc, feats, pos, bend = self.entries[j]
        s = i - int(self._starts[j])
        b = None if bend is None else bend[s:s + self.clip]
        x = decode_inputs(np.asarray(enc[:, s:s + self.clip]), self.cfg.model,
                          None if pos is None else np.asarray(pos[:, s:s + self.clip]), b)
        y = np.asarray(feats[:, s:s + self.clip], dtype=np.float32)
        if self.dewarp:
            y = dewarp_targets(y, b, self.cfg)
        n = y.shape[1]
        if n < self.clip:
            x = np.pad(x, ((0, 0), (0, self.clip - n)))
            y = np.pad(y, ((0, 0), (0, self.clip - n)))
        return x, y

    def describe(self) -> dict:
        kinds: dict[str, float] = {}
        for _, k, _, f, _, _ in self.entries:
            kinds[k] = kinds.get(k, 0.0) + f.shape[1] / self.cfg.audio.frame_rate / 60.0
        return {"split": self.split, "pieces": len({e[0] for e in self.entries}), "windows": len(self),
                "minutes": {k: round(v, 2) for k, v in kinds.items()}, "clip_frames": self.clip}


def piece_arrays(corpus_dir, instrument: str, split: str, cfg, kind: str = "expressive"
                 ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Whole pieces of ``split`` rendered as ``kind``: (piece_id, x (C_in, T), y (n_bins, T), audio (N,)).

    x and y are float32 (y as rendered, never de-warped); audio is float32 at cfg.audio.sample_rate with
    T = N // hop + 1. Pieces without that render (e.g. deadpan exists for valid/test only) are skipped.
    """
    man = load_manifest(corpus_dir, instrument)
    rate = int(man["sample_rate"])
    hop = int(man.get("hop", cfg.audio.hop))
    for p in split_pieces(corpus_dir, instrument, split, cfg):
        if kind not in p.get("kinds", []):
            continue
        pdir = Path(corpus_dir) / instrument / p["id"]
        enc, feats, audio = piece_cache(pdir, kind, cfg, rate, need_audio=True)
        pos = position_cache(pdir, kind, cfg, rate, enc) if needs_positions(cfg) else None
        bend = bend_cache(pdir, kind, cfg, rate, hop, feats.shape[1]) if getattr(cfg.model, "bend_input", False) else None
        yield p["id"], decode_inputs(np.asarray(enc), cfg.model, pos, bend), np.asarray(feats, dtype=np.float32), audio


def piece_bend(corpus_dir, instrument: str, piece_id: str, cfg, kind: str = "expressive",
               required: bool = False) -> np.ndarray | None:
    """The bend row (T,) of one render, or None when the corpus has none (``required``: a UserError)."""
    man = load_manifest(corpus_dir, instrument)
    pdir = Path(corpus_dir) / instrument / piece_id
    with np.load(pdir / f"{kind}_rolls.npz") as z:
        T = int(z["roll"].shape[1])
    return bend_cache(pdir, kind, cfg, int(man["sample_rate"]), int(man.get("hop", cfg.audio.hop)), T, required)
