"""Write rtperformer/assets/demo.mid: a 20 s trio (violin GM 40, cello GM 42, flute GM 73) in D major.

Run ``python -m rtperformer.assets.make_demo`` (or this file) to regenerate it; the output is
deterministic. Type-1 file: a conductor track (tempo 96 bpm, easing to 84 in the last bar) and one track
per instrument on its own channel, with CC11 expression swells on violin and flute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mido

TPB = 480
OUT = Path(__file__).resolve().parent / "demo.mid"

# (pitch or None for a rest, beats). 8 bars of 4/4.
VIOLIN = [
    (None, 4),
    (66, 1), (69, 1), (74, 1.5), (73, 0.5), (71, 1), (69, 1), (67, 1), (66, 1),
    (64, 1), (66, 0.5), (67, 0.5), (69, 2), (71, 1), (69, 1), (67, 1), (64, 1),
    (66, 1.5), (67, 0.5), (69, 1), (74, 1), (73, 2), (71, 1), (73, 1),
    (74, 4),
]
CELLO = [
    (50, 2), (45, 2),
    (50, 2), (47, 2), (43, 2), (45, 2), (50, 2), (42, 2),
    (43, 2), (45, 2), (47, 1), (45, 1), (43, 1), (45, 1),
    (47, 2), (45, 2),
    (38, 4),
]
FLUTE = [
    (None, 16),
    (78, 2), (76, 1), (78, 1), (79, 2), (81, 2), (83, 1), (81, 1), (79, 1), (76, 1),
    (78, 4),
]


def _track(name: str, channel: int, program: int, line, legato: float, swells: bool) -> mido.MidiTrack:
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("track_name", name=name, time=0))
    tr.append(mido.Message("program_change", channel=channel, program=program, time=0))
    tr.append(mido.Message("control_change", channel=channel, control=11, value=90, time=0))
    events = []  # (tick, order, message)
    tick = 0
    for i, (pitch, beats) in enumerate(line):
        dur = int(beats * TPB)
        if pitch is not None:
            vel = 72 + (i * 7) % 24
            events.append((tick, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
            events.append((tick + int(dur * legato), 0, mido.Message("note_off", channel=channel, note=pitch)))
            if swells and beats >= 1:  # a swell over each longer note
                for k, v in enumerate((80, 100, 112, 100)):
                    events.append((tick + k * dur // 4, 2, mido.Message("control_change", channel=channel, control=11, value=v)))
        tick += dur
    events.sort(key=lambda e: (e[0], e[1]))
    last = 0
    for t, _, msg in events:
        tr.append(msg.copy(time=t - last))
        last = t
    tr.append(mido.MetaMessage("end_of_track", time=0))
    return tr


def build() -> mido.MidiFile:
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name="rtperformer demo trio", time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(96), time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(84), time=7 * 4 * TPB))
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(conductor)
    mid.tracks.append(_track("Violin", 0, 40, VIOLIN, 0.95, swells=True))
    mid.tracks.append(_track("Cello", 1, 42, CELLO, 0.98, swells=False))
    mid.tracks.append(_track("Flute", 2, 73, FLUTE, 0.9, swells=True))
    return mid


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    build().save(str(out))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
