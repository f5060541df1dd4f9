"""The texture stage of the voice chain: noise under the model's harmonics (numpy only).

The models' audio comes out too clean, with almost no floor between the harmonics: an L1-trained model
averages away what its inputs cannot tell it (bow and breath noise), and the phase stage loses most of the
weak bins between the harmonics (their inconsistent frames cancel in the overlap-add; models/README.md,
"Texture"). :class:`NoiseLayer` puts the floor back as noise whose level follows the model's own
prediction, band by band::

    mag (n_bins, n) --phase--> spec (n_bins, n) frames t-d..t-d+n   (d: the phase stage's delay)
    P_b(t)      = mean over band b's bins of mag[:, t]^2            (the predicted power in band b)
    L_k(t)      = g_b * P_b(t) at band b's centre bin, linear in between  (:func:`level_map`)
    spec[k, t] += sqrt(L_k(t) / sum(w^2)) * Z[k, t]

``Z[:, t]`` is frame t of the Hann-windowed STFT (window w) of one running unit white noise (``hop`` new
samples a frame: consistent frames, E|Z|^2 = sum(w^2)). ``g_b`` is the table's ``gain_db``
(:class:`NoiseTable`, ``models/<name>/noise.json``, fitted from the corpus by bench/noise.py): the noise
power per bin at the band's centre relative to the band's mean predicted power, as the output analysed
again shows it.

Causal and without delay (frame t's noise comes from frame t's magnitude, held back by the phase stage's
own d frames to meet its spectrum); silent where the model is silent; seeded (``render.noise_seed`` and the
table's instrument), so the live chain and the offline render draw the same numbers frame by frame; no
allocation per hop once the step size is known. Added after the phase reconstruction, so the harmonics keep
their phase and the noise its own.

noise.json::

    {"format": "rtperformer-noise", "version": 1, "instrument": "violin",
     "sample_rate": 48000, "n_fft": 1024, "hop": 256,
     "band_edges_hz": [0, 150, ..., 24000],    # B + 1 increasing; the first 0, the last >= sample_rate/2
     "gain_db": [-32.1, ...],                  # B values in [-120, 20]
     "fit": {...}}                             # how it was fitted (not read)
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtperformer.dsp.features import hann
from rtperformer.errors import UserError

FORMAT = "rtperformer-noise"
VERSION = 1
FILE = "noise.json"
GAIN_RANGE_DB = (-120.0, 20.0)


@dataclass(frozen=True)
class NoiseTable:
    """Per-band noise levels of one model: ``gain_db[b]`` for bins ``starts[b] .. starts[b+1]-1``."""

    instrument: str
    sample_rate: int
    n_fft: int
    hop: int
    band_edges_hz: tuple[float, ...]
    gain_db: tuple[float, ...]
    source: str = ""

    def band_starts(self) -> np.ndarray:
        """First bin of each band (B,) int: bin k (at k*sample_rate/n_fft Hz) is in band b when
        edges[b] <= its frequency < edges[b+1]."""
        e = np.asarray(self.band_edges_hz[:-1], np.float64)
        return np.ceil(e * self.n_fft / self.sample_rate - 1e-9).astype(np.int64)

    def to_dict(self, fit: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "instrument": self.instrument,
                "sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop": self.hop,
                "band_edges_hz": [float(v) for v in self.band_edges_hz],
                "gain_db": [round(float(v), 2) for v in self.gain_db], "fit": fit or {}}


def check_table(t: NoiseTable, audio_cfg: Any) -> NoiseTable:
    """``t`` if it fits ``audio_cfg`` (sample_rate, n_fft, hop) and is well formed, else UserError."""
    where = t.source or "noise table"
    for key in ("sample_rate", "n_fft", "hop"):
        if int(getattr(t, key)) != int(getattr(audio_cfg, key)):
            raise UserError(f"{where} does not fit the model: {key} {getattr(t, key)}, the model's audio has "
                            f"{getattr(audio_cfg, key)} (refit it with bench/noise.py --fit)")
    e = np.asarray(t.band_edges_hz, np.float64)
    g = np.asarray(t.gain_db, np.float64)
    if e.ndim != 1 or e.size < 2 or g.shape != (e.size - 1,):
        raise UserError(f"{where}: needs B+1 band_edges_hz and B gain_db values, got {e.size} and {g.size}")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(g))):
        raise UserError(f"{where}: band_edges_hz and gain_db must be finite numbers")
    if e[0] != 0.0 or e[-1] < t.sample_rate / 2:
        raise UserError(f"{where}: band_edges_hz must start at 0 and reach sample_rate/2 ({t.sample_rate / 2:g} Hz)")
    s = t.band_starts()
    if np.any(np.diff(s) <= 0) or s[-1] >= t.n_fft // 2 + 1:
        raise UserError(f"{where}: every band must hold at least one of the model's bins "
                        f"({t.sample_rate / t.n_fft:g} Hz apart); band_edges_hz are too close")
    lo, hi = GAIN_RANGE_DB
    if g.min() < lo or g.max() > hi:
        raise UserError(f"{where}: gain_db must lie in [{lo:g}, {hi:g}] dB")
    return t


def load_noise_table(path: str | Path, audio_cfg: Any) -> NoiseTable:
    """Read and check a noise.json (plain JSON, nothing executed) against the model's ``audio_cfg``.
    Unreadable, malformed or not fitting -> UserError naming the file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"noise table {p} is not readable JSON: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise UserError(f"noise table {p} is not a {FORMAT} file (\"format\": \"{FORMAT}\" missing)")
    if d.get("version") != VERSION:
        raise UserError(f"noise table {p} has version {d.get('version')!r}; this rtperformer reads version {VERSION}")
    try:
        t = NoiseTable(instrument=str(d["instrument"]), sample_rate=int(d["sample_rate"]), n_fft=int(d["n_fft"]),
                       hop=int(d["hop"]), band_edges_hz=tuple(float(v) for v in d["band_edges_hz"]),
                       gain_db=tuple(float(v) for v in d["gain_db"]), source=str(p))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"noise table {p}: missing or malformed field ({type(exc).__name__}: {exc})") from None
    return check_table(t, audio_cfg)


