"""MusicNet loaders (both distributed formats) and import into the corpus layout, split by recording.

Formats:

- the tree: ``{train,test}_data/<id>.wav`` and ``{train,test}_labels/<id>.csv`` with columns
  start_time,end_time,instrument,note,start_beat,end_beat,note_value; times in samples at 44.1 kHz;
  instrument ids are 1-based General MIDI (41 violin, 43 cello, 74 flute).
- ``musicnet.npz``: id -> object array (audio float32 at 44.1 kHz, IntervalTree of
  Interval(begin, end, (instrument, note, measure, beat, note_value))). That file is a pickle (written by
  Python 2). It is read with a *restricted* unpickler that only builds numpy arrays and intervaltree's
  Interval/IntervalTree, so it needs the ``intervaltree`` package (``pip install intervaltree``; not a
  default dependency); without it, :func:`iter_npz` raises a UserError saying so. Prefer the tree.

A :class:`Recording` has ``notes`` (N, 4) float64 rows [start_s, end_s, pitch, gm_instrument].
``import_musicnet`` writes ``<out>/<instrument>/musicnet-<id>/expressive.flac`` + ``expressive_rolls.npz``
(velocity 100, no CC11: MusicNet has neither) and a manifest whose splits are by recording, so the
same :class:`rtperformer.learn.data.dataset.WindowDataset` reads it (``data.corpus_dir: data/musicnet``).
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.errors import UserError

SAMPLE_RATE = 44100
GM_PROGRAM = {"violin": 41, "cello": 43, "flute": 74}  # 1-based GM instrument ids used by MusicNet
PAPER_IDS = {
    "cello": (2217, 2218, 2219, 2220, 2221, 2222, 2293, 2294, 2295, 2296, 2297, 2298),
    "violin": (2191, 2244, 2288, 2289, 2659),
    "flute": (2202, 2203, 2204),
}
NOMINAL_VELOCITY = 100


@dataclass
class Recording:
    id: int
    audio: np.ndarray  # (N,) float32 at sample_rate
    sample_rate: int
    notes: np.ndarray  # (N, 4) float64 [start_s, end_s, pitch, gm_instrument]


# ---------------------------------------------------------------- the tree (wav + csv)

def _tree_files(root: Path) -> dict[int, tuple[Path, Path]]:
    out = {}
    for sub in ("train", "test"):
        for wav in sorted((root / f"{sub}_data").glob("*.wav")):
            csv_path = root / f"{sub}_labels" / f"{wav.stem}.csv"
            if csv_path.is_file() and wav.stem.isdigit():
                out[int(wav.stem)] = (wav, csv_path)
    return out


def read_labels_csv(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N, 4) [start_s, end_s, pitch, instrument] from a MusicNet label CSV (times in samples)."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"start_time", "end_time", "instrument", "note"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise UserError(f"{path}: not a MusicNet label file (needs columns {', '.join(sorted(need))})")
        for r in reader:
            rows.append((int(r["start_time"]) / sample_rate, int(r["end_time"]) / sample_rate,
                         int(r["note"]), int(r["instrument"])))
    rows.sort()
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def iter_tree(root: str | Path, ids=None) -> Iterator[Recording]:
    """Recordings of a MusicNet tree (all, or ``ids``), in id order."""
    import soundfile as sf

    root = Path(root)
    files = _tree_files(root)
    if not files:
        raise UserError(f"{root}: no MusicNet recordings (expected train_data/<id>.wav + train_labels/<id>.csv)")
    for rid in sorted(files) if ids is None else [i for i in ids if i in files]:
        wav, labels = files[rid]
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        yield Recording(rid, audio.mean(axis=1), int(sr), read_labels_csv(labels))


# ---------------------------------------------------------------- musicnet.npz

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("copyreg", "_reconstructor"),
    ("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "tuple"),
    ("builtins", "list"),
}
_INTERVALTREE = {("intervaltree.intervaltree", "IntervalTree"), ("intervaltree.interval", "Interval"),
                 ("intervaltree", "IntervalTree"), ("intervaltree", "Interval")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if (module, name) in _INTERVALTREE:
            try:
                return super().find_class(module, name)
            except ImportError:
                raise UserError("reading musicnet.npz needs the intervaltree package "
                                "(pip install intervaltree), or use the MusicNet tree format") from None
        raise UserError(f"musicnet.npz holds an unexpected object {module}.{name}; refusing to load it")


def _read_member(zf: zipfile.ZipFile, name: str):
    from numpy.lib import format as npformat

    with zf.open(name) as f:
        buf = io.BytesIO(f.read())
    version = npformat.read_magic(buf)
    if version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(buf)
    else:
        shape, fortran, dtype = npformat.read_array_header_2_0(buf)
    if dtype.hasobject:
        return _RestrictedUnpickler(buf, encoding="latin1").load()
    data = np.frombuffer(buf.read(), dtype=dtype)
    return data.reshape(shape, order="F" if fortran else "C")


def _labels_from_tree(tree) -> np.ndarray:
    rows = []
    for iv in tree:
        begin, end, data = iv[0], iv[1], iv[2]
        instrument, note = int(data[0]), int(data[1])
        rows.append((begin / SAMPLE_RATE, end / SAMPLE_RATE, note, instrument))
    rows.sort()
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def iter_npz(path: str | Path, ids=None) -> Iterator[Recording]:
    """Recordings of ``musicnet.npz`` (all, or ``ids``), in id order; needs ``intervaltree``."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz ({exc})") from None
    with zf:
        members = {int(n[:-4]): n for n in zf.namelist() if n.endswith(".npy") and n[:-4].isdigit()}
        if not members:
            raise UserError(f"{path}: no MusicNet recordings in this .npz")
        for rid in sorted(members) if ids is None else [i for i in ids if i in members]:
            obj = _read_member(zf, members[rid])
            audio, tree = obj[0], obj[1]
            yield Recording(rid, np.asarray(audio, dtype=np.float32).reshape(-1), SAMPLE_RATE, _labels_from_tree(tree))


