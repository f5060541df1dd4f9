"""Shared checks on recorded audio for the packaging, ALSA and routing tests (imported by test modules)."""

from __future__ import annotations

import numpy as np


def rms(x: np.ndarray) -> float:
    """Root mean square of a 1-D signal (0 for an empty one)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def dominant_midi(x: np.ndarray, rate: int) -> float:
    """A held note's pitch as fractional MIDI: median YIN f0 over ``x`` (1-D). A spectral-peak pick would
    take a strong second harmonic, common on the violin, for the pitch an octave up."""
    import librosa

    seg = x if len(x) >= 4096 else np.pad(x, (0, 4096 - len(x)))
    f0 = librosa.yin(seg.astype(np.float32), fmin=100.0, fmax=3000.0, sr=rate, frame_length=2048)
    return float(69 + 12 * np.log2(np.median(f0) / 440.0))


def write_melody(path, notes, program: int = 40, channel: int = 0, tempo_bpm: float = 120.0) -> None:
    """A one-track MIDI file: a program change, then ``notes`` = [(pitch, seconds), ...] back to back."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm)))
    tr.append(mido.Message("program_change", program=program, channel=channel, time=0))
    ticks_per_s = 480 * tempo_bpm / 60.0
    for pitch, dur in notes:
        tr.append(mido.Message("note_on", note=pitch, velocity=90, channel=channel, time=0))
        tr.append(mido.Message("note_off", note=pitch, velocity=0, channel=channel, time=int(dur * ticks_per_s)))
    mid.save(str(path))
