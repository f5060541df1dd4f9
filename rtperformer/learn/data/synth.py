"""Offline FluidSynth rendering of a :class:`Performance` to mono float32 audio (pyfluidsynth, no driver).

Each note gets its own MIDI channel from a pool (same program on all), so vibrato (pitch bend) is per
note even in double stops; CC11 goes to every channel of the pool. Reverb and chorus are off (a dry
instrument). Audio is rendered with ``fluid_synth_write_float`` at sample-accurate event times.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtperformer.learn.data.humanize import Performance
from rtperformer.errors import UserError

FLUID_R3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MUSESCORE_GENERAL = "/usr/share/sounds/sf3/MuseScore_General_Full.sf3"
GAIN = 0.5  # synth.gain (FluidSynth default 0.2): single notes peak around 0.1
N_CHANNELS = 12
BEND_STEP = 240  # samples between pitch-bend updates (5 ms at 48 kHz)
BEND_RANGE_CENTS = 200.0  # FluidSynth default pitch-bend range: 2 semitones
TAIL_SECONDS = 1.0


@dataclass(frozen=True)
class Patch:
    soundfont: str
    program: int
    bank: int = 0


def find_musescore_soundfont() -> str | None:
    """The musescore-general-soundfont file (asks dpkg when not at the usual path)."""
    if Path(MUSESCORE_GENERAL).is_file():
        return MUSESCORE_GENERAL
    if shutil.which("dpkg"):
        try:
            out = subprocess.run(["dpkg", "-L", "musescore-general-soundfont"], capture_output=True,
                                 text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in out.splitlines():
            if line.endswith((".sf3", ".sf2")) and Path(line).is_file():
                return line
    return None


def default_patch(instrument: str) -> Patch:
    """Violin: FluidR3 program 40; flute: FluidR3 73; cello: MuseScore General 42 (3 dynamic layers)."""
    if instrument == "violin":
        return Patch(FLUID_R3, 40)
    if instrument == "flute":
        return Patch(FLUID_R3, 73)
    if instrument == "cello":
        sf = find_musescore_soundfont()
        return Patch(sf or FLUID_R3, 42)
    raise UserError(f"unknown instrument {instrument!r} (violin, cello, flute)")


def fluidsynth_available(soundfont: str = FLUID_R3) -> bool:
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):
        return False
    return Path(soundfont).is_file()


def performance_events(perf: Performance, sample_rate: int) -> list[tuple[int, int, int, int, int]]:
    """The MIDI events FluidSynth plays for ``perf``: (sample, order, type, channel/key, value) sorted; types:
    0 cc11 (every channel), 1 off (key = channel*128 + pitch), 2 bend (-8192..8191), 3 on (value: velocity).
    Each note gets its own channel of the pool, so its vibrato (pitch bend) is its own."""
    sr = int(sample_rate)
    ev: list[tuple[int, int, int, int, int]] = []
    for t, v in perf.cc11:
        ev.append((int(round(t * sr)), 0, 0, -1, int(v)))
    free_at = [0] * N_CHANNELS
    for n in perf.notes:
        s0 = int(round(n.start * sr))
        s1 = max(int(round(n.end * sr)), s0 + 1)
        # the channel free for longest (round robin over released channels)
        ch = min(range(N_CHANNELS), key=lambda c: (free_at[c] > s0, free_at[c]))
        free_at[ch] = s1 + int(0.3 * sr)  # leave room for the release before reusing the bend
        ev.append((s0, 2, 2, ch, 0))
        ev.append((s0, 3, 3, ch * 128 + n.pitch, n.velocity))
        ev.append((s1, 1, 1, ch * 128 + n.pitch, 0))
        v = n.vibrato
        if v is not None:
            t = s0 + int(v.delay * sr)
            t = t - (t % BEND_STEP)
            while t < s1:
                dt = (t - s0) / sr - v.delay
                if dt >= 0:
                    amp = v.depth * min(1.0, dt / max(v.ramp, 1e-3))
                    cents = amp * np.sin(2 * np.pi * v.rate * dt + v.phase)
                    ev.append((t, 2, 2, ch, int(round(cents / BEND_RANGE_CENTS * 8192))))
                t += BEND_STEP
    ev.sort()
    return ev


class Renderer:
    """A FluidSynth synth with one patch loaded; ``render(perf)`` -> float32 (N,) at ``sample_rate``."""

    def __init__(self, patch: Patch, sample_rate: int = 48000, gain: float = GAIN):
        try:
            import fluidsynth
        except (ImportError, OSError) as exc:
            raise UserError(f"pyfluidsynth/libfluidsynth not available: {exc}") from None
        if not Path(patch.soundfont).is_file():
            raise UserError(f"soundfont not found: {patch.soundfont}")
        self.patch = patch
        self.sample_rate = int(sample_rate)
        self._fs = fluidsynth.Synth(gain=float(gain), samplerate=float(sample_rate), channels=16)
        self._fs.setting("synth.reverb.active", 0)
        self._fs.setting("synth.chorus.active", 0)
        self._fs.setting("synth.polyphony", 256)
        self._sfid = self._fs.sfload(patch.soundfont)
        if self._sfid < 0:
            raise UserError(f"FluidSynth cannot load soundfont {patch.soundfont}")
        fl = fluidsynth._fl
        self._write = fl.fluid_synth_write_float
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._write.restype = ctypes.c_int

    def close(self) -> None:
        if self._fs is not None:
            self._fs.delete()
            self._fs = None

    def _reset(self) -> None:
        fs = self._fs
        for ch in range(N_CHANNELS):
            fs.cc(ch, 123, 0)  # all notes off
            fs.cc(ch, 121, 0)  # reset controllers (CC11 -> 127, bend -> 0)
            fs.program_select(ch, self._sfid, self.patch.bank, self.patch.program)
            fs.cc(ch, 11, 127)
            fs.pitch_bend(ch, 0)
        # let released voices die out
        self._render(self.sample_rate // 2)

    def _render(self, n: int) -> np.ndarray:
        left = np.zeros(n, np.float32)
        right = np.zeros(n, np.float32)
        if n > 0:
            self._write(self._fs.synth, n, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
        return 0.5 * (left + right)

    def _events(self, perf: Performance) -> list[tuple[int, int, int, int, int]]:
        return performance_events(perf, self.sample_rate)

    def render(self, perf: Performance, tail: float = TAIL_SECONDS) -> np.ndarray:
        """Audio (N,) float32 mono, N = (perf.duration + tail) * sample_rate."""
        self._reset()
        fs = self._fs
        total = int(round((perf.duration + tail) * self.sample_rate))
        chunks = []
        pos = 0
        for sample, _, typ, a, val in self._events(perf):
            sample = min(sample, total)
            if sample > pos:
                chunks.append(self._render(sample - pos))
                pos = sample
            if typ == 0:
                for ch in range(N_CHANNELS):
                    fs.cc(ch, 11, val)
            elif typ == 1:
                fs.noteoff(a // 128, a % 128)
            elif typ == 2:
                fs.pitch_bend(a, val)
            else:
                fs.noteon(a // 128, a % 128, val)
        if total > pos:
            chunks.append(self._render(total - pos))
        for ch in range(N_CHANNELS):
            fs.cc(ch, 123, 0)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
