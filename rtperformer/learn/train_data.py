"""Training data: endless batches of windows, the fixed validation windows, and a synthetic corpus.

Windows are ``(x (C_in, T), y (n_bins, T))`` float32: model input rolls and log1p-power target frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from rtperformer.config import Config
from rtperformer.errors import UserError

Window = tuple[Any, Any]  # (x (C_in, T), y (n_bins, T)) as numpy arrays or tensors


def as_tensor(a: Any) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    return t.float()


def batches(dataset: Any, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches ``(x (B, C_in, T), y (B, n_bins, T))`` of windows from ``dataset``.

    A map-style dataset (``__len__`` + ``__getitem__``) is sampled with replacement by a generator seeded
    with ``seed``; anything else is iterated (and restarted when it ends).
    """
    gen = torch.Generator().manual_seed(seed)
    mapstyle = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__") and not isinstance(
        dataset, torch.utils.data.IterableDataset
    )
    if mapstyle:
        n = len(dataset)
        if n == 0:
            raise UserError("the training split has no windows (is the corpus built? `rtperformer data build`)")
        while True:
            idx = torch.randint(n, (batch_size,), generator=gen).tolist()
            items = [dataset[i] for i in idx]
            yield torch.stack([as_tensor(x) for x, _ in items]), torch.stack([as_tensor(y) for _, y in items])
    while True:
        xs, ys = [], []
        got_any = False
        for x, y in dataset:
            got_any = True
            xs.append(as_tensor(x))
            ys.append(as_tensor(y))
            if len(xs) == batch_size:
                yield torch.stack(xs), torch.stack(ys)
                xs, ys = [], []
        if not got_any:
            raise UserError("the training split has no windows (is the corpus built? `rtperformer data build`)")


def cut_windows(pieces: Iterable[tuple[Any, Any]], clip_frames: int, max_windows: int) -> list[Window]:
    """Non-overlapping ``clip_frames`` windows of each ``(x (C_in, T), y (n_bins, T))`` piece, in order;
    when there are more than ``max_windows``, an evenly spread subset. A piece shorter than one window
    gives one short window."""
    windows: list[Window] = []
    for x, y in pieces:
        T = x.shape[-1]
        if T < clip_frames:
            windows.append((x, y))
            continue
        for s in range(0, T - clip_frames + 1, clip_frames):
            windows.append((x[:, s : s + clip_frames], y[:, s : s + clip_frames]))
    if max_windows > 0 and len(windows) > max_windows:
        keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in keep]
    return windows


def default_data(cfg: Config) -> tuple[Any, list[Window], dict[str, Any]]:
    """(train dataset, valid windows, data description) from the corpus named by ``cfg.data``."""
    from rtperformer.learn.data.dataset import WindowDataset, dewarp_targets, dewarps, piece_arrays, piece_bend

    corpus, inst = cfg.data.corpus_dir, cfg.data.instrument
    if not Path(corpus, inst).is_dir():
        raise UserError(f"no corpus at {Path(corpus, inst)}; build it with `rtperformer data build --instrument {inst}`")
    train_ds = WindowDataset(corpus, inst, "train", cfg)
    valid_pieces = []
    valid_frames = 0
    ids = []
    for piece_id, x, y, _audio in piece_arrays(corpus, inst, "valid", cfg):
        if dewarps(cfg):  # validate against what training fits: the unbent targets
            y = dewarp_targets(y, piece_bend(corpus, inst, piece_id, cfg, required=True), cfg)
        valid_pieces.append((x, y))
        valid_frames += x.shape[-1]
        ids.append(piece_id)
    if not valid_pieces:
        raise UserError(f"the valid split of {inst} is empty; check {cfg.data.split_file or 'configs/splits'}")
    valid = cut_windows(valid_pieces, cfg.train.clip_frames, cfg.train.valid_windows)
    desc: dict[str, Any] = {
        "corpus_dir": corpus,
        "instrument": inst,
        "split_file": cfg.data.split_file,
        "valid_pieces": ids,
        "valid_minutes": round(valid_frames / cfg.audio.frame_rate / 60, 2),
        "valid_windows": len(valid),
        "targets": "de-warped by the corpus's bend rows" if dewarps(cfg) else "as rendered",
    }
    for attr in ("describe", "description"):
        extra = getattr(train_ds, attr, None)
        if callable(extra):
            extra = extra()
        if isinstance(extra, dict):
            desc["train"] = extra
            break
    manifest = Path(corpus, inst, "manifest.json")
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
            desc["manifest"] = {k: m[k] for k in ("sample_rate", "soundfont", "seed") if k in m}
        except (ValueError, OSError):
            pass
    return train_ds, valid, desc


class SyntheticWindows:
    """A learnable toy corpus for smoke tests and DDP checks (no audio, no FluidSynth).

    Iterating yields endless ``(x (C_in, T), y (n_bins, T))`` float32 windows: a random monophonic melody
    in the model's input layout (:func:`rtperformer.roll.rolls.stack_inputs`: roll, onoff, velocity, expression
    as the model config asks) and, as
    target, ``log1p(power_scale * P)`` of a harmonic comb at each note's pitch that decays after the onset.
    """

    def __init__(self, cfg: Config, seed: int = 0, low: int = 55, high: int = 88):
        self.cfg, self.seed, self.low, self.high = cfg, seed, low, high
        self._rng = np.random.default_rng(seed)

    def channels(self) -> int:
        from rtperformer.roll.rolls import input_channels

        return input_channels(self.cfg.model)

    def window(self, rng: np.random.Generator, T: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        a, m = self.cfg.audio, self.cfg.model
        T = T or self.cfg.train.clip_frames
        roll = np.zeros((128, T), np.float32)
        onoff = np.zeros((128, T), np.float32)
        vel = np.zeros((128, T), np.float32)
        y = np.zeros((a.n_bins, T), np.float32)
        freqs = np.arange(a.n_bins) * a.sample_rate / a.n_fft
        t = 0
        while t < T:
            dur = int(rng.integers(4, 24))
            rest = int(rng.integers(0, 4))
            p = int(rng.integers(self.low, self.high))
            v = float(rng.uniform(0.4, 1.0))
            e = min(T, t + dur)
            roll[p, t:e] = 1
            onoff[p, t] = 1
            if e < T:
                onoff[p, e] = -1
            vel[p, t:e] = v
            f0 = 440.0 * 2 ** ((p - 69) / 12)
            comb = np.zeros(a.n_bins, np.float32)
            for h in range(1, 8):
                comb += (v / h) ** 2 * np.exp(-0.5 * ((freqs - h * f0) / (a.sample_rate / a.n_fft)) ** 2)
            decay = np.exp(-np.arange(e - t) / 12.0).astype(np.float32)
            y[:, t:e] = comb[:, None] * (0.3 + decay)[None, :] * 100.0
            t = e + rest
        parts = [roll, onoff]
        if m.velocity:
            parts.append(vel)
        if m.expression:
            parts.append(np.ones((1, T), np.float32))
        from rtperformer.roll.rolls import position_channels, positions_of

        parts.extend(position_channels(positions_of(roll, onoff), m))
        if getattr(m, "bend_input", False):
            parts.append(np.zeros((1, T), np.float32))  # no bend in the toy corpus
        x = np.concatenate(parts, 0)
        return x, np.log1p(a.power_scale * y).astype(np.float32)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.window(self._rng)

    def valid(self, n: int) -> list[Window]:
        """``n`` fixed windows (their own seed, independent of the training stream)."""
        rng = np.random.default_rng(10_000 + self.seed)
        return [self.window(rng) for _ in range(n)]