def find_noise_table(model_dir: str | Path | None, audio_cfg: Any) -> NoiseTable | None:
    """``model_dir``/noise.json checked against ``audio_cfg``, or None when the model has none."""
    if model_dir is None:
        return None
    p = Path(model_dir) / FILE
    return load_noise_table(p, audio_cfg) if p.exists() else None


def noise_seed(seed: int, instrument: str) -> list[int]:
    """The generator's seed: ``render.noise_seed`` and the instrument (two instruments draw unlike noise)."""
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(instrument.encode())]


class NoiseLayer:
    """Adds the table's noise to phase-reconstructed spectra; see the module docstring.

    ``prepare(mag (n_bins, n))`` before the phase stage sees ``mag``, ``add(spec (n_bins, n) complex64)``
    after (in place). ``delay_frames``: the phase stage's delay d.

    The noise frames are the Hann-windowed STFT frames of one running white-noise signal (``hop`` new
    samples per frame), so they are consistent like a real signal's: the iSTFT gives them back as that
    noise filtered by the per-bin levels, at their level, whatever the synthesis window (a trimmed window,
    ``serve.istft_trim_hops``, would splatter independent random frames over the whole spectrum).
    """

    def __init__(self, table: NoiseTable, audio_cfg: Any, delay_frames: int = 0, seed: int = 0):
        check_table(table, audio_cfg)
        self.table = table
        self.n_bins = int(audio_cfg.n_bins)
        self.n_fft = int(audio_cfg.n_fft)
        self.hop = int(audio_cfg.hop)
        self.delay = int(delay_frames)
        self.seed = noise_seed(seed, table.instrument)
        self.starts = table.band_starts()
        self.window = hann(self.n_fft)
        # a frame of unit white noise has E|Z_k|^2 = sum(window^2): divide it out
        wpow = float(np.sum(self.window.astype(np.float64) ** 2))
        self.band_gain, self.i0, self.i1, self.w0, self.w1 = level_map(table, self.n_bins, wpow)
        self.keep = self.n_fft - self.hop  # noise samples carried from frame to frame
        self._n = -1
        self._sig = np.empty(self.keep, np.float32)
        self.reset()

    def reset(self, reseed: bool = True) -> None:
        """A new stream: no earlier frames; the generator from its seed again, or (``reseed`` False) going
        on where it was (a live voice waking for a new phrase does not replay the last one's noise)."""
        if reseed or not hasattr(self, "rng"):
            self.rng = np.random.default_rng(self.seed)
        self.rng.standard_normal(dtype=np.float32, out=self._sig[: self.keep])
        if self._n > 0:
            self._bands[:] = 0.0

    def _buffers(self, n: int) -> None:
        carried = self._sig[: self.keep].copy()
        bands = self._bands[:, : self.delay].copy() if self._n > 0 and self.delay else None
        self._n = n
        self._pw = np.empty((self.n_bins, n), np.float32)
        self._bands = np.zeros((self.starts.size, self.delay + n), np.float32)
        if bands is not None:
            self._bands[:, : self.delay] = bands
        self._amp = np.empty((self.n_bins, n), np.float32)
        self._amp1 = np.empty((self.n_bins, n), np.float32)
        self._level = np.empty((self.starts.size, n), np.float32)
        self._sig = np.empty(self.keep + n * self.hop, np.float32)
        self._sig[: self.keep] = carried
        self._frames = np.empty((n, self.n_fft), np.float32)
        self._fx = np.empty((n, self.n_bins), np.complex64)

    def prepare(self, mag: np.ndarray) -> None:
        """Band powers of the frames the phase stage is about to take, mag (n_bins, n) float32."""
        n = mag.shape[1]
        if n != self._n:
            self._buffers(n)
        np.multiply(mag, mag, out=self._pw)
        np.add.reduceat(self._pw, self.starts, axis=0, out=self._bands[:, self.delay :])

    def add(self, spec: np.ndarray) -> np.ndarray:
        """spec (n_bins, n) complex64, the phase stage's frames for the magnitudes d frames before the last
        :meth:`prepare`'s: add their noise in place and return spec."""
        n = spec.shape[1]
        hop, keep, sig = self.hop, self.keep, self._sig
        bands = self._bands
        lev, a, b = self._level, self._amp, self._amp1
        np.multiply(bands[:, :n], self.band_gain, out=lev)
        np.take(lev, self.i0, axis=0, out=a)
        np.multiply(a, self.w0, out=a)
        np.take(lev, self.i1, axis=0, out=b)
        np.multiply(b, self.w1, out=b)
        np.add(a, b, out=a)
        np.sqrt(a, out=a)
        self.rng.standard_normal(dtype=np.float32, out=sig[keep:])
        frames = np.lib.stride_tricks.as_strided(sig, (n, self.n_fft), (hop * sig.strides[0], sig.strides[0]),
                                                 writeable=False)
        np.multiply(frames, self.window, out=self._frames)
        np.fft.rfft(self._frames, axis=1, out=self._fx)
        z = self._fx.T  # (n_bins, n)
        np.multiply(z, a, out=z)
        np.add(spec, z, out=spec)
        sig[:keep] = sig[n * hop : n * hop + keep]
        if self.delay:
            bands[:, : self.delay] = bands[:, n : n + self.delay]
        return spec


