"""The one MIDI decoder (rtperformer/midi/decode.py), the queue that never loses a release
(rtperformer/midi/queue.py), and garbage through the rolls and the engine."""

import numpy as np
import pytest

from rtperformer.midi import decode as dec
from rtperformer.midi.decode import Message, decode, is_release
from rtperformer.midi.queue import MidiQueue


def test_decode_valid_messages():
    assert decode(b"\x90\x3c\x64") == Message(dec.NOTE_ON, 0, 60, 100)
    assert decode(b"\x93\x3c\x00") == Message(dec.NOTE_OFF, 3, 60, 0)  # velocity 0 = off
    assert decode(b"\x8f\x3c\x40") == Message(dec.NOTE_OFF, 15, 60, 64)
    assert decode(b"\xb1\x40\x7f") == Message(dec.CONTROL, 1, 64, 127)
    assert decode(b"\xc2\x28") == Message(dec.PROGRAM, 2, 40, 0)
    assert decode(b"\xd0\x10") == Message(dec.CHANNEL_PRESSURE, 0, 16, 0)
    assert decode(b"\xe0\x00\x40") == Message(dec.PITCH_BEND, 0, 0, 0)
    assert decode(b"\xe0\x7f\x7f") == Message(dec.PITCH_BEND, 0, 8191, 0)
    assert decode(b"\xe0\x00\x00") == Message(dec.PITCH_BEND, 0, -8192, 0)
    assert decode(b"\xf8") == Message(dec.SYSTEM, -1, 0xF8, 0)
    assert decode([0x90, 60, 100]) == Message(dec.NOTE_ON, 0, 60, 100)


@pytest.mark.parametrize("data", [
    b"", b"\x3c\x64",  # running status (no status byte)
    b"\x90\x3c", b"\x90\x3c\x64\x00", b"\xc0", b"\xc0\x28\x00",  # wrong length
    b"\x90\x80\x64", b"\x90\x3c\xff", b"\xb0\x7b\x80", b"\xe0\x00\x80",  # data byte >= 0x80
    b"\xf0\x01\xf7", b"\xf4", b"\xf7",  # sysex, undefined
])
def test_decode_rejects_garbage(data):
    assert decode(data) is None


def test_decode_fuzz_accepts_exactly_the_well_formed():
    """10^4 random messages of 1-3 bytes: accepted ones re-encode to themselves; rejected ones break a rule."""
    rng = np.random.default_rng(1)
    stats = dec.DecodeStats()
    for _ in range(10_000):
        data = rng.integers(0, 256, rng.integers(1, 4)).astype(np.uint8).tobytes()
        m = stats.decode(data)
        ok = (data[0] >= 0x80 and dec.expected_length(data[0]) == len(data)
              and all(b < 0x80 for b in data[1:]))
        assert (m is not None) == ok, data
    assert stats.valid + stats.invalid == 10_000 and stats.valid > 500 and stats.invalid > 5000


def test_is_release():
    assert is_release(b"\x80\x3c\x00") and is_release(b"\x90\x3c\x00")
    assert is_release(b"\xb0\x40\x00") and is_release(b"\xb0\x7b\x00") and is_release(b"\xb0\x78\x00")
    assert not is_release(b"\x90\x3c\x01") and not is_release(b"\xb0\x40\x7f") and not is_release(b"\x80\xff\x00")


def test_queue_flood_never_loses_a_note_off():
    """A flood fills the queue; every note-off still gets through (queued or coalesced into a channel
    release), and after draining no note is left held."""
    from rtperformer.roll.tracker import NoteTracker

    q = MidiQueue(64)
    tracker = NoteTracker()
    rng = np.random.default_rng(0)
    held_keys = set()
    for burst in range(20):
        # 200 note-ons then their 200 note-offs into a 64-slot queue, without the consumer running
        pitches = rng.integers(0, 128, 200)
        chans = rng.integers(0, 16, 200)
        for p, c in zip(pitches, chans):
            q.push(0, bytes((0x90 | int(c), int(p), 100)))
        for p, c in zip(pitches, chans):
            q.push(0, bytes((0x80 | int(c), int(p), 0)))
        assert len(q) <= 64
        while (item := q.pop()) is not None:
            tracker.feed(burst, item[1])
        held_keys = set(tracker.open)
        assert not held_keys, f"burst {burst}: {len(held_keys)} notes stuck"
    assert q.dropped > 0 and q.coalesced > 0


def test_queue_reserve_keeps_room_for_releases():
    q = MidiQueue(16)
    for i in range(40):
        q.push(i, b"\x90\x3c\x64")
    assert len(q) == 16 - q.reserve and q.dropped == 40 - (16 - q.reserve)
    assert q.push(99, b"\x80\x3c\x00") and q.push(99, b"\xb0\x40\x00")  # releases still fit
    assert q.coalesced == 0


def test_garbage_through_tracker_and_painter_never_raises():
    """Random bytes as messages (what a broken cable sends) through the rolls: no IndexError; on main a
    data byte >= 128 became a pitch and `paint` raised."""
    from rtperformer.roll.painter import RollPainter
    from rtperformer.roll.rolls import Rolls
    from rtperformer.roll.tracker import NoteTracker

    rng = np.random.default_rng(2)
    tracker, painter, rolls = NoteTracker(), RollPainter(), Rolls.zeros(4)
    for f in range(2000):
        tracker.feed(f, rng.integers(0, 256, 3).astype(np.uint8).tobytes())
        painter.paint(tracker, 4 * f, 4 * f + 4, rolls)
    assert np.isfinite(rolls.roll).all()


def test_engine_drops_and_counts_garbage_and_still_plays():
    pytest.importorskip("torch")
    from test_engine import tiny

    from rtperformer.live.engine import Engine, Instrument

    model, cfg = tiny()
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="asap")
    rng = np.random.default_rng(3)
    for _ in range(3000):
        eng.push(0, rng.integers(0, 256, rng.integers(1, 4)).astype(np.uint8).tobytes())
    for _ in range(4):
        eng.render_step()
    assert eng.midi.invalid > 1000 and eng.midi.valid > 0
    for ch in range(16):  # a controller reset, as after a cable fault
        for d in ((0xB0 | ch, 120, 0), (0xB0 | ch, 121, 0), (0xB0 | ch, 7, 127), (0xE0 | ch, 0, 64)):
            eng.push(0, bytes(d))
    for _ in range(200):
        eng.render_step()
    assert eng.notes_held == 0
    eng.push(0, b"\x90\x45\x64")
    out = np.concatenate([eng.render_step().copy() for _ in range(40)])
    assert eng.notes_held == 1 and np.sqrt(np.mean(out ** 2)) > 1e-4


def test_release_all_channels_ends_held_and_pedalled_notes():
    """What a lost port asks for: after the queued messages, pedal up and all notes off on every channel."""
    from rtperformer.roll.tracker import NoteTracker

    q, tracker = MidiQueue(64), NoteTracker()
    for ch in (0, 5, 15):
        q.push(0, bytes((0xB0 | ch, 64, 127)))
        q.push(0, bytes((0x90 | ch, 60 + ch, 100)))
    q.push(0, b"\x85\x45\x00")  # a key released under the pedal
    q.release_all_channels()
    while (item := q.pop()) is not None:
        tracker.feed(0, item[1])
    assert not tracker.open and not any(tracker.sustain)
    assert q.pop() is None  # served once
