"""Around the engine without a sound card: port matching, MIDI file replay, the WAV recorder, the paced
output and a whole LiveSession (replay -> queue -> render thread -> ring -> callback -> recording)."""

import time

import numpy as np
import pytest
import soundfile as sf

from rtperformer.audio.output import PacedOutput
from rtperformer.audio.recorder import WavRecorder
from rtperformer.audio.ring import AudioRing, EventRing
from rtperformer.errors import UserError
from rtperformer.midi.queue import MidiQueue
from rtperformer.midi.sources import FileReplaySource, TimedMessage, match_port, read_midi_messages


def test_match_port_exact_substring_regex_and_errors():
    ports = ["Midi Through:Midi Through Port-0 14:0", "rtpsrv:in", "a2j:Keystation 88 [20] (capture): Keystation"]
    assert match_port(ports, "rtpsrv:in") == 1
    assert match_port(ports, "keystation") == 2
    assert match_port(ports, r"^Midi Th") == 0
    with pytest.raises(UserError, match="not found"):
        match_port(ports, "nanoKEY")
    with pytest.raises(UserError, match="ambiguous"):
        match_port(ports, "i")


def test_read_demo_midi_and_missing_file():
    from rtperformer.live.demo import ASSET

    assert ASSET.is_file(), f"the bundled {ASSET} is part of the package"
    msgs = read_midi_messages(ASSET)
    assert msgs and all(a.time <= b.time for a, b in zip(msgs, msgs[1:]))
    assert any(m.data[0] & 0xF0 == 0xC0 for m in msgs)
    with pytest.raises(UserError):
        read_midi_messages("/nonexistent.mid")


def test_file_replay_pushes_in_order_with_clock_stamps():
    q = EventRing(64)
    msgs = [TimedMessage(i * 0.01, bytes([0x90, 60 + i, 100])) for i in range(10)]
    ticks = iter(range(1000))
    src = FileReplaySource(q, lambda: next(ticks), msgs, start_delay=0.0).start()
    assert src.done.wait(5)
    src.close()
    got = [q.pop() for _ in range(10)]
    assert [g[1][1] for g in got] == list(range(60, 70))
    assert [g[0] for g in got] == list(range(10))


def test_recorder_drains_ring_and_renames(tmp_path):
    ring = AudioRing(1000, 2)
    out = tmp_path / "r.wav"
    rec = WavRecorder(out, 48000, 2, ring=ring, poll_s=0.005).start()
    data = np.random.default_rng(0).standard_normal((3000, 2)).astype(np.float32) * 0.1
    for i in range(0, 3000, 500):
        while ring.space < 500:
            time.sleep(0.002)
        ring.write(data[i:i + 500])
    rec.close()
    got, sr = sf.read(out, dtype="float32")
    assert sr == 48000 and np.array_equal(got, data)
    assert [p.name for p in tmp_path.iterdir()] == ["r.wav"]


def test_recorder_file_is_readable_up_to_the_last_second_while_recording(tmp_path):
    """The take is under its own name from the start and its header follows every second of audio: a copy
    taken mid-take (what a crash leaves) reads back the whole seconds written so far."""
    import shutil

    out = tmp_path / "take.wav"
    rec = WavRecorder(out, 8000, 1)
    data = np.random.default_rng(1).standard_normal((8000 * 3 + 500, 1)).astype(np.float32) * 0.1
    for i in range(0, len(data), 800):
        rec.write(data[i:i + 800])
    shutil.copy(out, tmp_path / "crash.wav")  # the file as a SIGKILL would leave it
    got, _ = sf.read(tmp_path / "crash.wav", dtype="float32", always_2d=True)
    assert len(got) >= 3 * 8000 and np.array_equal(got, data[: len(got)])
    assert open(tmp_path / "crash.wav", "rb").read(4) == b"RIFF"  # a plain WAV below 4 GiB
    rec.close()


