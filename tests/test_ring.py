"""SPSC rings: wraparound, underrun and overrun counting, the event queue."""

import threading

import numpy as np

from rtperformer.audio.ring import AudioRing, EventRing


def test_wraparound_keeps_order():
    ring = AudioRing(10, 1)
    out = np.empty((4, 1), np.float32)
    x = np.arange(100, dtype=np.float32)
    got = []
    i = 0
    while i < 100:
        i += ring.write(x[i:i + 7])
        while ring.fill >= 4:
            assert ring.read_into(out) == 4
            got.append(out[:, 0].copy())
    got.append(ring.read()[:, 0])
    assert np.array_equal(np.concatenate(got), x)
    assert ring.underruns == 0


def test_underrun_zero_fills_and_counts():
    ring = AudioRing(8, 2)
    ring.write(np.ones(3, np.float32))  # mono written, broadcast to 2 channels
    out = np.full((5, 2), 7.0, np.float32)
    assert ring.read_into(out) == 3
    assert np.all(out[:3] == 1.0) and np.all(out[3:] == 0.0)
    assert ring.underruns == 1 and ring.underrun_frames == 2
    assert ring.read_into(out) == 0 and ring.underruns == 2 and np.all(out == 0.0)


def test_overrun_drops_and_counts():
    ring = AudioRing(4, 1)
    assert ring.write(np.ones(6, np.float32)) == 4
    assert ring.overruns == 1 and ring.dropped_frames == 2
    assert ring.space == 0 and ring.fill == 4


def test_stereo_mono_broadcast_into_stereo_out_across_the_seam():
    ring = AudioRing(5, 1)
    ring.write(np.arange(4, dtype=np.float32))
    ring.read(3)
    ring.write(np.arange(4, 8, dtype=np.float32))  # wraps
    out = np.empty((5, 2), np.float32)
    assert ring.read_into(out) == 5
    assert np.array_equal(out[:, 1], np.arange(3, 8, dtype=np.float32))


def test_threads_see_every_frame_once():
    ring = AudioRing(64, 1)
    total = 6000
    got = []

    def consumer():
        out = np.empty((16, 1), np.float32)
        n = 0
        while n < total:
            if ring.fill >= 16 or total - n < 16 and ring.fill:
                k = min(16, ring.fill)
                ring.read_into(out[:k])
                got.append(out[:k, 0].copy())
                n += k

    t = threading.Thread(target=consumer)
    t.start()
    x = np.arange(total, dtype=np.float32)
    i = 0
    while i < total:
        i += ring.write(x[i:i + 13])
    t.join(10)
    assert np.array_equal(np.concatenate(got), x)


def test_event_ring_roundtrip_and_full():
    q = EventRing(3)
    assert q.pop() is None
    assert q.push(10, [0x90, 60, 100], 1.5)
    assert q.push(11, b"\xc0\x28")
    assert not q.push(12, b"\xf0\x01\x02\x03\xf7")  # sysex ignored
    assert q.push(13, (0x80, 60, 0))
    assert not q.push(14, (0x80, 61, 0)) and q.dropped == 1
    assert q.pop() == (10, b"\x90\x3c\x64", 1.5)
    assert q.pop()[1] == b"\xc0\x28"
    assert q.push(15, (0xB0, 64, 127))  # wraps
    assert [q.pop()[0] for _ in range(2)] == [13, 15]
    assert len(q) == 0


def test_late_audio_is_played_late_not_skipped():
    """After an underrun the audio that arrives is played (a gap, then the sound), never skipped to keep
    a timeline: being slow must not turn into silence. The device offset counts the zeros served."""
    ring = AudioRing(16, 1)
    out = np.empty((4, 1), np.float32)
    assert ring.read_into(out) == 0 and ring.underruns == 0  # before the first write: the start, no underrun
    ring.write(np.arange(2, dtype=np.float32))
    assert ring.read_into(out) == 2 and ring.underruns == 1 and ring.device_offset == 6
    ring.write(np.arange(10, 18, dtype=np.float32))
    assert ring.read_into(out) == 4
    assert out[:, 0].tolist() == [10, 11, 12, 13]
    assert ring.min_spare == -4  # the worst read found 4 frames missing


def test_pacer_grows_on_underruns_and_gives_the_lead_back_when_in_time():
    from rtperformer.audio.pacing import Pacer

    p = Pacer(48000, floor=0, ceiling=1024, window_s=0.25, guard_s=0.001, calm_windows=4, min_grow=128)
    assert p.target(256) == 256
    p.update(0.0, 0, 256)  # opens the first window
    p.wrote(0.001)
    assert not p.update(0.1, 3, 256)  # window not over yet
    assert p.update(0.3, 3, 256) and p.lead == 256  # underruns in the window: one period more
    for i in range(5):
        p.update(0.6 + 0.3 * i, 10 + i, 256)
    assert p.lead == 1024 and p.overloaded  # capped; late in every window of the last second
    assert p.update(2.4, 14, 64) is False  # capped: no change
    t = 2.4
    for k in range(3):  # three calm windows with >= 22.5 ms of slack: not yet
        t += 0.3
        p.wrote(0.0225)
        assert not p.update(t, 14, 256)
    p.wrote(0.030)
    assert p.update(t + 0.3, 14, 256) and p.lead == 0  # the fourth: all given back (4 periods of spare)
    assert not p.overloaded
    p2 = Pacer(48000, floor=128, ceiling=4096, min_grow=128)
    p2.update(0.0, 0, 64)
    assert p2.update(0.3, 1, 64) and p2.lead == 256  # small periods grow by min_grow
    for i in range(4):
        p2.wrote(0.002)  # 1 ms of spare after the guard: 48 frames < a period... of 64: keep
        p2.update(0.6 + 0.3 * i, 1, 64)
    assert p2.lead == 256
    assert Pacer(48000, step=256).target(64) == 256 and Pacer(48000, step=256).target(1024) == 1024
    # the deadline of a write is the callback that reads its first frame
    assert Pacer.deadline(1.0, 256, 0, 48000) == 1.0 + 256 / 48000
    assert Pacer.deadline(1.0, 64, 130, 48000) == 1.0 + 3 * 64 / 48000
