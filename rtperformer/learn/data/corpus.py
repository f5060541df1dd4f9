"""Corpus builder: music21 lines -> humanised performances -> FluidSynth audio + rolls per piece.

Layout (``out`` = data/corpus)::

    out/<instrument>/manifest.json
    out/<instrument>/<piece_id>/piece.json            written last: the piece is complete
    out/<instrument>/<piece_id>/<kind>.flac           48 kHz mono PCM_24, kind in expressive|deadpan|flat
    out/<instrument>/<piece_id>/<kind>_rolls.npz      Rolls at the corpus frame rate + the events

Every piece gets ``expressive``; a third of them (by a hash of the id) also ``flat`` (humanised, CC11
fixed at 127); valid and test pieces also ``deadpan`` (the score as written, for evaluation).
A build is resumable: a piece whose piece.json matches the current recipe is not rendered again.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.learn.data import scores
from rtperformer.learn.data.bends import bend_path, bend_row, write_bend
from rtperformer.learn.data.dataset import load_manifest
from rtperformer.learn.data.humanize import perform
from rtperformer.learn.data.rolls_io import rolls_from_events, save_rolls
from rtperformer.dsp.features import n_frames
from rtperformer.learn.data.splits import SPLITS, assign_split, read_splits, split_of, split_path, write_splits
from rtperformer.learn.data.synth import GAIN, Patch, Renderer, default_patch
from rtperformer.errors import UserError
from rtperformer.midi.score import INSTRUMENTS  # noqa: F401  (re-exported for the data command)

RECIPE_VERSION = 1
DEFAULT_MINUTES = 70.0
MIN_LINE_SECONDS = 8.0
MAX_LINE_SECONDS = 480.0


@dataclass(frozen=True)
class BuildSettings:
    out: Path
    cache_dir: Path
    sample_rate: int = 48000
    hop: int = 256
    seed: int = 0
    minutes: float = DEFAULT_MINUTES
    sources: tuple[str, ...] = ("quartet", "chorale", "folk")
    jobs: int = 2
    split_dir: Path | None = None  # None: configs/splits


def piece_seed(seed: int, instrument: str, piece_id: str) -> int:
    return zlib.crc32(f"{seed}:{instrument}:{piece_id}".encode()) & 0x7FFFFFFF


def kinds_for(piece_id: str, split: str) -> tuple[str, ...]:
    """expressive always; flat for a third of the pieces; deadpan (for eval) for valid/test pieces."""
    kinds = ["expressive"]
    if zlib.crc32(piece_id.encode()) % 3 == 0:
        kinds.append("flat")
    if split != "train":
        kinds.append("deadpan")
    return tuple(kinds)


def _candidates(kind: str, seed: int) -> list[scores.Source]:
    if kind == "quartet":
        return scores.quartet_sources()  # fixed order: cheapest first, shared by violin and cello
    srcs = scores.chorale_sources() if kind == "chorale" else scores.folk_sources()
    order = np.random.default_rng(zlib.crc32(f"{seed}:{kind}".encode())).permutation(len(srcs))
    return [srcs[i] for i in order]


def _truncate(line: scores.Line, seconds: float) -> scores.Line:
    limit_q = seconds * line.bpm / 60.0
    notes = tuple(n for n in line.notes if n.onset < limit_q)
    if len(notes) < 8:
        notes = line.notes[:8]
    return scores.Line(line.piece_id, line.group, line.kind, notes, line.bpm, line.tempo_marked)


def _parse_into_cache(job) -> None:
    scores.load_source(*job)


def select_lines(instrument: str, st: BuildSettings, progress=None, pool=None) -> list[scores.Line]:
    """Lines for ``instrument`` filling ``st.minutes`` (nominal score time), per the source mix.

    With a worker ``pool``, uncached sources are parsed a few at a time in parallel (same result).
    """
    mix = {k: v for k, v in scores.MIX[instrument].items() if k in st.sources}
    if not mix:
        raise UserError(f"no sources for {instrument} among {', '.join(st.sources)}")
    total = sum(mix.values())
    lines: list[scores.Line] = []
    for kind, share in mix.items():
        quota = st.minutes * 60.0 * share / total
        got = 0.0
        cands = _candidates(kind, st.seed)
        for i, src in enumerate(cands):
            if got >= quota:
                break
            if pool is not None and i % (2 * st.jobs) == 0:  # parse the next few sources in parallel
                todo = [(c, st.cache_dir) for c in cands[i:i + 2 * st.jobs]
                        if not (Path(st.cache_dir) / "music21" / f"{c.key}.json").is_file()]
                if len(todo) > 1:
                    pool.map(_parse_into_cache, todo)
            data = scores.load_source(src, st.cache_dir)
            lo, hi = scores.DEFAULT_TEMPO[kind]
            bpm = lo + (hi - lo) * (zlib.crc32(src.key.encode()) % 1000) / 999.0
            for part in scores.PARTS[instrument][kind]:
                if got >= quota:
                    break
                line = scores.line_from_source(data, src, part, instrument, bpm)
                if line is None or line.nominal_seconds < MIN_LINE_SECONDS:
                    continue
                if line.nominal_seconds > MAX_LINE_SECONDS:
                    line = _truncate(line, MAX_LINE_SECONDS)
                remaining = quota - got
                if remaining < 60.0 and line.nominal_seconds > remaining + 10.0:
                    line = _truncate(line, remaining + 5.0)
                lines.append(line)
                got += line.nominal_seconds
            if progress is not None:
                progress(src)
    return lines


def _recipe(instrument: str, line: scores.Line, st: BuildSettings, patch: Patch, split: str) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([RECIPE_VERSION, instrument, line.piece_id, line.bpm, st.sample_rate, st.hop,
                         st.seed, patch.soundfont, patch.program, GAIN, kinds_for(line.piece_id, split)]).encode())
    h.update(repr(line.notes).encode())
    return h.hexdigest()[:16]


def _write_flac(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    atomic_write(path, lambda tmp: sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_24",
                                            format="FLAC"), suffix=".flac")


_RENDERERS: dict[tuple, Renderer] = {}


def _renderer(patch: Patch, sample_rate: int) -> Renderer:
    key = (patch, sample_rate)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(patch, sample_rate)
    return _RENDERERS[key]


def render_piece(job: tuple) -> dict:
    """Render all kinds of one piece into its folder; returns its manifest entry. Runs in a worker."""
    instrument, line, st, patch, split = job
    pdir = Path(st.out) / instrument / line.piece_id
    recipe = _recipe(instrument, line, st, patch, split)
    meta_path = pdir / "piece.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("recipe") == recipe:
                meta["cached"] = True
                for kind in meta.get("kinds", []):  # a render from before the bend rows: add its row
                    if not bend_path(pdir, kind).is_file():
                        with np.load(pdir / f"{kind}_rolls.npz") as z:
                            T = int(z["roll"].shape[1])
                        write_bend(pdir, kind, bend_row(perform(line, kind, int(meta["seed"])), T, st.sample_rate, st.hop))
                return meta
        except ValueError:
            pass
    pdir.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta_path.unlink()
    seed = piece_seed(st.seed, instrument, line.piece_id)
    renderer = _renderer(patch, st.sample_rate)
    frame_rate = st.sample_rate / st.hop
    seconds, peaks = {}, {}
    n_notes = 0
    for kind in kinds_for(line.piece_id, split):
        perf = perform(line, kind, seed)
        audio = renderer.render(perf)
        notes, cc = perf.notes_array(), perf.cc_array()
        rolls = rolls_from_events(notes, cc, n_frames(len(audio), st.hop), st.sample_rate, st.hop)
        save_rolls(pdir / f"{kind}_rolls.npz", rolls, notes, cc, frame_rate, st.sample_rate, st.hop)
        write_bend(pdir, kind, bend_row(perf, rolls.n_frames, st.sample_rate, st.hop))
        _write_flac(pdir / f"{kind}.flac", audio, st.sample_rate)
        seconds[kind] = round(len(audio) / st.sample_rate, 3)
        peaks[kind] = round(float(np.abs(audio).max()) if len(audio) else 0.0, 4)
        n_notes = len(notes)
    meta = {"id": line.piece_id, "group": line.group, "source": line.kind, "split": split,
            "kinds": list(kinds_for(line.piece_id, split)), "seconds": seconds, "peak": peaks,
            "bpm": round(line.bpm, 2), "tempo_marked": line.tempo_marked, "notes": n_notes,
            "polyphonic": any(len(n.pitches) > 1 for n in line.notes), "seed": seed, "recipe": recipe}
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return meta


def _assign_splits(instrument: str, lines: list[scores.Line], st: BuildSettings) -> dict[str, str]:
    """piece_id -> split: the committed split file first (by group), else :func:`assign_split`."""
    fixed = split_of(read_splits(split_path(instrument, st.split_dir and Path(st.split_dir) / f"{instrument}.yaml")))
    group_split: dict[str, str] = {}
    for line in lines:
        if line.piece_id in fixed:
            group_split.setdefault(line.group, fixed[line.piece_id])
    index: dict[str, int] = {}
    out = {}
    seen_groups: dict[str, str] = {}
    for line in lines:
        g = line.group
        if g not in group_split and g not in seen_groups:
            i = index.get(line.kind, 0)
            index[line.kind] = i + 1
            seen_groups[g] = assign_split(i)
        out[line.piece_id] = group_split.get(g, seen_groups.get(g))
    return out


def build_instrument(instrument: str, st: BuildSettings, pool=None, log=print, bar=None) -> dict:
    """Select, render and write one instrument's corpus; returns its manifest."""
    t0 = time.time()
    patch = default_patch(instrument)
    progress = None
    if bar is not None:
        def progress(src):
            bar.set_description(f"{instrument}: parsed {src.key[:40]}")
    lines = select_lines(instrument, st, progress, pool)
    if not lines:
        raise UserError(f"no score lines selected for {instrument}")
    splits = _assign_splits(instrument, lines, st)
    jobs = [(instrument, line, st, patch, splits[line.piece_id]) for line in lines]
    # longest first so the pool's tail is short
    jobs.sort(key=lambda j: -j[1].nominal_seconds)
    pieces = []
    it = pool.imap_unordered(render_piece, jobs) if pool is not None else map(render_piece, jobs)
    if bar is not None:
        bar.reset(total=len(jobs))
        bar.set_description(instrument)
    for meta in it:
        pieces.append(meta)
        if bar is not None:
            bar.update(1)
    pieces.sort(key=lambda m: m["id"])
    minutes = {}
    for m in pieces:
        for k, s in m["seconds"].items():
            minutes[k] = minutes.get(k, 0.0) + s / 60.0
    by_split = {s: round(sum(m["seconds"]["expressive"] for m in pieces if m["split"] == s) / 60.0, 2)
                for s in SPLITS}
    manifest = {
        "instrument": instrument, "version": RECIPE_VERSION, "sample_rate": st.sample_rate, "hop": st.hop,
        "frame_rate": st.sample_rate / st.hop, "soundfont": patch.soundfont, "program": patch.program,
        "gain": GAIN, "seed": st.seed, "minutes_requested": st.minutes, "sources": list(st.sources),
        "minutes": {k: round(v, 2) for k, v in minutes.items()}, "expressive_minutes_by_split": by_split,
        "build_seconds": round(time.time() - t0, 1), "pieces": pieces,
    }
    mpath = Path(st.out) / instrument / "manifest.json"
    atomic_write(mpath, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
    return manifest


def write_split_file(instrument: str, manifest: dict, path: Path) -> None:
    """Merge the manifest's pieces into the split file at ``path`` (existing entries keep their split)."""
    current = read_splits(path)
    fixed = split_of(current)
    for m in manifest["pieces"]:
        if m["id"] not in fixed:
            current[m["split"]].append(m["id"])
    header = (f"# {instrument}: fixed split by piece (pieces of one source share a split).\n"
              "# Written by `rtperformer data build --write-splits`; existing entries never move.\n")
    write_splits(path, current, header)


def build(instruments: list[str], st: BuildSettings, log=print, write_split_files: bool = False) -> list[dict]:
    """Build the corpus for ``instruments``; one worker pool shared by all of them."""
    from tqdm import tqdm

    Path(st.out).mkdir(parents=True, exist_ok=True)
    Path(st.cache_dir).mkdir(parents=True, exist_ok=True)
    manifests = []
    ctx = mp.get_context("fork")
    pool = ctx.Pool(st.jobs) if st.jobs > 1 else None
    try:
        with tqdm(total=0, unit="piece", dynamic_ncols=True) as bar:
            for inst in instruments:
                bar.set_description(f"{inst}: selecting")
                man = build_instrument(inst, st, pool=pool, log=log, bar=bar)
                manifests.append(man)
                if write_split_files:
                    write_split_file(inst, man, split_path(inst, st.split_dir and Path(st.split_dir) / f"{inst}.yaml"))
                bar.write(f"{inst}: {len(man['pieces'])} pieces, "
                          + ", ".join(f"{k} {v:.1f} min" for k, v in man["minutes"].items())
                          + f", in {man['build_seconds']:.0f} s")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return manifests


def settings_dict(st: BuildSettings) -> dict:
    d = asdict(st)
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def regenerate_bends(instrument: str, corpus_dir: str | Path, cache_dir: str | Path = "data/cache",
               log: Callable[[str], None] = print) -> dict:
    """Write ``<kind>_bend.npy`` for every render of ``instrument``'s corpus; returns counts.

    UserError when a piece's performance cannot be reproduced (its notes or CC11 differ from the stored
    ones) or its score line is not selected again.
    """
    corpus_dir = Path(corpus_dir)
    man = load_manifest(corpus_dir, instrument)
    st = BuildSettings(out=corpus_dir, cache_dir=Path(cache_dir), sample_rate=int(man["sample_rate"]),
                       hop=int(man["hop"]), seed=int(man["seed"]), minutes=float(man["minutes_requested"]),
                       sources=tuple(man["sources"]), jobs=1)
    lines = {line.piece_id: line for line in select_lines(instrument, st)}
    done, bent = 0, 0
    bad = []
    for p in man["pieces"]:
        line = lines.get(p["id"])
        if line is None:
            bad.append(f"{p['id']}: not selected again")
            continue
        pdir = corpus_dir / instrument / p["id"]
        for kind in p["kinds"]:
            perf = perform(line, kind, int(p["seed"]))
            with np.load(pdir / f"{kind}_rolls.npz") as z:
                notes, cc11, T = z["notes"], z["cc11"], int(z["roll"].shape[1])
            if not (np.array_equal(perf.notes_array(), notes) and np.array_equal(perf.cc_array(), cc11)):
                bad.append(f"{p['id']} ({kind}): the performance differs from the stored notes")
                continue
            row = bend_row(perf, T, st.sample_rate, st.hop)
            write_bend(pdir, kind, row)
            done += 1
            bent += int(np.any(row != 0))
    if bad:
        raise UserError(f"{instrument}: {len(bad)} render(s) not reproduced, e.g. {bad[0]}")
    log(f"{instrument}: bend rows for {done} renders ({bent} with vibrato)")
    return {"renders": done, "with_bend": bent}
