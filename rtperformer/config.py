"""Settings as frozen dataclasses, loaded from YAML and checked against a fixed registry.

Every YAML file under configs/ maps onto :class:`Config`. Its top-level keys are the section names
below (``audio``, ``model``, ``render``, ``serve``, ``train``, ``data``) plus ``name``; each section's keys are
the fields of its dataclass. Any other key is an error naming its dotted path, so a typo never passes
silently; so is a value out of its range (:data:`RULES`: ``serve.event_queue: 0``, ``audio.hop: 0``, an
instrument name in ``serve.channel_map`` that does not exist) and any float that is not finite (``.inf``,
``.nan``), each as one line at load time. YAML is read with ``yaml.safe_load`` only; nothing in a config names a Python class.

Ownership: each section belongs to one part of the code (audio/model -> rtperformer.model and dsp,
render -> rendering and the engine, serve -> the live server, train/data -> training and corpus).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from rtperformer.errors import UserError

from rtperformer import paths

CONFIG_DIR = paths.SHIPPED_CONFIGS  # the shipped configs (a link to configs/ in a checkout)


class ConfigError(UserError):
    """A config file or value that does not fit the registry."""


@dataclass(frozen=True)
class AudioConfig:
    """Sample rate and STFT of the model's spectrogram frames (centred frames, Hann window)."""

    sample_rate: int = 48000
    n_fft: int = 1024
    hop: int = 256
    # Features are log1p(power_scale * |S|^2): scale lifts quiet renders out of log1p's linear region.
    power_scale: float = 1.0

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


@dataclass(frozen=True)
class ModelConfig:
    """PerformanceNet topology.

    ``form``: ``paper`` (non-causal U-Net with InstanceNorm, MaxPool and transposed convs, as published) or
    ``streaming`` (the same topology with causal dilated convs, per-frame normalisation, explicit state).
    ``channels``: ContourNet encoder widths after the 128-pitch input (paper: 256..4096).
    ``onoff_channels``: on/off encoder widths (paper: 256, 512, 1024).
    ``texture_bands``: bands of the multi-band residual blocks of TextureNet (paper: 2, 4, 8, 16).
    ``lookahead_frames``: how many future frames an output frame may see (streaming form; 0 = causal).
    ``velocity`` / ``expression``: extra inputs (a 128-pitch velocity roll; one CC11 expression channel).
    ``decoder_channels``: widths of the decoder steps, deepest first; the last one is TextureNet's width
    (paper: 2048, 1024, 1024, 1024). Empty = the encoder widths mirrored.
    ``upsample_kernels``: kernel of each decoder step's up-conv, deepest first (paper: 6, 4, 3, 2). Empty = 2.
    ``onset_decay_frames`` / ``release_decay_frames``: note-position inputs (issue 12), one 128-pitch channel
    per time constant: ``exp(-frames since the note's onset / tau)`` while held, ``exp(-frames since the
    release / tau)`` while off (rtperformer.roll.rolls). Empty (default) = none, the inputs of older models.
    ``bend_input``: one more input channel, the frame's pitch bend (the mean over held notes of their
    channel's bend plus the mod-wheel vibrato, semitones / 2; rtperformer.roll.rolls). Off for older models.
    ``bend_warp``: the audio stage warps the model's frames by the frame's bend (the model draws the
    unbent note; training with ``train.dewarp_bend`` de-warps the targets to match). Off: the model draws
    the bend itself (it needs ``bend_input``) and nothing warps.
    ``mod_vibrato_cents`` / ``mod_vibrato_hz``: the vibrato the mod wheel (CC1) adds to the bend: a
    triangle LFO per note from its onset, depth cents * CC1/127 (FluidSynth's default CC1 modulator: 50
    cents, triangle), at the soundfont's vibrato LFO rate (8.176 Hz default; the MuseScore cello 5.0).
    """

    form: str = "streaming"
    n_pitches: int = 128
    channels: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    onoff_channels: tuple[int, ...] = (256, 512, 1024)
    texture_bands: tuple[int, ...] = (2, 4, 8, 16)
    kernel_size: int = 3
    norm: str = "layer"  # paper config sets "instance"; the streaming form needs a per-frame norm
    leaky_slope: float = 0.01
    lookahead_frames: int = 0
    velocity: bool = False
    expression: bool = False
    decoder_channels: tuple[int, ...] = ()
    upsample_kernels: tuple[int, ...] = ()
    onset_decay_frames: tuple[float, ...] = ()
    release_decay_frames: tuple[float, ...] = ()
    bend_input: bool = False
    bend_warp: bool = True
    mod_vibrato_cents: float = 50.0
    mod_vibrato_hz: float = 8.176


