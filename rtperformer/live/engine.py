"""The render loop's engine: stamped MIDI events in, mixed audio out, one model step at a time.

Owned by one thread (the render thread in ``serve``, the main thread offline). Per instrument a
:class:`~rtperformer.voice.chain.Voice` runs the one voice chain (pianoroll -> model stage -> audio stage ->
gate; see rtperformer/voice/chain.py). :class:`Engine` queues the stamped events in its one
:class:`~rtperformer.roll.pianoroll.EventSchedule`, decodes each once when its frame comes, routes it to
the voice of its MIDI channel and mixes the voices; :meth:`Engine.render_step` renders the next
``frames_per_step`` frames of every voice (hop samples each, at the model's rate), mixes, applies the
master gain and resamples to the output rate (python-soxr ``ResampleStream``) when they differ.

Render modes (``cfg.render.mode``): ``streaming`` (the streaming model, ``serve.step_frames`` frames per
step) or ``window`` (the offline model over a sliding window, ``serve.window_step_frames`` new frames per
run); see :class:`~rtperformer.voice.chain.ModelStage` and :class:`~rtperformer.voice.chain.WindowModelStage`.

Scheduling: ``schedule="asap"`` (live) applies each event at the next frame rendered; ``"exact"`` (offline,
tests) applies an event stamped at sample s (model rate) at frame round(s / hop), as the offline rolls do
(late: at the next frame rendered).

MIDI: note on/off (velocity 0 = off), velocity, CC64 sustain, CC11 expression (a model input when the
model has one, else a gain), CC7 volume (gain (v/127)^2), CC120 all sound off (gate closes at once),
CC123 all notes off, program change (by GM family, LIVE_PROGRAMS: strings/ensembles 40-51 -> violin or
cello, pipes/reeds 64-79 -> flute, when that instrument is loaded; GM channel 10 is ignored unless
``serve.channel_map`` maps it), pitch bend (+-``serve.pitch_bend_range`` semitones, default 2) and CC1 mod
wheel (a vibrato LFO added to the bend): the pianoroll's bend row, a model input when the model has one
(``model.bend_input``) and a per-frame frequency warp of the model's frames when it has ``model.bend_warp``.

Gate (``serve.gate``, default on; :class:`~rtperformer.voice.chain.Voice`): a trained model is near-silent
without notes anyway; an untrained one is not, and the gate keeps "no note" silent. A closed voice skips
the model; on the next note it restarts from its precomputed silence state (the state after 256 frames of
no notes), which is exact for a finite-memory causal net.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtperformer.config import Config
from rtperformer.errors import UserError
from rtperformer.midi import decode as dec
from rtperformer.midi.events import MidiEvent
from rtperformer.midi.score import live_instrument
from rtperformer.roll.pianoroll import EventSchedule
from rtperformer.voice.chain import Voice

# Program change -> instrument live, by GM family (midi.score.FAMILIES): strings 40-47 and ensembles
# 48-51 to violin (42/43 cello/contrabass and 47 timpani to cello), pipes and reeds 64-79 to flute.
LIVE_PROGRAMS = {p: live_instrument(p) for p in range(128) if live_instrument(p)}
DRUM_CHANNEL = 9  # GM channel 10
STEP_LOG = 4096  # render step durations kept for the percentiles (Engine.step_ms)


@dataclass
class Instrument:
    """A loaded model: ``name`` (violin|cello|flute|...), the nn.Module, its Config, its folder."""

    name: str
    model: Any
    cfg: Config
    model_dir: Path | None = None


def load_instruments(specs: list[str] | None, models_dir: Path | None = None) -> list[Instrument]:
    """Load models from ``--model`` specs: ``NAME`` (found along rtperformer.paths' model search path,
    ``models_dir`` first), ``PATH`` or ``INSTRUMENT=NAME_OR_PATH``.

    No specs: every default model (violin, cello, flute) found on the search path; none -> UserError.
    """
    from rtperformer.model.checkpoint import DEFAULT_MODELS, load_model

    from rtperformer import paths

    pairs: list[tuple[str, str]] = []
    if specs:
        for spec in specs:
            if "=" in spec:
                inst, src = spec.split("=", 1)
            else:
                src = spec
                inst = Path(spec).name if Path(spec).exists() else spec
            pairs.append((inst.strip(), src.strip()))
    else:
        pairs = [(inst, name) for inst, name in DEFAULT_MODELS.items() if paths.find_model(name, models_dir)]
        if not pairs:
            raise UserError(f"no model found (looked in {paths.describe_model_search(models_dir)}); "
                            f"train one with `rtperformer train` or pass --model")
    out = []
    for inst, src in pairs:
        model, cfg, _meta = load_model(src, models_dir=models_dir)
        p = Path(src)
        model_dir = p if p.is_dir() else paths.find_model(DEFAULT_MODELS.get(src, src), models_dir)
        model.eval()
        out.append(Instrument(inst, model, cfg, model_dir))
    return out


@dataclass
class Onset:
    """A note-on applied in the last render step: its stamp (input clock), arrival time, and where its
    audio begins in that step's output, in output samples."""

    stamp: int
    wall: float
    offset: int
    pitch: int
    instrument: str


