"""``serve`` with no JACK server plays through PortAudio's ALSA host API into ALSA's ``default`` PCM.

There is no sound card here: an .asoundrc in a temporary HOME makes ``default`` a ``file`` plugin (over the
``null`` PCM, behind ``plug`` + ``linear`` so the file holds interleaved S16_LE stereo) whose file is a
named pipe. This test reads the pipe at the stream's sample rate, like a sound card's clock: ALSA's writes
block while the pipe is full, so the stream runs in real time and every sample played is recorded.

MIDI comes from ``serve --midi-file`` (a real-time replay of a MIDI file through the same event queue as a
port). The ALSA *sequencer* (MIDI over ALSA) cannot be tested on these machines: it needs /dev/snd/seq,
which they lack; MIDI ports are tested on JACK (tests/test_jack_serve.py, tests/test_routing.py).

Checks: the server chose ALSA (no JACK server), each note sounds at its pitch with the shipped violin, and
no held note has a dropout (a run of exact zeros inside it: a zero-filled block).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from audio_checks import dominant_midi, rms

REPO = Path(__file__).resolve().parents[1]
RATE = 44100  # PortAudio's default rate for ALSA's default PCM (the rate serve opens it at)
FRAME_BYTES = 4  # S16_LE stereo
NOTES = [(67, 0.8), (72, 0.8), (69, 0.8)]
GAP = 0.6  # silence between notes (longer than release + gate)
ASOUNDRC = """pcm.!default {{
  type plug
  slave.pcm "rtps16"
}}
pcm.rtps16 {{
  type linear
  slave {{ pcm "rtpfile"; format S16_LE }}
}}
pcm.rtpfile {{
  type file
  slave.pcm "null"
  file "{path}"
  format "raw"
}}
pcm.null {{ type null }}
"""


class PacedReader:
    """Reads a named pipe at ``RATE`` frames per second (catching up when late), keeping every byte."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            fcntl.fcntl(self.fd, 1031, 4096)  # F_SETPIPE_SZ: a small pipe = a small device buffer
        except OSError:
            pass
        self.data = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        t0, taken = None, 0
        while not self.stop.is_set():
            if t0 is None:  # the clock starts with the first byte
                try:
                    b = os.read(self.fd, FRAME_BYTES * 256)
                except BlockingIOError:
                    b = b""
                if b:
                    t0 = time.perf_counter()
                    self.data += b
                    taken = len(b)
                else:
                    time.sleep(0.002)
                continue
            due = int((time.perf_counter() - t0) * RATE) * FRAME_BYTES
            while taken < due:
                try:
                    b = os.read(self.fd, min(due - taken, 65536))
                except BlockingIOError:
                    break
                if not b:
                    break
                self.data += b
                taken += len(b)
            time.sleep(0.0025)

    def close(self) -> np.ndarray:
        """Stop; the recording as float (frames, 2)."""
        self.stop.set()
        self.thread.join()
        os.close(self.fd)
        n = len(self.data) // FRAME_BYTES * FRAME_BYTES
        return np.frombuffer(bytes(self.data[:n]), dtype="<i2").reshape(-1, 2).astype(np.float64) / 32768.0


def _zero_runs(x: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(start, length) of runs of exact zeros at least ``min_len`` long."""
    z = np.concatenate([[False], x == 0.0, [False]])
    d = np.diff(z.astype(np.int8))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends) if e - s >= min_len]


def _alsa_env(tmp_path: Path) -> tuple[Path, dict]:
    """(the named pipe ALSA's default PCM writes to, an environment with that .asoundrc and no JACK)."""
    home = tmp_path / "home"
    home.mkdir()
    fifo = tmp_path / "pcm.raw"
    os.mkfifo(fifo)
    (home / ".asoundrc").write_text(ASOUNDRC.format(path=fifo))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACK")}
    env.update(HOME=str(home), JACK_DEFAULT_SERVER="rtp-no-such-server", JACK_NO_START_SERVER="1")
    return fifo, env


needs_violin = pytest.mark.skipif(not (REPO / "models" / "violin" / "model.safetensors").is_file(),
                                  reason="no shipped violin")


@needs_violin
def test_serve_plays_through_alsa_without_jack(tmp_path):
    fifo, env = _alsa_env(tmp_path)
    melody = tmp_path / "melody.mid"
    _write_with_rests(melody, NOTES, GAP)
    total = sum(d for _, d in NOTES) + GAP * len(NOTES) + 1.0
    reader = PacedReader(fifo)
    try:
        r = subprocess.run([sys.executable, "-m", "rtperformer", "serve", "--midi-file", str(melody), "--model", "violin",
                            "--config", "serve-steady", "--duration", f"{total:.1f}"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        x = reader.close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "audio=default" in r.stdout and "ALSA/" in r.stderr, (r.stdout, r.stderr[-2000:])
    mono = x[:, 0]
    print(f"\n{len(mono) / RATE:.2f} s reached ALSA; server: {r.stderr.strip().splitlines()[-1]}")
    assert len(mono) > 0.9 * total * RATE, f"only {len(mono) / RATE:.2f} s reached ALSA"
    loud = np.flatnonzero(np.abs(mono) > 1e-3)
    assert len(loud), "nothing but silence reached ALSA"
    first = int(loud[0])  # the first note's onset: the melody's times count from here
    at = 0.0
    for pitch, dur in NOTES:
        body = mono[first + int((at + 0.12) * RATE): first + int((at + dur - 0.05) * RATE)]
        assert rms(body) > 1e-3, f"note {pitch} is silent"
        assert abs(dominant_midi(body.astype(np.float32), RATE) - pitch) <= 0.5, f"note {pitch} off pitch"
        gaps = _zero_runs(body, 32)
        assert not gaps, f"note {pitch}: dropouts (start, samples) {gaps[:5]}"
        at += dur + GAP


@needs_violin
def test_demo_plays_through_alsa_without_jack(tmp_path):
    """``python -m rtperformer.live.demo --audio-device default``: the demo on ALSA's default PCM; what ALSA
    received is what the demo recorded (same length within a period or two, sounding)."""
    fifo, env = _alsa_env(tmp_path)
    melody = tmp_path / "melody.mid"
    _write_with_rests(melody, NOTES[:1], GAP)
    reader = PacedReader(fifo)
    try:
        r = subprocess.run([sys.executable, "-m", "rtperformer.live.demo", "--midi", str(melody), "--audio-device",
                            "default", "--model", "violin", "--out", str(tmp_path / "out")],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        x = reader.close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "playing through default (ALSA)" in r.stdout, r.stdout
    import soundfile as sf

    took, rate = sf.read(tmp_path / "out" / "demo.wav", dtype="float32", always_2d=True)
    assert rate == RATE and rms(x[:, 0]) > 1e-3
    assert abs(len(x) - len(took)) < 0.25 * RATE, (len(x), len(took))


def _write_with_rests(path: Path, notes, gap: float) -> None:
    """Program 40 (violin), then each (pitch, seconds) followed by ``gap`` seconds of rest."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=500000))  # 120 bpm: 960 ticks per second
    tr.append(mido.Message("program_change", program=40, time=0))
    rest = 0
    for pitch, dur in notes:
        tr.append(mido.Message("note_on", note=pitch, velocity=90, time=rest))
        tr.append(mido.Message("note_off", note=pitch, velocity=0, time=int(dur * 960)))
        rest = int(gap * 960)
    mid.save(str(path))
