"""Offline rendering: a Score -> rolls -> the voice chain (rtperformer/voice/chain.py) in chunks -> audio.

Every stage streams, so memory is bounded whatever the length of the piece:

- inputs: :class:`InputStream` feeds the part's stamped events through the same
  :class:`~rtperformer.roll.pianoroll.EventSchedule` and :class:`~rtperformer.roll.pianoroll.Pianoroll` as
  the live engine, frame range by frame range, zeros past the end;
- model (:func:`model_frames`): the streaming form runs the chain's model stage (torch backend) over
  ``render.chunk_frames`` chunks with its delay dropped (:func:`rtperformer.voice.chain.render_stream`); the
  paper form (or ``render.mode: window``) runs ``render.window_frames`` windows overlapping by
  ``render.crossfade_frames``, crossfaded linearly in the log-power domain (both windows predict the same
  frames, so a linear fade keeps the level);
- audio (:class:`OfflineAudio`): the chain's audio stage (magnitude, RTPGHI / RTISI-LA, streaming iSTFT)
  with its delays dropped, the same code the live engine runs; Griffin-Lim offline only
  (:class:`rtperformer.dsp.griffin_lim.BlockGriffinLim`, in crossfaded blocks);
- audio: each instrument to a float WAV in a temp folder, then mixed block-wise.

Mixing and the PNG: :mod:`rtperformer.offline.mixdown` (parts summed at unit gain, then one peak-safe gain).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.errors import UserError
from rtperformer.midi.score import DRUM_CHANNEL, FAMILIES, INSTRUMENTS, Score, by_register, choose_instrument, fit_pitch
from rtperformer.audio.wavfile import open_wav
from rtperformer.midi.events import seconds_to_sample, stamp_events
from rtperformer.roll.pianoroll import EventSchedule, Pianoroll
from rtperformer.roll.notes import select_parts
from rtperformer.roll.painter import bend_spec
from rtperformer.dsp.griffin_lim import BlockGriffinLim
from rtperformer.voice.audio_stage import OfflineAudio, warp_features
from rtperformer.offline.mixdown import PreviewCollector, mix_to_wav, write_png
from rtperformer.voice.chain import render_stream



# -- which notes go to which instrument -----------------------------------------------------------------


@dataclass
class Part:
    """The notes of one part (one track/channel of the score) and the instrument that plays it.

    ``notes`` are already moved into the instrument's range (``transposed`` of them by octaves);
    ``reason`` says why this instrument was chosen (printed by ``render``)."""

    instrument: str
    sources: list[tuple[int, int]]
    notes: list = field(default_factory=list)
    controls: list = field(default_factory=list)
    label: str = ""
    program: int = 0
    transposed: int = 0
    reason: str = ""


def parse_map(values: list[str]) -> tuple[dict[int, str], dict[str, str]]:
    """``--map KEY=INSTRUMENT`` values -> ({GM program: instrument}, {track key: instrument}).

    KEY: a GM program number 0-127 (as printed by ``render``), ``trackN`` / ``tN`` (track N), or a track
    name (case-insensitive). INSTRUMENT: violin, cello, flute, or ``none`` (skip that part). Bad -> UserError."""
    programs: dict[int, str] = {}
    tracks: dict[str, str] = {}
    for v in values:
        key, sep, inst = v.rpartition("=")
        inst = inst.strip().lower()
        if not sep or not key.strip():
            raise UserError(f"--map {v}: expected PROGRAM_OR_TRACK=INSTRUMENT, e.g. 48=cello or track3=flute")
        if inst not in (*INSTRUMENTS, "none"):
            raise UserError(f"--map {v}: unknown instrument '{inst}' (choose one of: {', '.join(INSTRUMENTS)}, none)")
        key = key.strip()
        if key.isdigit():
            if not 0 <= int(key) <= 127:
                raise UserError(f"--map {v}: GM program must be 0-127")
            programs[int(key)] = inst
        else:
            low = key.lower()
            for prefix in ("track", "t"):
                if low.startswith(prefix) and low[len(prefix):].strip().isdigit():
                    low = f"track{int(low[len(prefix):])}"
                    break
            tracks[low] = inst
    return programs, tracks


def assign_parts(score: Score, instrument: str | None = None, mapping: list[str] | None = None,
                 ) -> tuple[list[Part], list[str]]:
    """Arrange the score for our instruments, part by part -> (parts, descriptions of skipped parts).

    Each (track, channel) with notes is one part, rendered by its own model instance. Its instrument, by
    precedence: ``--map`` for its track (number or name), ``--map`` for its GM program, ``instrument``
    (``--instrument``, every pitched part), else its GM family (midi.score.FAMILIES: strings 40-47 and
    ensembles 48-51 -> violin or cello by the part's register, 40/41 violin, 42/43 cello, pipes and reeds
    64-79 -> flute). When no part has a string or wind program (a file without program changes is all
    piano), every pitched part goes to violin or cello by register. Other parts and GM channel 10 (drums,
    unless mapped by track) are skipped and listed; none left is a UserError suggesting --instrument/--map.
    Notes outside the chosen instrument's range are moved by whole octaves into it (counted in
    ``Part.transposed``).
    """
    if instrument is not None and instrument not in INSTRUMENTS:
        raise UserError(f"unknown instrument '{instrument}' (choose one of: {', '.join(INSTRUMENTS)})")
    by_program, by_track = parse_map(mapping or [])
    keys = sorted(score.parts().items())
    pitches: dict[tuple[int, int], list[int]] = {}
    for n in score.notes:
        pitches.setdefault((n.track, n.channel), []).append(n.pitch)
    any_family = any(FAMILIES.get(p) for (_, ch), p in keys if ch != DRUM_CHANNEL)
    chosen: list[tuple[tuple[int, int], str, str, str, int]] = []
    skipped: list[str] = []
    for (track, channel), program in keys:
        name_key = (score.track_names.get(track) or "").strip().lower()
        label = f"track {track}" + (f" '{score.track_names[track]}'" if score.track_names.get(track) else "")
        label += f" (ch {channel + 1}, program {program})"
        mapped = by_track.get(f"track{track}") or (by_track.get(name_key) if name_key else None)
        ps = pitches[(track, channel)]
        if mapped is not None:
            inst, reason = mapped, "--map track"
        elif channel == DRUM_CHANNEL:
            skipped.append(f"{label}: channel 10 is drums (map it with --map track{track}=INSTRUMENT)")
            continue
        elif program in by_program:
            inst, reason = by_program[program], f"--map {program}"
        elif instrument is not None:
            inst, reason = instrument, "--instrument"
        elif FAMILIES.get(program):
            cands = FAMILIES[program]
            inst = choose_instrument(cands, ps)
            reason = "GM program" if len(cands) == 1 else f"GM strings by register, median pitch {sorted(ps)[len(ps) // 2]}"
        elif not any_family:
            inst = by_register(ps)
            reason = f"no string or wind program in the file: by register, median pitch {sorted(ps)[len(ps) // 2]}"
        else:
            skipped.append(f"{label}: not a string or wind program (use --map {program}=INSTRUMENT)")
            continue
        if inst == "none":
            skipped.append(f"{label}: {reason} none")
            continue
        chosen.append(((track, channel), inst, label, reason, program))
    if not chosen:
        raise UserError(
            f"no part to play in {score.path or 'the score'} (no string or wind parts); "
            "choose an instrument with --instrument violin|cello|flute or --map PROGRAM_OR_TRACK=INSTRUMENT"
        )
    parts = []
    for key, inst, label, reason, program in chosen:
        notes, controls = select_parts(score, [key])
        fitted = [n if fit_pitch(n.pitch, inst) == n.pitch else dataclasses.replace(n, pitch=fit_pitch(n.pitch, inst))
                  for n in notes]
        moved = sum(a is not b for a, b in zip(notes, fitted))
        parts.append(Part(inst, [key], fitted, controls, label, program, moved, reason))
    return parts, skipped


# -- model inputs ------------------------------------------------------------------------------------


class InputStream:
    """Model input frames of one part, range after range: ``next(n) -> (C_in, n)`` float32 (a new array).

    ``notes``, ``controls``: the part's (one track and channel; seconds), stamped at ``cfg.audio``'s sample
    rate and sent through the live engine's path (:class:`EventSchedule`, exact, then :class:`Pianoroll`,
    ``cfg.render.velocity_sensitive``); ``max_frames``: the largest ``n``. Frames at or beyond ``n_frames``
    are zeros (the zero padding the model is trained with). ``bends`` (n_frames,) float32: the bend row
    (semitones; pitch bend at ``serve.pitch_bend_range`` and the mod wheel's vibrato) of every frame
    painted so far, as the live voice's.
    """

    def __init__(self, notes: Any, controls: Any, cfg: Any, n_frames: int, max_frames: int):
        self.schedule = EventSchedule(cfg.audio.hop, exact=True)
        for e in stamp_events(notes, controls, cfg.audio.sample_rate):
            self.schedule.push(e)
        self.roll = Pianoroll(cfg.model, cfg.render.velocity_sensitive, max_frames,
                              bend=bend_spec(cfg.model, cfg.audio, cfg.serve.pitch_bend_range))
        self.n_frames = n_frames
        self.channels = self.roll.channels
        self.bends = np.zeros(n_frames, np.float32)

    @property
    def frame(self) -> int:
        return self.roll.frame

    def next(self, n: int) -> np.ndarray:
        a = self.roll.frame
        x = self.roll.take(self.schedule, n).copy()
        x[:, max(0, self.n_frames - a) :] = 0.0
        m = max(0, min(n, self.n_frames - a))
        self.bends[a : a + m] = self.roll.bend[:m]
        return x


# -- model --------------------------------------------------------------------------------------------


def model_frames(model: Any, cfg: Any, inputs: InputStream, progress: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x (C_in, n), y (n_bins, n)) chunks, y the log1p-power predictions for input frames, in order,
    covering exactly ``inputs.n_frames`` frames.

    Streaming form with ``render.mode: streaming``: the voice chain's model stage (the torch backend) in
    ``render.chunk_frames`` steps, its delay dropped (:func:`rtperformer.voice.chain.render_stream`); otherwise
    overlapping windows of the whole-clip model.
    """
    import torch

    rc = cfg.render
    T = inputs.n_frames
    if cfg.model.form == "streaming" and rc.mode == "streaming":
        from rtperformer.voice.chain import ModelStage, make_backend

        stage = ModelStage(make_backend("torch", model, cfg, max(1, rc.chunk_frames)))
        yield from render_stream(stage, inputs.next, T, max(1, rc.chunk_frames), progress)
        return
    with torch.inference_mode():
        yield from _window_frames(model, max(2, rc.window_frames), rc.crossfade_frames, inputs, T, progress)


def _window_frames(model, W, C, inputs, T, progress):
    import torch

    C = max(0, min(C, W - 1))
    fade_in = (np.arange(1, C + 1, dtype=np.float32) / (C + 1))[None, :]
    xbuf = np.zeros((inputs.channels, 0), np.float32)
    pending = None  # last C output frames of the previous window
    start = 0
    while start < T:
        n = min(W, T - start)
        new = n - xbuf.shape[1]
        x = np.concatenate([xbuf, inputs.next(new)], axis=1) if new > 0 else xbuf[:, :n]
        y = model(torch.from_numpy(x)[None])[0].float().numpy()
        if pending is not None:
            c = min(C, n)
            y[:, :c] = pending[:, :c] * (1.0 - fade_in[:, :c]) + y[:, :c] * fade_in[:, :c]
        final = start + n >= T
        emit = n if final else n - C
        yield x[:, :emit], y[:, :emit]
        if progress:
            progress(emit)
        if final:
            break
        pending = y[:, emit:].copy()
        xbuf = x[:, emit:].copy()
        start += emit


# -- phase and audio ----------------------------------------------------------------------------------


def make_audio_stage(phase: str, audio_cfg: Any, render_cfg: Any, n_samples: int, noise: Any = None):
    """The audio stage for ``phase`` (rtpghi | rtisila | gla): ``push(features) -> audio``, ``finish()``.
    ``noise``: the model's texture table (rtperformer/dsp/noise.py), used when ``render.noise`` is on and the
    phase streams (Griffin-Lim, offline only, has none)."""
    if phase == "gla":
        return BlockGriffinLim(audio_cfg, render_cfg, n_samples)
    if phase in ("rtpghi", "rtisila"):
        return OfflineAudio(phase, audio_cfg, render_cfg, n_samples, noise=noise if render_cfg.noise else None)
    raise UserError(f"unknown phase method '{phase}' (choose one of: rtpghi, rtisila, gla)")


# -- one part -----------------------------------------------------------------------------------------


@dataclass
class PartResult:
    instrument: str
    path: Path
    sample_rate: int
    n_samples: int
    peak: float
    preview: PreviewCollector | None


def render_part(part: Part, model: Any, cfg: Any, seconds: float, wav_path: Path, out_rate: int | None = None,
                preview: bool = False, progress_bar: bool | None = None, bar_position: int = 0) -> PartResult:
    """Render ``seconds`` of one part with its model into a float32 WAV at ``wav_path``.

    The audio is resampled (soxr) to ``out_rate`` when it differs from the model's sample rate.
    """
    from tqdm import tqdm

    from rtperformer.dsp.features import n_frames

    ac, rc = cfg.audio, cfg.render
    n_samples = seconds_to_sample(seconds, ac.sample_rate)
    T = n_frames(n_samples, ac.hop)
    chunk = max(rc.chunk_frames, rc.window_frames) + 1  # the most frames one InputStream.next asks for
    inputs = InputStream(part.notes, part.controls, cfg, T, max_frames=chunk)
    stage = make_audio_stage(rc.phase, ac, rc, n_samples, noise=getattr(model, "noise_table", None))
    out_rate = out_rate or ac.sample_rate
    resampler = None
    if out_rate != ac.sample_rate:
        import soxr

        resampler = soxr.ResampleStream(ac.sample_rate, out_rate, 1, dtype="float32")
    collector = PreviewCollector(T) if preview else None
    peak = 0.0
    written = 0
    n_out = seconds_to_sample(seconds, out_rate)
    # progress_bar None: tqdm decides (off when stderr is not a terminal).
    bar = tqdm(total=T, desc=f"render {part.instrument}", unit="frame", leave=False, position=bar_position,
               disable=None if progress_bar is None else not progress_bar)
    with open_wav(wav_path, out_rate, 1, frames=n_out) as f:  # RF64 past 4 GiB (~6 hours of float audio)

        def write(audio: np.ndarray, last: bool = False) -> None:
            nonlocal peak, written
            if resampler is not None:
                audio = resampler.resample_chunk(audio, last=last)
            audio = audio[: max(n_out - written, 0)]
            if last and written + audio.shape[0] < n_out:
                audio = np.concatenate([audio, np.zeros(n_out - written - audio.shape[0], np.float32)])
            if audio.size:
                peak = max(peak, float(np.max(np.abs(audio))))
                f.write(audio)
                written += audio.shape[0]

        warp = bool(getattr(cfg.model, "bend_warp", True))
        try:
            done = 0
            for x, y in model_frames(model, cfg, inputs, bar.update):
                if collector is not None:
                    collector.add(x, y)
                m = y.shape[1]
                bend = inputs.bends[done : done + m] if warp else None
                done += m
                if bend is not None and isinstance(stage, BlockGriffinLim):
                    y, bend = warp_features(y, bend, ac.power_scale), None
                write(stage.push(y, x[: cfg.model.n_pitches]) if bend is None
                      else stage.push(y, x[: cfg.model.n_pitches], bend))
            write(stage.finish(), last=True)
        finally:
            bar.close()
    return PartResult(part.instrument, wav_path, out_rate, written, peak, collector)


@dataclass
class RenderSummary:
    out_path: Path
    sample_rate: int
    n_samples: int
    seconds: float
    gain: float
    peak: float
    instruments: list[str]


def render_score(score: Score, parts: list[Part], models: dict[str, tuple[Any, Any]], out_path: str | os.PathLike,
                 png_path: str | os.PathLike | None = None, progress_bar: bool | None = None) -> RenderSummary:
    """Render every part with ``models[instrument] = (model, cfg)`` and write ``out_path`` (and the PNG).

    Length: ``score.duration`` + the largest ``render.release_seconds`` among the models' configs. Output
    sample rate: the highest among the models (others resampled). Outputs appear only when complete.
    """
    out_path = Path(out_path)
    png = Path(png_path) if png_path else None
    for p in [out_path] + ([png] if png else []):
        if not p.parent.is_dir():
            raise UserError(f"output folder does not exist: {p.parent}")
    cfgs = {name: cfg for name, (_, cfg) in models.items()}
    release = max(cfgs[p.instrument].render.release_seconds for p in parts)
    seconds = score.duration + release
    rate = max(cfgs[p.instrument].audio.sample_rate for p in parts)
    work = Path(tempfile.mkdtemp(prefix="rtperformer-render-"))
    try:
        # parts render concurrently, one per core: torch and the numba phase code release the GIL, and a
        # model shared by two parts is only read (each part carries its own streaming state)
        def one(i: int) -> PartResult:
            model, cfg = models[parts[i].instrument]
            return render_part(parts[i], model, cfg, seconds, work / f"{i}-{parts[i].instrument}.wav", rate,
                               preview=png is not None, progress_bar=progress_bar, bar_position=i)

        from rtperformer.backends.base import cpu_threads

        workers = min(len(parts), cpu_threads())
        if workers <= 1:
            results = [one(i) for i in range(len(parts))]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="render-part") as pool:
                results = list(pool.map(one, range(len(parts))))
        mixed: list[float] = []

        def write_outputs(tmp_wav: str) -> None:  # the PNG first: the WAV appears last, both or neither
            mixed.extend(mix_to_wav(results, Path(tmp_wav)))
            if png is not None:
                atomic_write(png, lambda tmp_png: write_png(results, cfgs, Path(tmp_png)), suffix=".png")

        atomic_write(out_path, write_outputs, suffix=".wav")
        gain, peak = mixed
        return RenderSummary(out_path, rate, results[0].n_samples, seconds, gain, peak, [p.instrument for p in parts])
    finally:
        shutil.rmtree(work, ignore_errors=True)