def iter_recordings(source: str | Path, ids=None) -> Iterator[Recording]:
    """Either format: a folder is a tree, a file is musicnet.npz."""
    source = Path(source)
    if source.is_dir():
        return iter_tree(source, ids)
    if source.is_file():
        return iter_npz(source, ids)
    raise UserError(f"MusicNet source not found: {source}")


# ---------------------------------------------------------------- split and import

def recording_splits(ids) -> dict[int, str]:
    """Split by recording (sorted ids): the last ~15% test, the ~10% before valid, at least one each
    when there are 3 or more recordings."""
    ids = sorted(ids)
    n = len(ids)
    n_test = max(1, round(0.15 * n)) if n >= 2 else 0
    n_valid = max(1, round(0.10 * n)) if n >= 3 else 0
    out = {}
    for i, rid in enumerate(ids):
        out[rid] = "test" if i >= n - n_test else "valid" if i >= n - n_test - n_valid else "train"
    return out


def import_musicnet(source, instrument: str, out: str | Path, hop: int = 256, ids=None) -> dict:
    """Write ``instrument``'s MusicNet recordings into the corpus layout under ``out``; returns the manifest."""
    from rtperformer.learn.data.corpus import _write_flac
    from rtperformer.learn.data.rolls_io import rolls_from_events, save_rolls
    from rtperformer.dsp.features import n_frames

    if instrument not in GM_PROGRAM:
        raise UserError(f"unknown instrument {instrument!r} (violin, cello, flute)")
    ids = list(ids) if ids is not None else list(PAPER_IDS[instrument])
    gm = GM_PROGRAM[instrument]
    recs = list(iter_recordings(source, ids))
    if not recs:
        raise UserError(f"none of the recordings {ids} is in {source}")
    splits = recording_splits([r.id for r in recs])
    base = Path(out) / instrument
    pieces = []
    sample_rate = recs[0].sample_rate
    for rec in recs:
        if rec.sample_rate != sample_rate:
            raise UserError(f"MusicNet recording {rec.id} is at {rec.sample_rate} Hz, others at {sample_rate}")
        pid = f"musicnet-{rec.id}"
        pdir = base / pid
        pdir.mkdir(parents=True, exist_ok=True)
        sel = rec.notes[rec.notes[:, 3] == gm] if len(rec.notes) else rec.notes
        notes = np.column_stack([sel[:, 0], sel[:, 1], sel[:, 2], np.full(len(sel), NOMINAL_VELOCITY)])
        cc = np.zeros((0, 2))
        rolls = rolls_from_events(notes, cc, n_frames(len(rec.audio), hop), sample_rate, hop)
        save_rolls(pdir / "expressive_rolls.npz", rolls, notes, cc, sample_rate / hop, sample_rate, hop)
        _write_flac(pdir / "expressive.flac", rec.audio, sample_rate)
        meta = {"id": pid, "group": pid, "source": "musicnet", "split": splits[rec.id], "kinds": ["expressive"],
                "seconds": {"expressive": round(len(rec.audio) / sample_rate, 3)}, "notes": int(len(notes)),
                "other_instrument_notes": int(len(rec.notes) - len(sel))}
        (pdir / "piece.json").write_text(json.dumps(meta, indent=1))
        pieces.append(meta)
    minutes = sum(p["seconds"]["expressive"] for p in pieces) / 60.0
    manifest = {"instrument": instrument, "source": str(source), "sample_rate": sample_rate, "hop": hop,
                "frame_rate": sample_rate / hop, "minutes": {"expressive": round(minutes, 2)},
                "split_by": "recording", "pieces": pieces}
    atomic_write(base / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
    return manifest
