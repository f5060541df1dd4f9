"""Evaluation on a corpus split: the model and the plain FluidSynth render, each against the expressive target.

Per piece of the split, three signals share one frame grid (the model's audio config, centred frames):
``target`` (the expressive render the model was trained to imitate), ``model`` (the model's frames for
the target's input rolls, and the audio made from them by the voice chain's offline audio stage, as
``render`` makes it: :func:`synthesize`), and
the baselines, FluidSynth renders of the same score from the corpus: ``deadpan`` (the score as written:
metronomic time, fixed velocity, no CC11, no vibrato) and ``flat`` (the target's own performance with
CC11 fixed: same timing, so it is frame-aligned with the target). Deadpan timing differs from the target,
so its frame-by-frame numbers (LSD, SC) are reported but flagged ``aligned: false``; its pitch, onset,
sharpness and level numbers use its own rolls and are comparable.

Metrics (all in numpy; masks come from the input rolls x (C_in, T): roll = x[0:128], onoff = x[128:256]):

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

Summary numbers pool frames (and notes) over all pieces.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from rtperformer.config import Config
from rtperformer.errors import UserError
from rtperformer.atomic import atomic_write

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


# ----------------------------------------------------------------------------------------------------
# one piece


@dataclass
class Piece:
    """One evaluation item on the model's frame grid.

    x (C_in, T) input rolls of the target; target_features (n_bins, T); target_audio (N,);
    model_features (n_bins, T) or None; model_audio (N,) or None; baselines: kind -> (x (C_in, T') its
    own rolls, features (n_bins, T'), audio (N',)).
    """

    piece_id: str
    x: np.ndarray
    target_features: np.ndarray
    target_audio: np.ndarray
    model_features: np.ndarray | None = None
    model_audio: np.ndarray | None = None
    baselines: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def score_piece(piece: Piece, cfg: Config, pools: dict[str, Pool], pitch: bool = True) -> dict[str, Any]:
    """Add ``piece``'s numbers to ``pools`` (keys target, model, and each baseline kind) and return the
    piece's own summary."""
    a = cfg.audio
    fr = a.frame_rate
    T = piece.x.shape[-1]
    regions = note_regions(piece.x, a.n_fft, a.hop, fr)
    ref = power_from_features(piece.target_features[:, :T], a.power_scale)
    floor = floor_power(ref)
    freqs = np.arange(a.n_bins) * a.sample_rate / a.n_fft
    band = np.nonzero((freqs >= SHARPNESS_BAND_HZ[0]) & (freqs <= SHARPNESS_BAND_HZ[1]))[0]
    bins = slice(int(band[0]), int(band[-1]) + 1) if band.size else slice(0, a.n_bins)
    sounding = np.isfinite(regions.score_midi)
    fmin = 440.0 * 2 ** ((np.nanmin(regions.score_midi) - 2 - 69) / 12) if sounding.any() else 50.0
    fmax = 440.0 * 2 ** ((np.nanmax(regions.score_midi) + 2 - 69) / 12) if sounding.any() else 2000.0
    result: dict[str, Any] = {"id": piece.piece_id, "seconds": round(T / fr, 2)}

    def audio_metrics(pool: Pool, audio: np.ndarray, power: np.ndarray, reg: NoteRegions) -> None:
        pool.add("sharpness", sharpness_frames(power, floor, bins)[reg.mono_sustain])
        det = detect_onsets(power, fr)
        pool.add("onset_ms", onset_errors(det, reg.onsets, fr))
        if pitch and reg.mono_sustain.any():
            times = np.arange(power.shape[1]) * a.hop / a.sample_rate
            f0 = pitch_track(audio, a.sample_rate, times, fmin, fmax)
            c = cents_error(f0, reg.score_midi[: len(f0)])[reg.mono_sustain[: len(f0)]]
            pool.add("cents", c)
            ids = reg.note_ids[: len(f0)][reg.mono_sustain[: len(f0)]]
            note_meds = [np.nanmedian(c[ids == i]) if np.isfinite(c[ids == i]).any() else np.nan for i in np.unique(ids)]
            pool.add("note_cents", np.asarray(note_meds, np.float64))

    def spectral(pool: Pool, est: np.ndarray, prefix: str = "", own: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Frame-aligned numbers of est (n_bins, T) vs the target; the level uses ``own`` = (power, note
        mask) of the system's own, possibly differently timed, frames when given."""
        d = lsd_frames(ref, est, floor)
        level_power, est_notes = own if own is not None else (est, regions.notes)
        if prefix:
            pool.add("lsd_audio", d[regions.notes])
            pool.add_sum("sca_num", float(np.sum((np.sqrt(ref) - np.sqrt(est)) ** 2)))
            pool.add_sum("sca_den", float(np.sum(ref)))
            return
        pool.add("lsd", d[regions.notes])
        pool.add("lsd_attack", d[regions.attack])
        pool.add("lsd_sustain", d[regions.sustain])
        pool.add("lsd_all", d)
        pool.add("sharpness_frames", sharpness_frames(est, floor, bins)[regions.mono_sustain])
        pool.add_sum("sc_num", float(np.sum((np.sqrt(ref) - np.sqrt(est)) ** 2)))
        pool.add_sum("sc_den", float(np.sum(ref)))
        pool.add_sum("pow_est", float(level_power[:, est_notes].sum()))
        pool.add_sum("n_est", float(est_notes.sum()))
        pool.add_sum("pow_ref", float(ref[:, regions.notes].sum()))
        pool.add_sum("n_ref", float(regions.notes.sum()))

    def fit(f: np.ndarray) -> np.ndarray:
        """Crop or zero-pad features to T frames."""
        if f.shape[1] >= T:
            return f[:, :T]
        return np.concatenate([f, np.zeros((f.shape[0], T - f.shape[1]), f.dtype)], axis=1)

    from rtperformer.dsp import log_power

    systems: dict[str, Pool] = {}
    # target: only its own audio-side numbers (sharpness, pitch, onsets) as the reference row
    p = Pool()
    audio_metrics(p, piece.target_audio, ref, regions)
    systems["target"] = p
    if piece.model_features is not None:
        p = Pool()
        est = power_from_features(fit(piece.model_features), a.power_scale)
        spectral(p, est)
        if piece.model_audio is not None:
            ea = power_from_features(fit(log_power(piece.model_audio, a)), a.power_scale)
            spectral(p, ea, prefix="audio")
            audio_metrics(p, piece.model_audio, ea, regions)
        systems["model"] = p
    for kind, (bx, bfeat, baudio) in piece.baselines.items():
        # frame-aligned numbers on the target's grid; level, sharpness, pitch and onsets on its own frames
        p = Pool()
        n = min(bx.shape[-1], bfeat.shape[-1])
        own = power_from_features(bfeat[:, :n], a.power_scale)
        breg = note_regions(bx[:, :n], a.n_fft, a.hop, fr)
        spectral(p, power_from_features(fit(bfeat), a.power_scale), own=(own, breg.notes))
        audio_metrics(p, baudio, own, breg)
        systems[kind] = p
    for name, p in systems.items():
        result[name] = p.summary()
        dst = pools.setdefault(name, Pool())
        for k, v in p.lists.items():
            dst.lists.setdefault(k, []).extend(v)
        for k, v in p.sums.items():
            dst.add_sum(k, v)
    return result


# ----------------------------------------------------------------------------------------------------
# model -> frames -> audio


def model_frames(model: Any, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Offline model output (n_bins, T) float32 for x (C_in, T) (output frame t aligned with input t)."""
    import torch

    with torch.no_grad():
        y = model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(device))
    return y[0].float().cpu().numpy()


def synthesize(features: np.ndarray, cfg: Config, length: int | None = None) -> np.ndarray:
    """Audio (length,) from features (n_bins, T), default length (T-1)*hop: the voice chain's offline audio
    stage, as ``render`` makes it (``render.phase`` when it streams, else RTPGHI; delays dropped)."""
    from rtperformer.voice import OfflineAudio

    phase = cfg.render.phase if cfg.render.phase in ("rtpghi", "rtisila") else "rtpghi"
    n = length if length is not None else max(features.shape[1] - 1, 0) * cfg.audio.hop
    stage = OfflineAudio(phase, cfg.audio, cfg.render, n)
    return np.concatenate([stage.push(features), stage.finish()])


# ----------------------------------------------------------------------------------------------------
# the whole run


BASELINE_KINDS = ("deadpan", "flat")


def _lookup(it: Iterator[tuple]) -> Callable[[str], Any]:
    """Find items of ``it`` ((piece_id, ...) tuples, in split order) by id, reading ahead as needed."""
    cache: dict[str, tuple] = {}

    def find(pid: str):
        while pid not in cache:
            nxt = next(it, None)
            if nxt is None:
                return None
            cache[str(nxt[0])] = nxt
        return cache.pop(pid)

    return find


def load_pieces(cfg: Config, split: str, corpus: str | None = None) -> tuple[Iterator[tuple], dict[str, Callable[[str], Any]]]:
    """(target pieces, {baseline kind: lookup by piece id}) from the corpus's ``piece_arrays``."""
    from rtperformer.data.dataset import piece_arrays

    corpus = corpus or cfg.data.corpus_dir
    inst = cfg.data.instrument
    if not Path(corpus, inst).is_dir():
        raise UserError(f"no corpus at {Path(corpus, inst)}; build it with `rtperformer data build --instrument {inst}`")
    target = piece_arrays(corpus, inst, split, cfg, kind="expressive")
    baselines = {kind: _lookup(piece_arrays(corpus, inst, split, cfg, kind=kind)) for kind in BASELINE_KINDS}
    return target, baselines


def evaluate(
    model: Any,
    cfg: Config,
    pieces: Iterable[tuple],
    baselines: dict[str, Callable[[str], Any]] | None = None,
    *,
    max_seconds: float = 0.0,
    max_pieces: int = 0,
    pitch: bool = True,
    synth: Callable[..., np.ndarray] = synthesize,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[dict[str, Any], Piece | None]:
    """Score ``model`` on ``pieces`` ((piece_id, x, y, audio) tuples, the expressive target) and each
    baseline (kind -> lookup by piece id giving the same tuples, or None when a piece lacks that render).

    Returns (the JSON report, the first piece with its model output, for the figure).
    ``max_seconds`` crops each piece (0 = whole); ``max_pieces`` limits the count (0 = all).
    """
    a = cfg.audio
    baselines = baselines or {}
    pools: dict[str, Pool] = {}
    per_piece = []
    first: Piece | None = None
    it = pieces
    if progress:
        from tqdm import tqdm

        it = tqdm(pieces, desc="eval", unit="piece")
    limit = int(max_seconds * a.frame_rate) if max_seconds else None
    for n, (pid, x, y, audio) in enumerate(it):
        if max_pieces and n >= max_pieces:
            break
        T = min(x.shape[-1], limit) if limit else x.shape[-1]
        x, y = np.asarray(x)[:, :T], np.asarray(y)[:, :T]
        audio = np.asarray(audio, np.float32)[: T * a.hop]
        mf = model_frames(model, x, device) if model is not None else None
        ma = synth(mf, cfg, length=len(audio)) if mf is not None else None
        piece = Piece(str(pid), x, y, audio, mf, ma)
        for kind, find in baselines.items():
            b = find(str(pid))
            if b is not None:
                _, bx, by, baudio = b
                Tb = min(bx.shape[-1], limit) if limit else bx.shape[-1]
                piece.baselines[kind] = (np.asarray(bx)[:, :Tb], np.asarray(by)[:, :Tb],
                                         np.asarray(baudio, np.float32)[: Tb * a.hop])
        per_piece.append(score_piece(piece, cfg, pools, pitch=pitch))
        if first is None:
            first = piece
    if not per_piece:
        raise UserError("the split has no pieces to evaluate")
    summary = {name: p.summary() for name, p in pools.items()}
    for kind in BASELINE_KINDS:
        if kind in summary:
            summary[kind]["aligned"] = kind != "deadpan"
    report = {
        "settings": {
            "noise_floor_db": NOISE_FLOOR_DB,
            "noise_floor_ref": "peak bin power of each target piece",
            "attack_ms": ATTACK_S * 1000,
            "pitch_tolerance_cents": PITCH_TOL_CENTS,
            "onset_window_ms": ONSET_WINDOW_S * 1000,
            "sharpness_band_hz": list(SHARPNESS_BAND_HZ),
            "pitch": "librosa.pyin at 16 kHz on sustained monophonic frames vs the score pitch" if pitch else "off",
            "max_seconds_per_piece": max_seconds,
            "audio": {"sample_rate": a.sample_rate, "n_fft": a.n_fft, "hop": a.hop},
        },
        "summary": summary,
        "pieces": per_piece,
    }
    return report, first


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))


def plot_spectrograms(piece: Piece, cfg: Config, path: Path, seconds: float = 8.0, title: str = "") -> None:
    """PNG with target / model / baseline log spectrograms of the first ``seconds`` of ``piece``
    (dB re the target's peak, floor -80 dB, 0-8 kHz)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = cfg.audio
    T = min(piece.x.shape[-1], int(seconds * a.frame_rate))
    ref = power_from_features(piece.target_features[:, :T], a.power_scale)
    peak = max(float(ref.max()), 1e-20)
    rows = [("target (expressive render)", piece.target_features)]
    if piece.model_features is not None:
        rows.append(("model", piece.model_features))
    for kind, (_bx, bfeat, _ba) in piece.baselines.items():
        rows.append((f"{kind} (FluidSynth)", bfeat))
    fmax = min(a.sample_rate / 2, 8000.0)
    kmax = int(fmax * a.n_fft / a.sample_rate) + 1
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.6 * len(rows)), sharex=True, squeeze=False)
    for ax, (name, feats) in zip(axes[:, 0], rows):
        pw = power_from_features(feats[:kmax, :T], a.power_scale)
        db = 10 * np.log10(np.maximum(pw / peak, 10 ** (NOISE_FLOOR_DB / 10)))
        if db.shape[1] < T:
            db = np.pad(db, ((0, 0), (0, T - db.shape[1])), constant_values=NOISE_FLOOR_DB)
        im = ax.imshow(db, origin="lower", aspect="auto", vmin=NOISE_FLOOR_DB, vmax=0, cmap="magma",
                       extent=(0, db.shape[1] / a.frame_rate, 0, kmax * a.sample_rate / a.n_fft))
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("Hz")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="dB re target peak")
    fig.suptitle(title or piece.piece_id, fontsize=10)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90), suffix=".png")
    finally:
        plt.close(fig)


TABLE_COLUMNS = (
    ("LSD dB", ("lsd_db",)),
    ("attack", ("lsd_attack_db",)),
    ("sustain", ("lsd_sustain_db",)),
    ("LSD audio", ("lsd_audio_db",)),
    ("SC", ("sc",)),
    ("level dB", ("level_db",)),
    ("sharp dB", ("sharpness_db",)),
    ("pitch <50c", ("pitch", "within_50c")),
    ("notes <50c", ("pitch", "notes_within_50c")),
    ("med cents", ("pitch", "median_abs_cents")),
    ("onset ms", ("onset", "median_abs_ms")),
)


def compare_table(reports: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table of summary rows: each report's model, then its target and baselines once
    (from the first report that has them). ``reports``: (label, eval JSON) pairs."""
    head = "| system | " + " | ".join(c for c, _ in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]

    def row(label: str, r: dict[str, Any]) -> str:
        cells = []
        for _, path in TABLE_COLUMNS:
            v: Any = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            cells.append("" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v))
        return f"| {label} | " + " | ".join(cells) + " |"

    for label, rep in reports:
        if "model" in rep.get("summary", {}):
            lines.append(row(label, rep["summary"]["model"]))
    seen = set()
    for _, rep in reports:
        for name in ("target", "flat", "deadpan"):
            if name in rep.get("summary", {}) and name not in seen:
                seen.add(name)
                lines.append(row(name if name == "target" else f"{name} (FluidSynth)", rep["summary"][name]))
    return "\n".join(lines)