def test_recorder_write_error_stops_recording_not_the_caller(tmp_path):
    """A write that fails (here a file size limit, as a full disk fails) sets ``error`` and drops the rest;
    the file keeps what was written."""
    import resource
    import signal

    out = tmp_path / "full.wav"
    rec = WavRecorder(out, 8000, 1)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_sig = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, old[1]))
    try:
        data = np.ones((8000 * 10, 1), np.float32) * 0.1
        for i in range(0, len(data), 800):
            rec.write(data[i:i + 800])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_sig)
    assert rec.error.startswith("recording stopped (file too large)") and rec.lost_frames > 0
    rec.close()
    got, _ = sf.read(out, dtype="float32")
    assert 8000 <= rec.frames <= len(got) < rec.frames + 800 and np.all(got == np.float32(0.1))


def test_recorder_missing_folder_is_user_error(tmp_path):
    with pytest.raises(UserError):
        WavRecorder(tmp_path / "nope" / "x.wav", 48000, 1)


def test_paced_output_sends_ring_and_records_exactly():
    ring, rec = AudioRing(4096, 1), AudioRing(48000, 2)
    x = np.arange(1, 1025, dtype=np.float32)
    ring.write(x)
    out = PacedOutput(ring, 48000, 256, 2, record_ring=rec, speed=8.0)
    out.start()
    deadline = time.monotonic() + 5
    while out.callbacks < 6 and time.monotonic() < deadline:
        time.sleep(0.005)
    out.close()
    got = rec.read()
    assert np.array_equal(got[:1024, 0], x) and np.array_equal(got[:1024, 1], x)
    assert np.all(got[1024:] == 0) and ring.underruns >= 1
    assert out.clock[0] == (out.callbacks - 1) * 256 and out.clock[2] == 256 and out.period == 256
    log = out.recent_callbacks()
    assert log[:, 0].tolist() == [256 * i for i in range(out.callbacks)] and np.all(np.diff(log[:, 1]) > 0)


def test_live_session_end_to_end_with_paced_output(tmp_path):
    import torch

    from rtperformer.config import from_dict
    from rtperformer.live.engine import Engine, Instrument
    from rtperformer.model.performancenet import build_model
    from rtperformer.live.session import RING_FRAMES, LiveSession

    cfg = from_dict({"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2],
                               "norm": "layer"},
                     "render": {"release_seconds": 0.05}, "serve": {"backend": "torch", "realtime_priority": 0}})
    torch.manual_seed(0)
    torch.set_num_threads(1)
    engine = Engine([Instrument("violin", build_model(cfg).eval(), cfg)], cfg, schedule="asap")
    rate, block = 48000, 256
    ring, rec = AudioRing(RING_FRAMES, 1), AudioRing(rate * 4, 2)
    recorder = WavRecorder(tmp_path / "s.wav", rate, 2, ring=rec)
    events = MidiQueue(64)  # what serve hands the session
    output = PacedOutput(ring, rate, block, 2, record_ring=rec)
    session = LiveSession(engine, output, ring, events, cfg, rec, recorder, quiet=True)
    msgs = [TimedMessage(0.1, bytes([0x90, 69, 100])), TimedMessage(0.4, bytes([0x80, 69, 0]))]
    replay = FileReplaySource(events, output.sample_clock, msgs, start_delay=0.0)
    session.start()
    replay.start()
    t0 = time.perf_counter()
    session.run(until=lambda: time.perf_counter() - t0 > 0.8)
    replay.close()
    session.stop()
    recorder.close()
    x, _ = sf.read(tmp_path / "s.wav", dtype="float32")
    assert session.onsets.count == 1
    stamp, at, pitch, name = session.onsets.entries()[0]
    assert pitch == 69 and name == "violin"
    # the note reaches the next device period: its audio starts at most a period, the lead and the
    # engine's delay after the stamp (plus the replay's scheduling noise, up to one more period)
    assert 0 <= at - stamp <= 2 * block + session.pacer.ceiling + engine.delay_frames * engine.hop
    assert np.all(x[:stamp, 0] == 0.0)
    assert np.sqrt(np.mean(x[stamp:stamp + 9600, 0] ** 2)) > 1e-4
    assert "rtf" in session.status_line()
