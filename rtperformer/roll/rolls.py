"""Model inputs: the rolls at the model's frame rate and their layout as the model's input channels (numpy only).

Frames are centred STFT frames: frame t is at sample t*hop. A time becomes a frame in two steps, both
rounded half up: seconds -> the sample clock (``round(s*sample_rate)``), then sample -> frame
(``round(sample/hop)``). This equals ``round(s*frame_rate)`` except exactly at ties, and it
is what the pianoroll does with sample-stamped events (pianoroll.py), so offline and live rolls agree exactly.

A note from s0 to s1 is on in frames ``f0 <= t < max(f1, f0+1)``. The arrays (:class:`Rolls`):

- ``roll`` (128, T) {0,1}: a pitch is on while any note of it is held (by key or by sustain pedal).
- ``onoff`` (128, T) {-1,0,+1}: +1 at every note's first frame (a re-strike of a held pitch included; notes
  sounding at frame 0 start there), -1 at the first frame where the pitch is off again.
- ``velocity`` (128, T): velocity/127 of the most recently started note holding the pitch, else 0.
- ``expression`` (1, T): CC11/127 (1.0 before any CC11). With several channels in one roll, the largest
  current CC11 among the channels that have sent anything.
- ``position`` (256, T) uint8, note-position counters (:func:`advance_positions`): rows 0:128 frames since
  the onset of the note holding the pitch (0 at its onset frame; 255 when not held, saturating at 254),
  rows 128:256 frames since the pitch was released (0 at its -1 frame; 255 while held, before any release,
  and saturating). The model sees them through decay tables (``model.onset_decay_frames``,
  ``model.release_decay_frames``: channel value ``exp(-counter / tau)``, 0 at 255) when its config asks.
- ``bend`` (1, T) float32, semitones: the pitch bend of the frame, the mean over the notes held in it of
  their channel's pitch bend plus the mod-wheel vibrato of the note
  (:class:`~rtperformer.roll.painter.BendSpec`: a triangle LFO started at the note's onset, depth
  ``mod_cents`` * CC1/127, FluidSynth's default CC1 modulator). With no note held, the notes held last go on
  (their bend and LFO: what their release tail plays). The model sees it as one channel, semitones / :data:`BEND_INPUT_SEMITONES` (``model.bend_input``); the audio stage
  warps the model's frames by it (``model.bend_warp``).

How events become these arrays: tracker.py (MIDI messages at frames -> notes, pedal, expression, bend; the
event semantics), painter.py (notes -> frame ranges of the arrays; the bend row's LFO), notes.py (whole clips
from notes in seconds), pianoroll.py (stamped events -> frames, live and offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtperformer.midi.events import seconds_to_sample


N_PITCHES = 128
POS_NONE = 255  # position counter: not held (onset rows) / held or never released (release rows)
# Velocity written into the velocity roll when the render config is not velocity sensitive.
NOMINAL_VELOCITY = 100
# The model's bend channel is the bend in semitones / this (a fixed scale, whatever serve.pitch_bend_range is).
BEND_INPUT_SEMITONES = 2.0


@dataclass
class Rolls:
    """Model input rolls, float32: roll, onoff, velocity (128, T); expression (1, T); uint8 ``position``
    counters (256, T) or None (not painted: :func:`stack_inputs` derives them from roll and onoff); ``bend``
    (1, T) semitones or None (none: 0)."""

    roll: np.ndarray
    onoff: np.ndarray
    velocity: np.ndarray
    expression: np.ndarray
    position: np.ndarray | None = None
    bend: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.roll.shape[1])

    @classmethod
    def zeros(cls, n_frames: int) -> "Rolls":
        return cls(
            np.zeros((N_PITCHES, n_frames), np.float32),
            np.zeros((N_PITCHES, n_frames), np.float32),
            np.zeros((N_PITCHES, n_frames), np.float32),
            np.ones((1, n_frames), np.float32),
            np.full((2 * N_PITCHES, n_frames), POS_NONE, np.uint8),
            np.zeros((1, n_frames), np.float32),
        )

    def head(self, n: int) -> "Rolls":
        """Views of the first ``n`` frames of every array."""
        pos = None if self.position is None else self.position[:, :n]
        bend = None if self.bend is None else self.bend[:, :n]
        return Rolls(self.roll[:, :n], self.onoff[:, :n], self.velocity[:, :n], self.expression[:, :n], pos, bend)

    def save(self, path) -> None:
        """Write the four arrays to an .npz file."""
        np.savez_compressed(path, roll=self.roll, onoff=self.onoff, velocity=self.velocity, expression=self.expression)

    @classmethod
    def load(cls, path) -> "Rolls":
        with np.load(path) as z:
            return cls(*(z[k].astype(np.float32) for k in ("roll", "onoff", "velocity", "expression")))


def position_taus(model_cfg: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(onset decay constants, release decay constants) in frames; () each for configs without them."""
    return (tuple(getattr(model_cfg, "onset_decay_frames", ()) or ()),
            tuple(getattr(model_cfg, "release_decay_frames", ()) or ()))


