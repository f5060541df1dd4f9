"""Training windows cut on the fly from per-piece caches (no precomputed overlapping windows).

For each piece and render kind the corpus holds ``<kind>.flac`` and ``<kind>_rolls.npz``. The first use
under an audio config writes two compact caches next to them (atomically, safe with DataLoader
workers) and memory-maps them afterwards:

- ``<kind>.feat-<key>.npy``  float16 (n_bins, T): log1p(power_scale*|S|^2) of the audio
  (resampled to cfg.audio.sample_rate when the corpus rate differs), ``rtperformer.dsp.features.log_power``.
- ``<kind>.in-<key>.npy``    uint8 (385, T): roll, onoff+1, velocity*127 (128 rows each), CC11 (1 row).
- ``<kind>.pos-<key>.npy``   uint8 (256, T): note-position counters (rtperformer.roll.rolls.positions_of), written
  only for models with note-position inputs (``model.onset_decay_frames`` / ``release_decay_frames``).

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
from rtperformer.roll.rolls import position_channels, position_taus, positions_of

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


def decode_inputs(enc: np.ndarray, model_cfg, pos: np.ndarray | None = None) -> np.ndarray:
    """uint8 (385, T) cache (+ uint8 (256, T) position counters, needed when ``model_cfg`` has note-position
    inputs) -> x (C_in, T) float32 in the stack_inputs layout for ``model_cfg``."""
    parts = [enc[0:128].astype(np.float32), enc[128:256].astype(np.float32) - 1.0]
    if model_cfg.velocity:
        parts.append(enc[256:384].astype(np.float32) * np.float32(1.0 / 127.0))
    if model_cfg.expression:
        parts.append(enc[384:385].astype(np.float32) * np.float32(1.0 / 127.0))
    if any(position_taus(model_cfg)):
        if pos is None:
            raise ValueError("decode_inputs: this model has note-position inputs; pass the position counters")
        parts.extend(position_channels(np.asarray(pos), model_cfg))
    return np.concatenate(parts, axis=0)


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
        todo = [(p["id"], kind) for p in split_pieces(corpus_dir, instrument, split, cfg)
                for kind in kinds if kind in p.get("kinds", [])]

        def prepare(item):
            pdir = Path(corpus_dir) / instrument / item[0]
            enc, feats, _ = piece_cache(pdir, item[1], cfg, rate)
            pos = position_cache(pdir, item[1], cfg, rate, enc) if needs_positions(cfg) else None
            return (item[0], item[1], enc, feats, pos)

        # first use builds the caches: FFTs and FLAC decoding release the GIL, so threads help
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as ex:
            self.entries = list(ex.map(prepare, todo))  # (piece_id, kind, enc, feats, pos), in split order
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
        _, _, enc, feats, pos = self.entries[j]
        s = i - int(self._starts[j])
        x = decode_inputs(np.asarray(enc[:, s:s + self.clip]), self.cfg.model,
                          None if pos is None else np.asarray(pos[:, s:s + self.clip]))
        y = np.asarray(feats[:, s:s + self.clip], dtype=np.float32)
        n = y.shape[1]
        if n < self.clip:
            x = np.pad(x, ((0, 0), (0, self.clip - n)))
            y = np.pad(y, ((0, 0), (0, self.clip - n)))
        return x, y

    def describe(self) -> dict:
        kinds: dict[str, float] = {}
        for _, k, _, f, _ in self.entries:
            kinds[k] = kinds.get(k, 0.0) + f.shape[1] / self.cfg.audio.frame_rate / 60.0
        return {"split": self.split, "pieces": len({e[0] for e in self.entries}), "windows": len(self),
                "minutes": {k: round(v, 2) for k, v in kinds.items()}, "clip_frames": self.clip}


def piece_arrays(corpus_dir, instrument: str, split: str, cfg, kind: str = "expressive"
                 ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Whole pieces of ``split`` rendered as ``kind``: (piece_id, x (C_in, T), y (n_bins, T), audio (N,)).

    x and y are float32; audio is float32 at cfg.audio.sample_rate with T = N // hop + 1. Pieces without
    that render (e.g. deadpan exists for valid/test only) are skipped.
    """
    man = load_manifest(corpus_dir, instrument)
    rate = int(man["sample_rate"])
    for p in split_pieces(corpus_dir, instrument, split, cfg):
        if kind not in p.get("kinds", []):
            continue
        pdir = Path(corpus_dir) / instrument / p["id"]
        enc, feats, audio = piece_cache(pdir, kind, cfg, rate, need_audio=True)
        pos = position_cache(pdir, kind, cfg, rate, enc) if needs_positions(cfg) else None
        yield p["id"], decode_inputs(np.asarray(enc), cfg.model, pos), np.asarray(feats, dtype=np.float32), audio