@dataclass(frozen=True)
class RenderConfig:
    """How frames become audio: render mode, chunking and phase reconstruction."""

    mode: str = "streaming"  # streaming | window
    phase: str = "rtpghi"  # rtpghi | rtisila | gla
    chunk_frames: int = 64  # offline rendering chunk (bounded memory)
    window_frames: int = 128  # window mode: length of the re-rendered pianoroll window
    crossfade_frames: int = 4  # window mode: crossfade between consecutive chunks
    phase_lookahead: int = 0  # RTPGHI: 0 or 1 frame
    score_phase_below_bins: float = 4.0  # RTPGHI: score-informed phase while a held f0 is below this many bins (0: off)
    rtisila_lookahead: int = 3
    rtisila_iterations: int = 4
    gla_iterations: int = 64
    gla_momentum: float = 0.99
    release_seconds: float = 0.5  # silence rendered after the last note-off
    velocity_sensitive: bool = True  # keep MIDI velocity in the input rolls
    noise: bool = True  # texture: add the model's noise.json floor as seeded noise (rtperformer/dsp/noise.py)
    noise_seed: int = 0  # its generator's seed (with the instrument's name): the same noise live and offline


@dataclass(frozen=True)
class ServeConfig:
    """Live server settings."""

    block_size: int = 0  # audio frames per callback; 0 = the device's own period (JACK's period)
    pitch_bend_range: float = 2.0  # semitones for a full bend
    channel_map: Mapping[int, str] = field(default_factory=dict)  # MIDI channel (0-15) -> instrument
    default_instrument: str = "violin"
    gain: float = 1.0
    channels: int = 2  # audio output channels (the mono mix on each)
    backend: str = "onnx"  # streaming model runtime (rtperformer.backends; unavailable = exit 2; "auto" = fastest)
    step_frames: int = 1  # streaming mode: frames per model step
    window_step_frames: int = 4  # window mode: frames rendered per offline window run
    window_future_frames: int = 8  # window mode: future frames filled by extending held notes
    gate: bool = True  # silence an instrument once no note has sounded for render.release_seconds
    torch_threads: int = 1  # intra-op threads of the render thread (0 = torch default)
    realtime_priority: int = 5  # SCHED_FIFO priority of the render thread when permitted (0 = off)
    event_queue: int = 4096  # preallocated MIDI event queue (messages)
    render_delay_ms: float = 1.0  # after a callback wait this long (at most 1/4 period) so MIDI of that cycle is in
    lead_samples: int = 0  # least audio queued beyond the next device period (samples); measured lead on top
    max_lead_samples: int = 2048  # most audio the pacing may queue beyond the next period (samples)
    istft_trim_hops: int = 2  # low-delay synthesis: skip each frame's first q hops (q*5.3 ms sooner; bench/results/latency_trim2.json)
    voice_threads: int = 3  # step instruments concurrently in up to this many threads (bench/dense.py: 3 on 2 cores)


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings."""

    loss: str = "mse"  # mse (paper) | l1 | l1_sc
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.05  # cosine decay to this share of learning_rate (1.0 = constant)
    batch_size: int = 16
    clip_frames: int = 256
    steps: int = 1000
    valid_every: int = 200
    seed: int = 0
    num_threads: int = 0  # 0 = torch default
    sc_weight: float = 1.0  # l1_sc: weight of spectral convergence next to L1
    flux_weight: float = 1.0  # l1_flux: weight of the L1 on frame-to-frame change next to L1
    onset_weight: float = 4.0  # l1_onset: weight of the first onset_frames frames of every note
    onset_frames: int = 12
    grad_clip: float = 0.0  # max global gradient norm; 0 = off (the paper has none)
    dewarp_bend: bool = False  # targets de-warped by the corpus's bend (vibrato) per frame (model.bend_warp models)
    valid_windows: int = 64  # fixed clip_frames windows cut from the valid split, spread over its pieces


@dataclass(frozen=True)
class DataConfig:
    """Training data: which corpus and instrument."""

    instrument: str = "violin"
    corpus_dir: str = "data/corpus"
    split_file: str = ""  # configs/splits/<instrument>.yaml
    musicnet: str = ""  # path to a MusicNet tree or musicnet.npz (optional)
    # corpus renders that training windows are drawn from: expressive | flat | deadpan
    kinds: tuple[str, ...] = ("expressive", "flat")


@dataclass(frozen=True)
class Config:
    name: str = "default"
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) that :func:`from_dict` reads back."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> "Config":
        return dataclasses.replace(self, **sections)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(path: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against a field's type hint and convert lists to tuples."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key '{path}' must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' must be a string, got {value!r}")
        return value
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' must be a list, got {value!r}")
        return tuple(_coerce(f"{path}[{i}]", item, v) for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict):
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        return {_coerce(f"{path} key", key_t, k): _coerce(f"{path}.{k}", val_t, v) for k, v in value.items()}
    return value


def _instruments() -> tuple[str, ...]:
    from rtperformer.midi.score import INSTRUMENTS

    return tuple(INSTRUMENTS)


def _instrument_map(m: Mapping[int, str]) -> str | None:
    for ch, name in m.items():
        if not 0 <= ch <= 15:
            return f"has channel {ch}; MIDI channels are 0-15"
        if name not in _instruments():
            return f"maps channel {ch} to '{name}', which is not an instrument ({', '.join(_instruments())})"
    return None


def _at_least(lo):
    return lambda v: None if v >= lo else f"must be >= {lo}, got {v}"


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}, got {v!r}"


# Range checks by dotted key: each returns None when the value is fine, else the reason (one line).
RULES: dict[str, Any] = {
    "audio.sample_rate": _at_least(1),
    "audio.n_fft": _at_least(2),
    "audio.hop": _at_least(1),
    "audio.power_scale": lambda v: None if v > 0 else f"must be > 0, got {v}",
    "model.form": _one_of("streaming", "paper"),
    "model.n_pitches": _at_least(1),
    "model.kernel_size": _at_least(1),
    "model.lookahead_frames": _at_least(0),
    "model.onset_decay_frames": lambda v: None if all(t > 0 for t in v) else f"must be > 0 frames, got {list(v)}",
    "model.release_decay_frames": lambda v: None if all(t > 0 for t in v) else f"must be > 0 frames, got {list(v)}",
    "model.mod_vibrato_cents": _at_least(0),
    "model.mod_vibrato_hz": _at_least(0),
    "render.mode": _one_of("streaming", "window"),
    "render.phase": _one_of("rtpghi", "rtisila", "gla"),
    "render.chunk_frames": _at_least(1),
    "render.window_frames": _at_least(1),
    "render.crossfade_frames": _at_least(0),
    "render.phase_lookahead": _at_least(0),
    "render.score_phase_below_bins": _at_least(0),
    "render.rtisila_lookahead": _at_least(0),
    "render.rtisila_iterations": _at_least(1),
    "render.gla_iterations": _at_least(1),
    "render.release_seconds": _at_least(0),
    "render.noise_seed": _at_least(0),
    "serve.block_size": _at_least(0),  # 0: the device's own period
    "serve.pitch_bend_range": _at_least(0),
    "serve.channel_map": _instrument_map,
    "serve.default_instrument": lambda v: None if v in _instruments() else
    f"'{v}' is not an instrument ({', '.join(_instruments())})",
    "serve.gain": _at_least(0),
    "serve.channels": _at_least(1),
    "serve.step_frames": _at_least(1),
    "serve.window_step_frames": _at_least(1),
    "serve.window_future_frames": _at_least(0),
    "serve.torch_threads": _at_least(0),
    "serve.realtime_priority": lambda v: None if 0 <= v <= 99 else f"must be 0 (off) to 99, got {v}",
    "serve.event_queue": _at_least(16),
    "serve.render_delay_ms": _at_least(0),
    "serve.lead_samples": _at_least(0),
    "serve.max_lead_samples": _at_least(0),
    "serve.istft_trim_hops": _at_least(0),
    "serve.voice_threads": _at_least(1),
    "train.learning_rate": lambda v: None if v > 0 else f"must be > 0, got {v}",
    "train.batch_size": _at_least(1),
    "train.clip_frames": _at_least(1),
    "train.steps": _at_least(0),
    "train.valid_every": _at_least(1),
    "train.num_threads": _at_least(0),
    "train.grad_clip": _at_least(0),
    "train.valid_windows": _at_least(0),
}


def _check(obj: Any, prefix: str) -> None:
    """Apply :data:`RULES` to a built section (``prefix``: its name)."""
    for f in dataclasses.fields(obj):
        rule = RULES.get(f"{prefix}.{f.name}")
        if rule is not None:
            why = rule(getattr(obj, f.name))
            if why:
                raise ConfigError(f"config key '{prefix}.{f.name}' {why}")
    if prefix == "audio" and obj.hop > obj.n_fft:
        raise ConfigError(f"config key 'audio.hop' ({obj.hop}) must not exceed audio.n_fft ({obj.n_fft})")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{prefix or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{path}' (known here: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, path)
        else:
            kwargs[key] = _coerce(path, hint, value)
    obj = cls(**kwargs)
    if prefix:
        _check(obj, prefix)
    return obj


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from nested mappings; unknown keys raise :class:`ConfigError`."""
    return _build(Config, data, "")


def load_config(path: str | Path) -> Config:
    """Read a YAML config. A bare name (``realtime-violin``) is looked up in the user config folder, then
    in the shipped configs (rtperformer.paths.find_config)."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        p = paths.find_config(str(path)) or p
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return from_dict(data)
