"""Notes -> the model's input rolls (pitch roll, onset/offset roll, velocity, pedal, positions), at the
model's frame rate: offline from a score (rolls.py), live from stamped MIDI events (pianoroll.py)."""