def input_channels(model_cfg: Any) -> int:
    """256 + 128 (velocity roll, if model_cfg.velocity) + 1 (expression, if model_cfg.expression)
    + 128 per onset and per release decay constant + 1 (bend, if model_cfg.bend_input)."""
    on, off = position_taus(model_cfg)
    return (2 * N_PITCHES + (N_PITCHES if model_cfg.velocity else 0) + (1 if model_cfg.expression else 0)
            + N_PITCHES * (len(on) + len(off)) + (1 if getattr(model_cfg, "bend_input", False) else 0))


def decay_table(tau: float) -> np.ndarray:
    """(256,) float32 lookup: ``exp(-c / tau)`` for counter c < 255, 0 at :data:`POS_NONE`."""
    t = np.exp(-np.arange(256, dtype=np.float64) / float(tau)).astype(np.float32)
    t[POS_NONE] = 0.0
    return t


def advance_positions(roll: np.ndarray, onoff: np.ndarray, onset_c: np.ndarray, release_c: np.ndarray,
                      out: np.ndarray) -> None:
    """Note-position counters of frames ``roll``/``onoff`` (128, n) into ``out`` (256, n) uint8.

    ``onset_c``/``release_c`` (128,) uint8: the counters of the frame before the first column; updated to
    the last column's (carry them to the next call). Onset row: 0 at a +1 frame, +1 per held frame
    (saturating at 254), 255 when not held. Release row: 0 at a -1 frame, +1 per frame off (saturating at
    254), 255 while held and until the first release.
    """
    o = onset_c.astype(np.int16)
    r = release_c.astype(np.int16)
    for t in range(roll.shape[1]):
        held = roll[:, t] > 0.5
        on = onoff[:, t]
        o = np.where(held, np.where(on > 0.5, 0, np.minimum(o + 1, POS_NONE - 1)), POS_NONE)
        r = np.where(held, POS_NONE, np.where(on < -0.5, 0, np.where(r == POS_NONE, POS_NONE, np.minimum(r + 1, POS_NONE - 1))))
        out[:N_PITCHES, t] = o
        out[N_PITCHES:, t] = r
    onset_c[:] = o
    release_c[:] = r


def positions_of(roll: np.ndarray, onoff: np.ndarray) -> np.ndarray:
    """(256, T) uint8 counters of a whole clip that starts at frame 0 (nothing held before it)."""
    out = np.empty((2 * N_PITCHES, roll.shape[1]), np.uint8)
    advance_positions(roll, onoff, np.full(N_PITCHES, POS_NONE, np.uint8), np.full(N_PITCHES, POS_NONE, np.uint8), out)
    return out


def position_channels(position: np.ndarray, model_cfg: Any) -> list[np.ndarray]:
    """The decayed channels (128, T) float32 of ``model_cfg``: one per onset tau, then one per release tau."""
    on, off = position_taus(model_cfg)
    return ([decay_table(t)[position[:N_PITCHES]] for t in on]
            + [decay_table(t)[position[N_PITCHES:]] for t in off])


def stack_inputs(rolls: Rolls, model_cfg: Any, out: np.ndarray | None = None) -> np.ndarray:
    """(C_in, T) float32: [roll 0:128, onoff 128:256, velocity (if), expression (if), onset decays
    (128 each, if), release decays (128 each, if), bend / BEND_INPUT_SEMITONES (1, if)]. Without painted
    ``rolls.position`` the counters are derived from roll and onoff as a clip starting at frame 0; without
    ``rolls.bend`` the bend is 0."""
    parts = [rolls.roll, rolls.onoff]
    if model_cfg.velocity:
        parts.append(rolls.velocity)
    if model_cfg.expression:
        parts.append(rolls.expression)
    if any(position_taus(model_cfg)):
        pos = rolls.position if rolls.position is not None else positions_of(rolls.roll, rolls.onoff)
        parts.extend(position_channels(pos, model_cfg))
    if getattr(model_cfg, "bend_input", False):
        T = rolls.roll.shape[1]
        parts.append(np.zeros((1, T), np.float32) if rolls.bend is None
                     else rolls.bend * np.float32(1.0 / BEND_INPUT_SEMITONES))
    if out is None:
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)
    np.concatenate(parts, axis=0, out=out)
    return out


def sample_to_frame(sample: int, hop: int) -> int:
    """Centred frame nearest to ``sample`` (half up)."""
    return (int(sample) + hop // 2) // hop


def seconds_to_frame(seconds: float, audio_cfg: Any) -> int:
    """Frame of a time in seconds: via the sample clock, each step rounded half up."""
    return sample_to_frame(seconds_to_sample(seconds, audio_cfg.sample_rate), audio_cfg.hop)


def n_frames_for(seconds: float, audio_cfg: Any) -> int:
    """Frames of a centred STFT of ``seconds`` of audio (:func:`rtperformer.dsp.features.n_frames` of
    N = round(seconds*sr) samples)."""
    from rtperformer.dsp.features import n_frames

    return n_frames(seconds_to_sample(seconds, audio_cfg.sample_rate), audio_cfg.hop)