def level_map(table: NoiseTable, n_bins: int, unit: float = 1.0):
    """How band sums become per-bin noise power: (band_gain (B, 1), i0, i1 (n_bins,), w0, w1 (n_bins, 1)).

    Band b's level is ``g_b`` times its mean power (``band_gain`` = g_b / bins in b / ``unit`` times the
    band's sum); each bin's power is the linear interpolation between the levels at the two nearest band
    centres (flat below the first and above the last centre): a smooth noise envelope, without steps at
    band edges (which would ring in time and spread over the spectrum with a trimmed synthesis window)."""
    starts = table.band_starts()
    ends = np.append(starts[1:], n_bins)
    counts = ends - starts
    g = 10.0 ** (np.asarray(table.gain_db, np.float64) / 10.0)
    band_gain = (g / counts / unit).astype(np.float32)[:, None]
    centres = (starts + ends - 1) / 2.0
    k = np.arange(n_bins, dtype=np.float64)
    i0 = np.clip(np.searchsorted(centres, k, side="right") - 1, 0, centres.size - 1)
    i1 = np.minimum(i0 + 1, centres.size - 1)
    span = np.where(i1 > i0, centres[i1] - centres[i0], 1.0)
    w1 = np.clip((k - centres[i0]) / span, 0.0, 1.0) * (i1 > i0)
    return band_gain, i0, i1, (1.0 - w1).astype(np.float32)[:, None], w1.astype(np.float32)[:, None]


def noise_power_db(table: NoiseTable, power: np.ndarray) -> np.ndarray:
    """What the table puts in the audio, analysed again: noise power per bin (dB) for predicted power
    frames (n_bins, T) -> (n_bins, T). For tests and the fit's checks."""
    band_gain, i0, i1, w0, w1 = level_map(table, power.shape[0])
    lev = np.add.reduceat(power.astype(np.float64), table.band_starts(), axis=0) * band_gain
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(lev[i0] * w0 + lev[i1] * w1)


__all__ = ["NoiseTable", "NoiseLayer", "load_noise_table", "find_noise_table", "check_table", "level_map", "noise_power_db",
           "FILE", "FORMAT", "VERSION"]
