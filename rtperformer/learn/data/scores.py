"""Score lines from the music21 corpus: catalogue, parse once, cache as JSON.

A *line* is one part of one source (a quartet's first violin, a chorale's bass, a folk tune) as a list
of score notes in quarter lengths::

    ScoreNote(onset_ql, dur_ql, pitches (tuple of MIDI numbers, >1 for double stops), beat_strength,
              fermata)

Parsing MusicXML quartets takes seconds per movement, so every parsed source is cached as JSON under
``<cache_dir>/music21/`` (one file per source, all its parts) and later builds read the JSON only.
Only this module imports music21, and only when a source is not cached yet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rtperformer.atomic import atomic_write

CACHE_VERSION = 1

# Playable ranges (MIDI numbers, inclusive): violin G3-E7, cello C2-A5, flute C4-C7.
RANGES = {"violin": (55, 100), "cello": (36, 81), "flute": (60, 96)}

# String quartet movements in music21's corpus, cheapest (shortest) first within each composer.
QUARTETS = (
    "mozart/k155/movement1.mxl", "mozart/k155/movement2.mxl", "mozart/k155/movement3.mxl",
    "mozart/k156/movement1.mxl", "mozart/k156/movement2.mxl", "mozart/k156/movement3.mxl",
    "mozart/k156/movement4.mxl", "mozart/k80/movement1.mxl", "mozart/k80/movement2.mxl",
    "mozart/k80/movement3.mxl", "mozart/k80/movement4.mxl", "mozart/k458/movement1.mxl",
    "mozart/k458/movement2.mxl", "mozart/k458/movement3.mxl", "mozart/k458/movement4.mxl",
    "haydn/opus1no1/movement1.mxl", "haydn/opus1no1/movement2.mxl", "haydn/opus1no1/movement3.mxl",
    "haydn/opus1no1/movement4.mxl", "haydn/opus1no1/movement5.mxl", "haydn/opus74no1/movement1.mxl",
    "haydn/opus74no1/movement2.mxl", "haydn/opus74no1/movement3.mxl", "haydn/opus74no1/movement4.mxl",
    "beethoven/opus18no1/movement1.mxl", "beethoven/opus18no1/movement2.mxl",
    "beethoven/opus18no1/movement3.mxl", "beethoven/opus18no1/movement4.mxl",
    "beethoven/opus59no1/movement1.mxl", "beethoven/opus59no1/movement2.mxl",
    "beethoven/opus59no2/movement2.mxl", "beethoven/opus59no2/movement4.mxl",
    "beethoven/opus59no3/movement1.mxl", "beethoven/opus59no3/movement3.mxl",
)
FOLK_DIRS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs")

# Which parts each instrument plays, per source kind (part indices; chorales are S, A, T, B).
PARTS = {
    "violin": {"quartet": (0, 1), "chorale": (0, 1), "folk": (0,)},
    "cello": {"quartet": (3,), "chorale": (3, 2), "folk": (0,)},
    "flute": {"chorale": (0,), "folk": (0,)},
}
# Share of each instrument's minutes by source kind.
MIX = {
    "violin": {"quartet": 0.55, "chorale": 0.15, "folk": 0.30},
    "cello": {"quartet": 0.55, "chorale": 0.30, "folk": 0.15},
    "flute": {"chorale": 0.25, "folk": 0.75},
}
# Tempo (quarter notes per minute) used when a source has no metronome mark: (low, high) per kind.
DEFAULT_TEMPO = {"quartet": (96, 126), "chorale": (66, 80), "folk": (92, 120)}


@dataclass(frozen=True)
class ScoreNote:
    onset: float  # quarter lengths from the start
    dur: float  # quarter lengths
    pitches: tuple[int, ...]
    beat_strength: float  # music21 beatStrength: 1.0 downbeat .. small for offbeats
    fermata: bool = False


@dataclass(frozen=True)
class Source:
    """One corpus entry: ``kind`` quartet|chorale|folk, music21 ``path`` and tune ``number`` (ABC)."""

    kind: str
    path: str
    number: int = 0

    @property
    def key(self) -> str:
        stem = re.sub(r"\.(mxl|xml|abc|krn)$", "", self.path)
        base = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower()
        return f"{base}-{self.number}" if self.number else base


@dataclass(frozen=True)
class Line:
    """One part of one source, ready for an instrument: notes, tempo, the group used for splitting."""

    piece_id: str
    group: str  # pieces of the same source share a group and a split
    kind: str
    notes: tuple[ScoreNote, ...]
    bpm: float
    tempo_marked: bool

    @property
    def quarter_length(self) -> float:
        return max((n.onset + n.dur for n in self.notes), default=0.0)

    @property
    def nominal_seconds(self) -> float:
        return self.quarter_length * 60.0 / self.bpm


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def folk_sources(limit_per_file: int = 10_000) -> list[Source]:
    """All ABC tunes of the folk collections (tune numbers read from the ``X:`` lines, no parsing)."""
    root = corpus_root()
    out = []
    for d in FOLK_DIRS:
        for p in sorted((root / d).glob("*.abc")):
            text = p.read_text(errors="replace")
            nums = [int(m) for m in re.findall(r"^X:\s*(\d+)", text, flags=re.M)]
            rel = str(p.relative_to(root))
            out.extend(Source("folk", rel, n) for n in nums[:limit_per_file] if n > 0)
    return out


def chorale_sources() -> list[Source]:
    root = corpus_root()
    return [Source("chorale", str(p.relative_to(root))) for p in sorted((root / "bach").glob("bwv*.mxl"))]


def quartet_sources() -> list[Source]:
    root = corpus_root()
    return [Source("quartet", q) for q in QUARTETS if (root / q).is_file()]


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _parse(src: Source) -> dict:
    """Parse a source with music21 into a JSON-able dict {tempo, parts: [{name, notes}]}."""
    import warnings

    from music21 import corpus, expressions, harmony, tempo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if src.number:
            score = corpus.parse(src.path, number=src.number)
        else:
            score = corpus.parse(src.path)
        bpm = None
        for mm in score.flatten().getElementsByClass(tempo.MetronomeMark):
            q = mm.getQuarterBPM()
            if q:
                bpm = float(q)
                break
        parts = []
        for part in score.parts:
            flat = part.stripTies().flatten()
            notes = []
            for n in flat.getElementsByClass(["Note", "Chord"]):
                if isinstance(n, harmony.ChordSymbol):
                    continue
                ql = float(n.duration.quarterLength)
                if ql <= 0:
                    continue
                ps = sorted({n.pitch.midi} if n.isNote else {p.midi for p in n.pitches})
                try:
                    bs = float(n.beatStrength)
                except Exception:  # no time signature in context
                    bs = 0.25
                ferm = any(isinstance(e, expressions.Fermata) for e in n.expressions)
                notes.append([round(float(n.offset), 6), round(ql, 6), ps, round(bs, 4), int(ferm)])
            notes.sort(key=lambda x: (x[0], x[2]))
            parts.append({"name": str(part.partName or ""), "notes": notes})
    return {"version": CACHE_VERSION, "source": src.path, "number": src.number, "bpm": bpm, "parts": parts}


def load_source(src: Source, cache_dir: Path) -> dict:
    """Parsed source (see :func:`_parse`), from ``cache_dir/music21/<key>.json`` when cached."""
    path = Path(cache_dir) / "music21" / f"{src.key}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == CACHE_VERSION:
                return data
        except (OSError, ValueError):
            pass
    try:
        data = _parse(src)
    except Exception as exc:  # a corpus file music21 cannot read: cache the failure too
        data = {"version": CACHE_VERSION, "source": src.path, "number": src.number, "bpm": None,
                "parts": [], "error": f"{type(exc).__name__}: {exc}"[:200]}
    _atomic_write_text(path, json.dumps(data, separators=(",", ":")))
    return data


def place_in_range(notes: list[ScoreNote], lo: int, hi: int) -> list[ScoreNote]:
    """Transpose by whole octaves to fit most notes in [lo, hi]; fold any left outside by octaves."""
    pitches = [p for n in notes for p in n.pitches]
    if not pitches:
        return []
    centre = (lo + hi) / 2
    best = None
    for k in range(-4, 5):
        inside = sum(lo <= p + 12 * k <= hi for p in pitches)
        med = sorted(pitches)[len(pitches) // 2] + 12 * k
        score = (inside, -abs(med - (lo + centre) / 2))  # prefer the lower-middle of the range
        if best is None or score > best[0]:
            best = (score, k)
    shift = 12 * best[1]
    out = []
    for n in notes:
        ps = set()
        for p in n.pitches:
            q = p + shift
            while q < lo:
                q += 12
            while q > hi:
                q -= 12
            ps.add(q)
        out.append(ScoreNote(n.onset, n.dur, tuple(sorted(ps)), n.beat_strength, n.fermata))
    return out


def line_from_source(data: dict, src: Source, part_index: int, instrument: str, bpm_default: float) -> Line | None:
    """The ``part_index`` part of a parsed source placed in ``instrument``'s range (None if unusable)."""
    parts = data.get("parts") or []
    if src.kind == "folk" and len(parts) != 1:
        return None  # only single-line tunes
    if src.kind in ("quartet", "chorale") and len(parts) < 4:
        return None
    if part_index >= len(parts):
        return None
    raw = [ScoreNote(float(o), float(d), tuple(int(p) for p in ps), float(b), bool(f))
           for o, d, ps, b, f in parts[part_index]["notes"]]
    if src.kind != "quartet":  # folk and chorale lines are monophonic by nature
        raw = [ScoreNote(n.onset, n.dur, (max(n.pitches),), n.beat_strength, n.fermata) for n in raw]
    if len(raw) < 8:
        return None
    lo, hi = RANGES[instrument]
    notes = place_in_range(raw, lo, hi)
    # start at the first note (drop leading rests / pickup offset)
    t0 = notes[0].onset
    notes = [ScoreNote(n.onset - t0, n.dur, n.pitches, n.beat_strength, n.fermata) for n in notes]
    bpm = data.get("bpm")
    marked = bool(bpm)
    bpm = float(bpm) if bpm else bpm_default
    bpm = min(max(bpm, 48.0), 168.0)
    pid = f"{src.key}-p{part_index}" if src.kind != "folk" else src.key
    return Line(pid, src.key, src.kind, tuple(notes), bpm, marked)
