"""Evaluation metrics (numpy only): masks from the input rolls, spectral and audio numbers, pooling.

Masks come from the input rolls x (C_in, T): roll = x[0:128], onoff = x[128:256].

- ``lsd_db``: log-spectral distance, per frame sqrt(mean over bins of (dB_ref - dB_est)^2), averaged over
  note frames; power in dB floored at ``NOISE_FLOOR_DB`` (-80 dB) below the target clip's peak bin power,
  the same floor for both sides. ``lsd_attack_db`` over the first ``ATTACK_S`` (60 ms) of each note
  (from ``pre`` = (n_fft//2)//hop frames before the onset frame, where centred frames first see the
  note), ``lsd_sustain_db`` over the other note frames, ``lsd_all_db`` over every frame.
  For the model these use its frames directly; ``lsd_audio_db`` / ``sc_audio`` re-analyse its audio
  (so they include the phase reconstruction's error).
- ``sc``: spectral convergence ||M_ref - M_est||_F / ||M_ref||_F on magnitudes over all frames.
- ``level_db``: 10 log10(mean power per note frame of the estimate / the same of the target), each over
  its own note frames.
- ``sharpness_db``: mean over sustained monophonic frames of (peak bin dB - median bin dB) in
  ``SHARPNESS_BAND_HZ`` of the audio's spectrum: how harmonic (peaky) rather than blurred a spectrum is;
  given for the target too. ``sharpness_frames_db``: the same on the model's frames (before phase).
- ``pitch``: librosa.pyin on the audio (resampled to 16 kHz) in sustained monophonic frames, against the
  score pitch of the input roll. The corpus's pitch bends are vibrato (zero-mean around the score pitch),
  so frame errors include the vibrato depth (see the target's own row) and per-note medians do not.
  ``voiced``: share of those frames pyin calls voiced; ``within_50c`` / ``median_abs_cents`` over voiced
  frames; ``notes_within_50c``: share of notes whose median voiced error is within 50 cents.
- ``onset``: spectral-flux onsets of the audio matched to score onsets (onoff == +1) within ±100 ms:
  ``matched`` share, ``median_abs_ms``, ``median_ms`` (signed: positive = late).

Summary numbers (:class:`Pool`) pool frames (and notes) over all pieces. The run over a corpus split is
:mod:`rtperformer.learn.evaluate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NOISE_FLOOR_DB = -80.0
ATTACK_S = 0.060
PITCH_TOL_CENTS = 50.0
ONSET_WINDOW_S = 0.100
SHARPNESS_BAND_HZ = (50.0, 8000.0)
PYIN_SR = 16000


# ----------------------------------------------------------------------------------------------------
# masks from the input rolls


@dataclass
class NoteRegions:
    """Frame masks (T,) bool and score pitch (T,) float (MIDI, nan where not monophonic)."""

    notes: np.ndarray  # a note is on (or its attack region has begun)
    attack: np.ndarray  # first ATTACK_S of a note (plus the centred-frame pre-roll)
    sustain: np.ndarray  # note frames that are not attack frames
    mono_sustain: np.ndarray  # sustain frames with exactly one note on
    score_midi: np.ndarray  # the single sounding pitch where exactly one note is on, else nan
    onsets: np.ndarray  # onset frame indices (sorted)
    note_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (T,) run id of mono notes, -1 else


def note_regions(x: np.ndarray, n_fft: int, hop: int, frame_rate: float) -> NoteRegions:
    """Masks for x (C_in, T) in the model's input layout (roll 0:128, onoff 128:256)."""
    roll = x[0:128] > 0.5
    onoff = x[128:256]
    T = x.shape[-1]
    count = roll.sum(0)
    on = count > 0
    pre = (n_fft // 2) // hop
    post = max(1, int(round(ATTACK_S * frame_rate)))
    onset_frames = np.unique(np.nonzero(onoff > 0.5)[1])
    attack = np.zeros(T, bool)
    for t in onset_frames:
        attack[max(0, t - pre) : min(T, t + post)] = True
    notes = on | attack
    sustain = on & ~attack
    mono = count == 1
    score = np.full(T, np.nan)
    idx = np.argmax(roll, axis=0)
    score[mono] = idx[mono]
    mono_sustain = sustain & mono
    # note ids: runs of the same mono pitch, broken at onsets
    ids = np.full(T, -1, int)
    cur, prev_p = -1, None
    is_onset = np.zeros(T, bool)
    is_onset[onset_frames] = True
    for t in range(T):
        if not mono[t]:
            prev_p = None
            continue
        if prev_p is None or idx[t] != prev_p or (is_onset[t] and roll[idx[t], t]):
            cur += 1
        prev_p = idx[t]
        ids[t] = cur
    return NoteRegions(notes, attack, sustain, mono_sustain, score, onset_frames, ids)


# ----------------------------------------------------------------------------------------------------
# spectral metrics (power spectra (n_bins, T), linear)


def power_from_features(features: np.ndarray, power_scale: float) -> np.ndarray:
    """|S|^2 (n_bins, T) float64 from log1p(power_scale*|S|^2) features (:func:`rtperformer.dsp.to_power`)."""
    from rtperformer.dsp import to_power

    return to_power(features, power_scale, np.float64)


def floor_power(ref_power: np.ndarray, floor_db: float = NOISE_FLOOR_DB) -> float:
    """The noise floor as a power: ``floor_db`` dB below the peak bin of ``ref_power``."""
    peak = float(np.max(ref_power)) if ref_power.size else 0.0
    return max(peak, 1e-20) * 10.0 ** (floor_db / 10.0)


def lsd_frames(ref: np.ndarray, est: np.ndarray, floor: float) -> np.ndarray:
    """Per-frame log-spectral distance in dB (T,) between power spectra (n_bins, T)."""
    a = 10.0 * np.log10(np.maximum(ref, floor))
    b = 10.0 * np.log10(np.maximum(est, floor))
    return np.sqrt(np.mean((a - b) ** 2, axis=0))


def spectral_convergence(ref_power: np.ndarray, est_power: np.ndarray) -> float:
    """||M_ref - M_est||_F / ||M_ref||_F on magnitudes (sqrt of the powers)."""
    a, b = np.sqrt(ref_power), np.sqrt(est_power)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-20))


