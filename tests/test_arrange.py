"""Parts arranged like an arranger would (render.assign_parts, midi.score's GM families): per part, by GM
family and register, ``--map`` overrides, notes moved by octaves into range; the same families live
(engine.LIVE_PROGRAMS); music21's k525short.mid (five parts on GM 48, string ensemble) renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtperformer.live.engine import LIVE_PROGRAMS
from rtperformer.errors import UserError
from rtperformer.midi.score import RANGES, Note, Score, read_midi
from rtperformer.offline.render import assign_parts

REPO = Path(__file__).resolve().parents[1]


def _k525() -> Path:
    music21 = pytest.importorskip("music21")
    path = Path(music21.__file__).parent / "omr" / "k525short.mid"
    assert path.is_file(), "music21 no longer ships omr/k525short.mid"
    return path


def _in_range(part) -> bool:
    lo, hi = RANGES[part.instrument]
    return all(lo <= n.pitch <= hi for n in part.notes)


def test_k525_parts_by_register():
    parts, skipped = assign_parts(read_midi(_k525()))
    assert skipped == []
    assert [p.instrument for p in parts] == ["violin", "violin", "violin", "cello", "cello"]
    assert all(_in_range(p) for p in parts)
    assert [p.transposed for p in parts] == [0, 0, 0, 0, 0]  # every line fits its instrument as written
    parts, _ = assign_parts(read_midi(_k525()), "violin")  # --instrument violin: five violins, each in range
    assert len(parts) == 5 and all(_in_range(p) for p in parts) and parts[4].transposed == len(parts[4].notes)


def test_map_overrides_program_track_and_name():
    score = read_midi(_k525())
    parts, skipped = assign_parts(score, mapping=["48=flute", "track5=none", "t4=violin"])
    assert [p.instrument for p in parts] == ["flute", "flute", "flute", "violin"]
    assert len(skipped) == 1 and "track 5" in skipped[0]
    assert parts[3].transposed > 0 and all(_in_range(p) for p in parts)  # the viola line up into the violin
    named = Score([Note(0, 1, 70, 90, channel=0, program=0, track=1), Note(0, 1, 40, 90, channel=1, program=0, track=2)],
                  [], [], 1.0, "n.mid", {1: "Oboe", 2: "Drums?"})
    parts, _ = assign_parts(named, mapping=["oboe=flute", "track2=cello"])
    assert [(p.instrument, p.sources) for p in parts] == [("flute", [(1, 0)]), ("cello", [(2, 1)])]
    for bad in ("48", "48=oboe", "200=violin", "=violin"):
        with pytest.raises(UserError, match="--map"):
            assign_parts(named, mapping=[bad])


def test_families_and_no_program_file():
    notes = [Note(0, 1, 76, 90, channel=0, program=73, track=1),   # flute
             Note(0, 1, 62, 90, channel=1, program=68, track=2),   # oboe (reed) -> flute, up an octave
             Note(0, 1, 45, 90, channel=2, program=44, track=3),   # tremolo strings, low -> cello
             Note(0, 1, 40, 90, channel=9, program=0, track=4),    # drums: skipped
             Note(0, 1, 60, 90, channel=3, program=0, track=5)]    # piano among wind/strings: skipped
    parts, skipped = assign_parts(Score(notes, [], [], 1.0, "f.mid"))
    assert [(p.instrument, p.notes[0].pitch) for p in parts] == [("flute", 76), ("flute", 62), ("cello", 45)]
    assert len(skipped) == 2 and "drums" in skipped[0] and "--map 0=" in skipped[1]
    # no program changes at all (GM piano): every part by register
    plain = [Note(0, 1, p, 90, channel=ch, program=0, track=ch + 1) for ch, p in ((0, 79), (1, 43))]
    parts, _ = assign_parts(Score(plain, [], [], 1.0, "p.mid"))
    assert [p.instrument for p in parts] == ["violin", "cello"] and "register" in parts[0].reason


def test_live_programs_follow_the_families():
    assert {LIVE_PROGRAMS[p] for p in (40, 41, 44, 45, 48, 49, 50, 51)} == {"violin"}
    assert {LIVE_PROGRAMS[p] for p in (42, 43, 47)} == {"cello"}
    assert {LIVE_PROGRAMS[p] for p in range(64, 80)} == {"flute"}
    assert 0 not in LIVE_PROGRAMS and 56 not in LIVE_PROGRAMS  # piano, trumpet: not ours


@pytest.mark.skipif(not (REPO / "models" / "cello" / "model.safetensors").is_file(), reason="no shipped models")
def test_render_k525_with_shipped_models(tmp_path):
    out = tmp_path / "k525.wav"
    r = subprocess.run([sys.executable, "-m", "rtperformer", "render", str(_k525()), "-o", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if " -> " in ln]
    assert len(lines) == 5 and sum("-> cello" in ln for ln in lines) == 2, r.stdout
    import soundfile as sf

    x, rate = sf.read(out, dtype="float32", always_2d=True)
    assert len(x) / rate > 16.0 and np.sqrt(np.mean(x ** 2)) > 1e-3