class Engine:
    """Routes stamped MIDI to voices and renders the mix.

    ``instruments``: loaded models (same audio config); ``cfg``: render + serve settings;
    ``out_rate``: output sample rate (None: the models' rate); ``schedule``: "asap" | "exact" (see module doc).
    """

    def __init__(self, instruments: list[Instrument], cfg: Config, out_rate: int | None = None,
                 schedule: str = "asap"):
        if not instruments:
            raise UserError("no instrument to play")
        a0 = instruments[0].cfg.audio
        for inst in instruments[1:]:
            a = inst.cfg.audio
            if (a.sample_rate, a.n_fft, a.hop) != (a0.sample_rate, a0.n_fft, a0.hop):
                raise UserError(f"model '{inst.name}' has a different audio config ({a.sample_rate} Hz, n_fft "
                                f"{a.n_fft}, hop {a.hop}) from '{instruments[0].name}'")
        self.cfg = cfg
        self.mode = cfg.render.mode
        self.schedule = schedule
        self.audio_cfg = a0
        self.hop = a0.hop
        self.sample_rate = a0.sample_rate
        self.out_rate = int(out_rate or a0.sample_rate)
        self.frames_per_step = int(cfg.serve.window_step_frames if self.mode == "window" else cfg.serve.step_frames)
        if self.frames_per_step < 1:
            raise UserError("serve.step_frames and serve.window_step_frames must be >= 1")
        if schedule not in ("asap", "exact"):
            raise ValueError(f"schedule must be 'asap' or 'exact', not {schedule!r}")
        self.voices: dict[str, Voice] = {i.name: Voice(i, cfg, self.mode, self.frames_per_step) for i in instruments}
        default = cfg.serve.default_instrument if cfg.serve.default_instrument in self.voices else instruments[0].name
        self.channel_instrument = [default] * 16
        # GM channel 10 (index 9) is drums: ignored unless serve.channel_map maps it.
        self.channel_instrument[DRUM_CHANNEL] = None
        for ch, name in dict(cfg.serve.channel_map).items():
            if not 0 <= int(ch) <= 15:
                raise UserError(f"serve.channel_map: channel {ch} is not 0-15")
            if name in self.voices:
                self.channel_instrument[int(ch)] = name
        # What was not played, each named once in the status line: "ch10 drums", "program 0 on ch1".
        self.ignored: dict[str, None] = {}
        self.master = np.float32(cfg.serve.gain)
        self.frame = 0  # next frame to render
        self.events = EventSchedule(self.hop, exact=schedule == "exact")  # the one event queue
        self._held: dict[tuple[int, int], str] = {}
        self.onsets: list[Onset] = []  # note-ons of the last step
        self.delay_frames = max(v.delay_frames for v in self.voices.values())
        self._resampler = None
        if self.out_rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.sample_rate, self.out_rate, 1, dtype="float32", quality="MQ")
        self._mix = np.zeros(self.hop * self.frames_per_step, np.float32)
        self._pool = None
        n_threads = min(int(cfg.serve.voice_threads), len(self.voices))
        if n_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            from rtperformer.rtsched import set_realtime

            prio = int(cfg.serve.realtime_priority)  # set_realtime ignores 0 (off)
            self._pool = ThreadPoolExecutor(n_threads - 1, thread_name_prefix="voice",
                                            initializer=lambda: set_realtime(prio))
        self.step_times = np.zeros(STEP_LOG, np.float64)  # seconds of the last STEP_LOG render steps
        self.steps = 0
        self.busy_s = 0.0  # time spent in render_step
        self.rendered_s = 0.0  # audio produced, seconds
        self.unknown_programs = 0
        self.midi = dec.DecodeStats()  # messages applied / dropped as malformed

    # -- events (render thread) --------------------------------------------------------------
    def push(self, sample_time: int, data: bytes, wall: float = 0.0) -> None:
        """Queue one message. ``sample_time`` is at the model rate for ``exact`` and ignored for ``asap``
        (beyond being kept as the note's stamp for latency statistics)."""
        self.events.push(MidiEvent(int(sample_time), bytes(data), wall))

    def _voice_of(self, ch: int) -> Voice:
        return self.voices[self.channel_instrument[ch]]

    def _apply(self, frame: int, event: MidiEvent, f0: int) -> None:
        m = self.midi.decode(event.data)  # garbage (bad status/data bytes, wrong length) is dropped and counted
        if m is None or m.kind == dec.SYSTEM:
            return
        ch = m.channel
        if self.channel_instrument[ch] is None:  # an unmapped drum channel: nothing on it is played
            if m.kind == dec.NOTE_ON and f"ch{ch + 1} drums" not in self.ignored:
                self.ignored[f"ch{ch + 1} drums"] = None
            return
        if m.kind == dec.NOTE_ON:
            name = self.channel_instrument[ch]
            self._held[(ch, m.a)] = name
            self.voices[name].feed(frame, m)
            offset = (frame - f0 + self.voices[name].delay_frames) * self.hop
            self.onsets.append(Onset(event.sample_time, event.wall, int(offset * self.out_rate / self.sample_rate),
                                     m.a, name))
        elif m.kind == dec.NOTE_OFF:
            name = self._held.pop((ch, m.a), self.channel_instrument[ch])
            self.voices[name].feed(frame, m)
        elif m.kind == dec.CONTROL:
            cc, val = m.a, m.b
            if cc == dec.CC_VOLUME:
                self._voice_of(ch).volume = (val / 127.0) ** 2
            elif cc == dec.CC_EXPRESSION:
                v = self._voice_of(ch)
                if not v.has_expression:
                    v.expression_gain = (val / 127.0) ** 2
                v.feed(frame, m)
            elif cc in (dec.CC_SUSTAIN, dec.CC_ALL_SOUND_OFF, dec.CC_RESET_ALL_CONTROLLERS, dec.CC_ALL_NOTES_OFF):
                for v in self.voices.values():
                    v.feed(frame, m)
                    if cc == dec.CC_ALL_SOUND_OFF:
                        v.kill = True
                if cc in (dec.CC_ALL_SOUND_OFF, dec.CC_ALL_NOTES_OFF):
                    for key in [k for k in self._held if k[0] == ch]:
                        del self._held[key]
            else:
                self._voice_of(ch).feed(frame, m)
        elif m.kind == dec.PROGRAM:
            name = LIVE_PROGRAMS.get(m.a)
            if name in self.voices:
                self.channel_instrument[ch] = name
            else:
                self.unknown_programs += 1
                key = f"program {m.a} on ch{ch + 1}"
                if key not in self.ignored and len(self.ignored) < 16:
                    self.ignored[key] = None
        elif m.kind == dec.PITCH_BEND:
            self._voice_of(ch).feed(frame, m)

    def ignored_status(self) -> str:
        """The status line's field naming what was ignored (channels, programs), or ""."""
        return ("ignored: " + ", ".join(self.ignored)) if self.ignored else ""

    # -- rendering ---------------------------------------------------------------------------
    def render_step(self) -> np.ndarray:
        """Render the next ``frames_per_step`` frames: float32 (m,) mono at ``out_rate``. Without resampling
        the array is the engine's own mix buffer, valid until the next call (copy it to keep it): the
        per-hop path allocates no audio."""
        t0 = time.perf_counter()
        n = self.frames_per_step
        f0 = self.frame
        self.onsets = []
        if self.events:
            for frame, event in self.events.due(f0, f0 + n):
                self._apply(frame, event, f0)
        mix = self._mix
        mix[:] = 0.0
        if self._pool is None:
            parts = [v.render(f0, n) for v in self.voices.values()]
        else:  # the model runtimes and the phase code release the GIL: voices overlap on the cores
            first, *rest = self.voices.values()
            futures = [self._pool.submit(v.render, f0, n) for v in rest]
            parts = [first.render(f0, n)] + [f.result() for f in futures]
        for audio in parts:  # summed in voice order: the same mix either way
            if audio is not None:
                mix += audio
        out = np.multiply(mix, self.master, out=mix)
        self.frame = f0 + n
        if self._resampler is not None:
            out = self._resampler.resample_chunk(out)
        dt = time.perf_counter() - t0
        self.busy_s += dt
        self.step_times[self.steps % STEP_LOG] = dt  # a fixed ring: the status line's step p99
        self.steps += 1
        self.rendered_s += n * self.hop / self.sample_rate
        return out

    def step_ms(self, q: float = 99.0) -> float:
        """The ``q``-th percentile of the last ``STEP_LOG`` render steps' durations, ms (nan before any)."""
        n = min(self.steps, STEP_LOG)
        return float(np.percentile(self.step_times[:n], q) * 1e3) if n else float("nan")

    def close(self) -> None:
        """Stop the voice threads (``serve.voice_threads`` > 1); the engine renders in one thread after."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def render_offline(self, events: list[tuple[int, bytes]], n_frames: int) -> np.ndarray:
        """Render ``n_frames`` frames with all ``events`` ((sample_time at model rate, data) pairs or
        :class:`MidiEvent`) queued up front (use ``schedule="exact"``). Returns float32 (N,) at ``out_rate``."""
        for e in sorted(events, key=lambda e: e[0]):
            self.push(e[0], e[1])
        chunks = []
        while self.frame < n_frames:
            chunks.append(self.render_step().copy())
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    @property
    def notes_held(self) -> int:
        return sum(v.sounding for v in self.voices.values())

    @property
    def rtf(self) -> float:
        """Real-time factor: render time / audio time (< 1 keeps up)."""
        return self.busy_s / self.rendered_s if self.rendered_s else 0.0

    @property
    def latency_frames(self) -> int:
        """Frames between applying a note-on and its first output sample (model + phase delay)."""
        return self.delay_frames