def sharpness_frames(power: np.ndarray, floor: float, bins: slice) -> np.ndarray:
    """Per-frame (T,) peak-minus-median level in dB over ``bins``."""
    db = 10.0 * np.log10(np.maximum(power[bins], floor))
    return db.max(axis=0) - np.median(db, axis=0)


# ----------------------------------------------------------------------------------------------------
# audio metrics


def pitch_track(audio: np.ndarray, sample_rate: int, frame_times: np.ndarray, fmin: float, fmax: float) -> np.ndarray:
    """f0 in Hz at ``frame_times`` (T,) by librosa.pyin on audio resampled to 16 kHz (voicing and coarse
    f0), refined by YIN where the two agree; nan = unvoiced."""
    import librosa
    import soxr

    y = np.asarray(audio, np.float64)
    sr = sample_rate
    if sr != PYIN_SR:
        y = soxr.resample(y, sr, PYIN_SR)
        sr = PYIN_SR
    hop = 160
    frame_length = 1024
    fmin = max(fmin, 2.2 * sr / frame_length)
    fmax = min(fmax, sr / 2 - 100)
    if len(y) < frame_length or fmin >= fmax:
        return np.full(len(frame_times), np.nan)
    f0, voiced, _ = librosa.pyin(y, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop)
    f0 = np.where(voiced, f0, np.nan)
    # pyin's f0 lies on a 10-cent grid; YIN's parabolic interpolation refines it where both agree (±50 c)
    fine = librosa.yin(y, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop)[: len(f0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = np.abs(1200.0 * np.log2(fine / f0)) <= 50.0
    f0 = np.where(agree, fine, f0)
    k = np.clip(np.round(frame_times * sr / hop).astype(int), 0, len(f0) - 1)
    return f0[k]


def cents_error(f0: np.ndarray, score_midi: np.ndarray) -> np.ndarray:
    """1200 log2(f0 / f_score) (nan where either is nan)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = 440.0 * 2.0 ** ((score_midi - 69.0) / 12.0)
        return 1200.0 * np.log2(f0 / ref)


def onset_strength(power: np.ndarray) -> np.ndarray:
    """Spectral flux (T,): sum over bins of the positive dB increase, frame to frame."""
    db = 10.0 * np.log10(np.maximum(power, floor_power(power)))
    flux = np.maximum(np.diff(db, axis=1, prepend=db[:, :1]), 0.0).sum(axis=0)
    return flux


def detect_onsets(power: np.ndarray, frame_rate: float, min_gap_s: float = 0.05) -> np.ndarray:
    """Onset frames (sorted): local maxima of :func:`onset_strength` above median + 2*MAD,
    at least ``min_gap_s`` apart."""
    s = onset_strength(power)
    if s.size < 3:
        return np.zeros(0, int)
    med = np.median(s)
    thr = med + 2.0 * np.median(np.abs(s - med)) + 1e-9
    peaks = np.nonzero((s[1:-1] > thr) & (s[1:-1] >= s[:-2]) & (s[1:-1] > s[2:]))[0] + 1
    gap = max(1, int(round(min_gap_s * frame_rate)))
    out: list[int] = []
    for p in peaks:
        if out and p - out[-1] < gap:
            if s[p] > s[out[-1]]:
                out[-1] = p
            continue
        out.append(int(p))
    return np.asarray(out, int)


def onset_errors(detected: np.ndarray, score: np.ndarray, frame_rate: float, window_s: float = ONSET_WINDOW_S) -> np.ndarray:
    """Signed errors in ms (detected - score) for score onsets with a detection within ``window_s``;
    nan for unmatched ones. Inputs: frame indices."""
    errs = np.full(len(score), np.nan)
    if len(detected) == 0:
        return errs
    for i, s in enumerate(score):
        j = int(np.argmin(np.abs(detected - s)))
        d = (detected[j] - s) / frame_rate
        if abs(d) <= window_s:
            errs[i] = 1000.0 * d
    return errs


# ----------------------------------------------------------------------------------------------------
# accumulation over pieces


class Pool:
    """Pools one system's per-frame numbers over pieces; :meth:`summary` gives the JSON numbers."""

    def __init__(self) -> None:
        self.lists: dict[str, list[np.ndarray]] = {}
        self.sums: dict[str, float] = {}

    def add(self, key: str, values: np.ndarray) -> None:
        self.lists.setdefault(key, []).append(np.asarray(values, np.float64).ravel())

    def add_sum(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def cat(self, key: str) -> np.ndarray:
        return np.concatenate(self.lists[key]) if key in self.lists else np.zeros(0)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def mean(key: str) -> float | None:
            v = self.cat(key)
            return _num(np.mean(v)) if v.size else None

        for key in ("lsd", "lsd_attack", "lsd_sustain", "lsd_all", "lsd_audio"):
            if key in self.lists:
                out[f"{key}_db"] = mean(key)
        for key, (num, den) in {"sc": ("sc_num", "sc_den"), "sc_audio": ("sca_num", "sca_den")}.items():
            if den in self.sums:
                out[key] = _num(math.sqrt(self.sums[num]) / max(math.sqrt(self.sums[den]), 1e-20))
        if "pow_est" in self.sums:
            est = self.sums["pow_est"] / max(self.sums["n_est"], 1.0)
            ref = self.sums["pow_ref"] / max(self.sums["n_ref"], 1.0)
            out["level_db"] = _num(10 * math.log10(max(est, 1e-30) / max(ref, 1e-30)))
        if "sharpness" in self.lists:
            out["sharpness_db"] = mean("sharpness")
        if "sharpness_frames" in self.lists:
            out["sharpness_frames_db"] = mean("sharpness_frames")
        if "cents" in self.lists:
            c = self.cat("cents")
            voiced = c[np.isfinite(c)]
            notes = self.cat("note_cents")
            notes = notes[np.isfinite(notes)]
            out["pitch"] = {
                "frames": int(c.size),
                "voiced": _num(voiced.size / c.size) if c.size else None,
                "within_50c": _num(np.mean(np.abs(voiced) <= PITCH_TOL_CENTS)) if voiced.size else None,
                "median_abs_cents": _num(np.median(np.abs(voiced))) if voiced.size else None,
                "notes": int(notes.size),
                "notes_within_50c": _num(np.mean(np.abs(notes) <= PITCH_TOL_CENTS)) if notes.size else None,
                "note_median_abs_cents": _num(np.median(np.abs(notes))) if notes.size else None,
            }
        if "onset_ms" in self.lists:
            e = self.cat("onset_ms")
            m = e[np.isfinite(e)]
            out["onset"] = {
                "onsets": int(e.size),
                "matched": _num(m.size / e.size) if e.size else None,
                "median_abs_ms": _num(np.median(np.abs(m))) if m.size else None,
                "median_ms": _num(np.median(m)) if m.size else None,
            }
        return out


def _num(v: float) -> float | None:
    v = float(v)
    return round(v, 4) if math.isfinite(v) else None
