"""rtperformer.midi: reading MIDI files (tempo changes, re-strikes, controls) and event streams."""

import mido
import pytest

from rtperformer.errors import UserError
from rtperformer.midi import MidiEvent, read_midi, score_events, timeline
from rtperformer.midi.score import Control, Note


def _write(path, tracks, ticks_per_beat=480, type=1):
    mid = mido.MidiFile(type=type, ticks_per_beat=ticks_per_beat)
    for msgs in tracks:
        tr = mido.MidiTrack()
        tr.extend(msgs)
        mid.tracks.append(tr)
    mid.save(str(path))
    return path


def test_tempo_change_and_program(tmp_path):
    # 120 bpm for one beat (0.5 s), then 60 bpm: the second note starts at 0.5 s and lasts 1 s.
    conductor = [mido.MetaMessage("set_tempo", tempo=500000, time=0), mido.MetaMessage("set_tempo", tempo=1000000, time=480)]
    part = [
        mido.Message("program_change", program=42, channel=2, time=0),
        mido.Message("note_on", note=48, velocity=90, channel=2, time=0),
        mido.Message("note_off", note=48, channel=2, time=480),
        mido.Message("note_on", note=50, velocity=70, channel=2, time=0),
        mido.Message("note_on", note=50, velocity=0, channel=2, time=480),  # velocity 0 = off
    ]
    s = read_midi(_write(tmp_path / "t.mid", [conductor, part]))
    assert [(n.pitch, n.start, n.end, n.velocity, n.channel, n.program, n.track) for n in s.notes] == [
        (48, 0.0, 0.5, 90, 2, 42, 1),
        (50, 0.5, pytest.approx(1.5), 70, 2, 42, 1),
    ]
    assert s.duration == pytest.approx(1.5)
    assert s.parts() == {(1, 2): 42}
    assert s.programs[0].program == 42


def test_restrike_ends_held_note_and_keeps_velocity(tmp_path):
    part = [
        mido.Message("note_on", note=60, velocity=100, time=0),
        mido.Message("note_on", note=60, velocity=40, time=240),  # re-strike while held
        mido.Message("note_off", note=60, time=240),
        mido.Message("note_off", note=60, time=240),  # stray second note-off: ignored
        mido.Message("note_on", note=62, velocity=80, time=0),
        mido.Message("note_on", note=64, velocity=80, time=240),  # writer order [new on, old off]:
        mido.Message("note_on", note=64, velocity=81, time=0),  # re-strike at the same tick ...
        mido.Message("note_off", note=64, time=0),  # ... whose note-off belongs to the old note
        mido.Message("note_off", note=62, time=0),
        mido.Message("note_off", note=64, time=480),
    ]
    s = read_midi(_write(tmp_path / "r.mid", [part]))
    got = [(n.pitch, round(n.start, 4), round(n.end, 4), n.velocity) for n in s.notes]
    assert got == [(60, 0.0, 0.25, 100), (60, 0.25, 0.5, 40), (62, 0.75, 1.0, 80), (64, 1.0, 1.0, 80), (64, 1.0, 1.5, 81)]


def test_controls_and_unterminated_note(tmp_path):
    part = [
        mido.Message("control_change", control=11, value=64, channel=1, time=0),
        mido.Message("control_change", control=64, value=127, channel=1, time=0),
        mido.Message("note_on", note=67, velocity=100, channel=1, time=0),
        mido.Message("control_change", control=64, value=0, channel=1, time=960),
    ]
    s = read_midi(_write(tmp_path / "c.mid", [part], type=0))
    assert [(c.number, c.value, c.time) for c in s.controls] == [(11, 64, 0.0), (64, 127, 0.0), (64, 0, 1.0)]
    assert s.notes[0].end == pytest.approx(1.0)  # held to the end of the file
    assert s.duration == pytest.approx(1.0)


def test_type2_tracks_have_their_own_tempo(tmp_path):
    a = [mido.MetaMessage("set_tempo", tempo=1000000, time=0), mido.Message("note_on", note=60, velocity=64, time=0),
         mido.Message("note_off", note=60, time=480)]
    b = [mido.Message("note_on", note=72, velocity=64, time=0), mido.Message("note_off", note=72, time=480)]
    s = read_midi(_write(tmp_path / "t2.mid", [a, b], type=2))
    ends = {n.pitch: n.end for n in s.notes}
    assert ends[60] == pytest.approx(1.0) and ends[72] == pytest.approx(0.5)


@pytest.mark.parametrize("content", [None, b"", b"MThd garbage that is not midi", b"RIFF\x00\x00\x00\x00WAVE"])
def test_bad_files_raise_user_error(tmp_path, content):
    p = tmp_path / "bad.mid"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(UserError) as e:
        read_midi(p)
    assert "\n" not in str(e.value)
    assert str(p) in str(e.value)


def test_file_without_notes(tmp_path):
    p = _write(tmp_path / "n.mid", [[mido.MetaMessage("set_tempo", tempo=500000, time=0)]])
    with pytest.raises(UserError, match="no notes"):
        read_midi(p)


def test_timeline_order_and_score_events():
    notes = [Note(0.0, 0.5, 60, 100), Note(0.5, 1.0, 60, 90)]
    controls = [Control(0.5, 0, 64, 127)]
    tl = timeline(notes, controls)
    kinds = [m.data[0] & 0xF0 for m in tl]
    assert kinds == [0x90, 0x80, 0xB0, 0x90, 0x80]  # at 0.5: off, then CC, then on

    class S:
        pass

    s = S()
    s.notes, s.controls = notes, controls
    ev = score_events(s, 48000)
    assert ev[1] == MidiEvent(24000, bytes([0x80, 60, 0]))
    assert ev[0].status == 0x90 and ev[0].channel == 0
    assert MidiEvent.from_mido(mido.Message("note_on", note=1, velocity=2, channel=3), 5) == MidiEvent(5, bytes([0x93, 1, 2]))


def test_program_change_in_a_later_track_at_the_same_tick(tmp_path):
    notes = [mido.Message("note_on", note=60, velocity=64, channel=0, time=0), mido.Message("note_off", note=60, channel=0, time=96)]
    progs = [mido.Message("program_change", program=73, channel=0, time=0)]
    s = read_midi(_write(tmp_path / "p.mid", [notes, progs]))
    assert s.notes[0].program == 73
