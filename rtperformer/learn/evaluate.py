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

Metrics: :mod:`rtperformer.learn.metrics` (all in numpy). Summary numbers pool frames (and notes) over all pieces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.config import Config
from rtperformer.errors import UserError
from rtperformer.learn import metrics

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


def score_piece(piece: Piece, cfg: Config, pools: dict[str, metrics.Pool], pitch: bool = True) -> dict[str, Any]:
    """Add ``piece``'s numbers to ``pools`` (keys target, model, and each baseline kind) and return the
    piece's own summary."""
    a = cfg.audio
    fr = a.frame_rate
    T = piece.x.shape[-1]
    regions = metrics.note_regions(piece.x, a.n_fft, a.hop, fr)
    ref = metrics.power_from_features(piece.target_features[:, :T], a.power_scale)
    floor = metrics.floor_power(ref)
    freqs = np.arange(a.n_bins) * a.sample_rate / a.n_fft
    band = np.nonzero((freqs >= metrics.SHARPNESS_BAND_HZ[0]) & (freqs <= metrics.SHARPNESS_BAND_HZ[1]))[0]
    bins = slice(int(band[0]), int(band[-1]) + 1) if band.size else slice(0, a.n_bins)
    sounding = np.isfinite(regions.score_midi)
    fmin = 440.0 * 2 ** ((np.nanmin(regions.score_midi) - 2 - 69) / 12) if sounding.any() else 50.0
    fmax = 440.0 * 2 ** ((np.nanmax(regions.score_midi) + 2 - 69) / 12) if sounding.any() else 2000.0
    result: dict[str, Any] = {"id": piece.piece_id, "seconds": round(T / fr, 2)}

    def audio_metrics(pool: metrics.Pool, audio: np.ndarray, power: np.ndarray, reg: metrics.NoteRegions) -> None:
        pool.add("sharpness", metrics.sharpness_frames(power, floor, bins)[reg.mono_sustain])
        det = metrics.detect_onsets(power, fr)
        pool.add("onset_ms", metrics.onset_errors(det, reg.onsets, fr))
        if pitch and reg.mono_sustain.any():
            times = np.arange(power.shape[1]) * a.hop / a.sample_rate
            f0 = metrics.pitch_track(audio, a.sample_rate, times, fmin, fmax)
            c = metrics.cents_error(f0, reg.score_midi[: len(f0)])[reg.mono_sustain[: len(f0)]]
            pool.add("cents", c)
            ids = reg.note_ids[: len(f0)][reg.mono_sustain[: len(f0)]]
            note_meds = [np.nanmedian(c[ids == i]) if np.isfinite(c[ids == i]).any() else np.nan for i in np.unique(ids)]
            pool.add("note_cents", np.asarray(note_meds, np.float64))

    def spectral(pool: metrics.Pool, est: np.ndarray, prefix: str = "", own: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Frame-aligned numbers of est (n_bins, T) vs the target; the level uses ``own`` = (power, note
        mask) of the system's own, possibly differently timed, frames when given."""
        d = metrics.lsd_frames(ref, est, floor)
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
        pool.add("sharpness_frames", metrics.sharpness_frames(est, floor, bins)[regions.mono_sustain])
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

    systems: dict[str, metrics.Pool] = {}
    # target: only its own audio-side numbers (sharpness, pitch, onsets) as the reference row
    p = metrics.Pool()
    audio_metrics(p, piece.target_audio, ref, regions)
    systems["target"] = p
    if piece.model_features is not None:
        p = metrics.Pool()
        est = metrics.power_from_features(fit(piece.model_features), a.power_scale)
        spectral(p, est)
        if piece.model_audio is not None:
            ea = metrics.power_from_features(fit(log_power(piece.model_audio, a)), a.power_scale)
            spectral(p, ea, prefix="audio")
            audio_metrics(p, piece.model_audio, ea, regions)
        systems["model"] = p
    for kind, (bx, bfeat, baudio) in piece.baselines.items():
        # frame-aligned numbers on the target's grid; level, sharpness, pitch and onsets on its own frames
        p = metrics.Pool()
        n = min(bx.shape[-1], bfeat.shape[-1])
        own = metrics.power_from_features(bfeat[:, :n], a.power_scale)
        breg = metrics.note_regions(bx[:, :n], a.n_fft, a.hop, fr)
        spectral(p, metrics.power_from_features(fit(bfeat), a.power_scale), own=(own, breg.notes))
        audio_metrics(p, baudio, own, breg)
        systems[kind] = p
    for name, p in systems.items():
        result[name] = p.summary()
        dst = pools.setdefault(name, metrics.Pool())
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


def synthesize(features: np.ndarray, cfg: Config, length: int | None = None,
               notes: np.ndarray | None = None, noise: Any = None) -> np.ndarray:
    """Audio (length,) from features (n_bins, T), default length (T-1)*hop: the voice chain's offline audio
    stage, as ``render`` makes it (``render.phase`` when it streams, else RTPGHI; delays dropped).
    ``notes``: the held-note roll (P, T) (the model input's first P rows) for the score-informed phase;
    ``noise``: the model's texture table (:class:`rtperformer.dsp.noise.NoiseTable`), used when
    ``render.noise`` is on."""
    from rtperformer.voice.audio_stage import OfflineAudio

    phase = cfg.render.phase if cfg.render.phase in ("rtpghi", "rtisila") else "rtpghi"
    n = length if length is not None else max(features.shape[1] - 1, 0) * cfg.audio.hop
    stage = OfflineAudio(phase, cfg.audio, cfg.render, n, noise=noise if cfg.render.noise else None)
    return np.concatenate([stage.push(features, notes), stage.finish()])


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
    from rtperformer.learn.data.dataset import piece_arrays

    corpus = corpus or cfg.data.corpus_dir
    inst = cfg.data.instrument
    if not Path(corpus, inst).is_dir():
        raise UserError(f"no corpus at {Path(corpus, inst)}; build it with `rtperformer data build --instrument {inst}`")
    target = piece_arrays(corpus, inst, split, cfg, kind="expressive")
    baselines = {kind: _lookup(piece_arrays(corpus, inst, split, cfg, kind=kind)) for kind in BASELINE_KINDS}
    return target, baselines


def bend_lookup(cfg: Config, corpus: str | None = None) -> Callable[[str], np.ndarray | None]:
    """piece id -> the expressive render's bend row (T,) semitones, or None where the corpus has none."""
    from rtperformer.learn.data.dataset import piece_bend

    corpus = corpus or cfg.data.corpus_dir
    return lambda pid: piece_bend(corpus, cfg.data.instrument, pid, cfg)


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
    bends: Callable[[str], np.ndarray | None] | None = None,
) -> tuple[dict[str, Any], Piece | None]:
    """Score ``model`` on ``pieces`` ((piece_id, x, y, audio) tuples, the expressive target) and each
    baseline (kind -> lookup by piece id giving the same tuples, or None when a piece lacks that render).

    Returns (the JSON report, the first piece with its model output, for the figure).
    ``max_seconds`` crops each piece (0 = whole); ``max_pieces`` limits the count (0 = all).
    ``bends``: piece id -> the target's bend row (T,) semitones (or None); with ``model.bend_warp`` the
    model's frames are warped by it, as the voice chain does (:func:`bend_lookup`).
    """
    a = cfg.audio
    baselines = baselines or {}
    pools: dict[str, metrics.Pool] = {}
    per_piece = []
    first: Piece | None = None
    it = pieces
    if progress:
        from tqdm import tqdm

        it = tqdm(pieces, desc="eval", unit="piece")
    limit = int(max_seconds * a.frame_rate) if max_seconds else None
    n_bent = 0
    noise = getattr(model, "noise_table", None) if cfg.render.noise else None  # texture noise (render.noise)
    for n, (pid, x, y, audio) in enumerate(it):
        if max_pieces and n >= max_pieces:
            break
        T = min(x.shape[-1], limit) if limit else x.shape[-1]
        x, y = np.asarray(x)[:, :T], np.asarray(y)[:, :T]
        audio = np.asarray(audio, np.float32)[: T * a.hop]
        mf = model_frames(model, x, device) if model is not None else None
        if mf is not None and bends is not None and getattr(cfg.model, "bend_warp", True):
            b = bends(str(pid))
            if b is not None:
                from rtperformer.voice.audio_stage import warp_features

                mf = warp_features(mf, np.asarray(b)[:T], a.power_scale)
                n_bent += 1
        ma = None
        if mf is not None:
            extra = {"noise": noise} if noise is not None else {}
            ma = synth(mf, cfg, length=len(audio), notes=x[: cfg.model.n_pitches], **extra)
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
            "noise_floor_db": metrics.NOISE_FLOOR_DB,
            "noise_floor_ref": "peak bin power of each target piece",
            "attack_ms": metrics.ATTACK_S * 1000,
            "pitch_tolerance_cents": metrics.PITCH_TOL_CENTS,
            "onset_window_ms": metrics.ONSET_WINDOW_S * 1000,
            "sharpness_band_hz": list(metrics.SHARPNESS_BAND_HZ),
            "pitch": "librosa.pyin at 16 kHz on sustained monophonic frames vs the score pitch" if pitch else "off",
            "max_seconds_per_piece": max_seconds,
            "bend": (f"model frames warped by the target's bend row (vibrato), {n_bent} pieces" if n_bent
                     else ("model input" if getattr(cfg.model, "bend_input", False) and bends is not None else "none")),
            "noise": noise.source if noise is not None else "off",
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
    ref = metrics.power_from_features(piece.target_features[:, :T], a.power_scale)
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
        pw = metrics.power_from_features(feats[:kmax, :T], a.power_scale)
        db = 10 * np.log10(np.maximum(pw / peak, 10 ** (metrics.NOISE_FLOOR_DB / 10)))
        if db.shape[1] < T:
            db = np.pad(db, ((0, 0), (0, T - db.shape[1])), constant_values=metrics.NOISE_FLOOR_DB)
        im = ax.imshow(db, origin="lower", aspect="auto", vmin=metrics.NOISE_FLOOR_DB, vmax=0, cmap="magma",
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
