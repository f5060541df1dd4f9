"""Humanisation: seeded determinism, deadpan/flat semantics, vibrato rule, range placement (no music21)."""

import pytest

from rtperformer.learn.data.humanize import DEADPAN_VELOCITY, VIBRATO_MIN_NOTE_S, perform
from rtperformer.learn.data.scores import RANGES, Line, ScoreNote, place_in_range


def _line(poly=False):
    notes = []
    t = 0.0
    durs = [1, 0.5, 0.5, 2, 1, 1, 0.25, 0.25, 0.5, 3, 1, 1, 1, 1, 4]
    for i, d in enumerate(durs * 3):
        ps = (60 + (i * 5) % 12,) if not (poly and i % 4 == 0) else (60 + (i * 5) % 12, 67 + (i * 5) % 12)
        notes.append(ScoreNote(t, d, ps, 1.0 if t % 4 == 0 else 0.25, fermata=(i == 14)))
        t += d
        if i == 20:
            t += 1.0  # a rest: phrase boundary
    return Line("test-line", "test-line", "quartet" if poly else "folk", tuple(notes), 100.0, False)


def _as_tuple(perf):
    return ([(n.start, n.end, n.pitch, n.velocity, None if n.vibrato is None else tuple(vars(n.vibrato).values()))
             for n in perf.notes], perf.cc11, perf.duration)


@pytest.mark.parametrize("kind", ["expressive", "flat", "deadpan"])
def test_same_seed_same_performance(kind):
    line = _line(poly=True)
    assert _as_tuple(perform(line, kind, 7)) == _as_tuple(perform(line, kind, 7))


def test_different_seed_differs():
    line = _line()
    assert _as_tuple(perform(line, "expressive", 1)) != _as_tuple(perform(line, "expressive", 2))


def test_deadpan_is_the_score():
    line = _line(poly=True)
    perf = perform(line, "deadpan", 3)
    assert perf.cc11 == []
    assert all(n.velocity == DEADPAN_VELOCITY and n.vibrato is None for n in perf.notes)
    spb = 60.0 / line.bpm
    starts = sorted({round(n.onset * spb, 6) for n in line.notes})
    assert sorted({round(n.start, 6) for n in perf.notes}) == starts
    assert len(perf.notes) == sum(len(n.pitches) for n in line.notes)


def test_flat_matches_expressive_but_cc11():
    line = _line()
    e, f = perform(line, "expressive", 5), perform(line, "flat", 5)
    assert _as_tuple(e)[0] == _as_tuple(f)[0]
    assert f.cc11 == [(0.0, 127)]
    vals = [v for _, v in e.cc11]
    assert min(vals) < 115 and len(set(vals)) > 10  # arcs and swells move CC11


def test_expressive_details():
    perf = perform(_line(), "expressive", 11)
    vels = {n.velocity for n in perf.notes}
    assert len(vels) > 5 and all(1 <= v <= 127 for v in vels)
    for n in perf.notes:
        assert n.end > n.start
        if n.vibrato is not None:
            assert n.end - n.start > VIBRATO_MIN_NOTE_S and 0.1 < n.vibrato.delay < 0.5
    long_notes = [n for n in perf.notes if n.end - n.start > 0.6]
    assert long_notes and all(n.vibrato is not None for n in long_notes)
    # legato: some note overlaps the next one
    s = sorted(perf.notes, key=lambda n: n.start)
    assert any(a.end > b.start and a.pitch != b.pitch for a, b in zip(s, s[1:]))
    # same pitch never overlaps itself
    by_pitch = {}
    for n in s:
        if n.pitch in by_pitch:
            assert by_pitch[n.pitch].end <= n.start
        by_pitch[n.pitch] = n


@pytest.mark.parametrize("instrument", sorted(RANGES))
def test_place_in_range(instrument):
    lo, hi = RANGES[instrument]
    notes = [ScoreNote(i, 1, (p,), 1.0) for i, p in enumerate([20, 30, 35, 40, 44, 47, 110])]
    placed = place_in_range(notes, lo, hi)
    assert all(lo <= p <= hi for n in placed for p in n.pitches)
    # whole-octave moves only
    assert all((p - q.pitches[0]) % 12 == 0 for n, q in zip(placed, notes) for p in n.pitches)
