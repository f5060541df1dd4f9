"""Training data: corpus builder (music21 -> humanised FluidSynth renders), datasets, MusicNet loaders.

- scores.py: music21 corpus lines (quartets, chorales, folk), parsed once and cached as JSON.
- humanize.py: seeded expressive / flat / deadpan performances of a line.
- synth.py: offline FluidSynth rendering (per-note channels for vibrato).
- rolls_io.py: notes -> Rolls (rtperformer.roll.rolls), compact .npz next to each render.
- corpus.py: ``rtperformer data build``; splits.py: fixed split by piece (configs/splits/).
- dataset.py: ``WindowDataset`` and ``piece_arrays`` over cached per-piece features.
- musicnet.py: MusicNet tree / musicnet.npz loaders and import into the corpus layout.
"""
