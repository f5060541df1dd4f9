"""Events -> the model's input rolls (pitch, onset/offset, velocity, expression, note positions, bend) at the
model's frame rate: the arrays and their input layout (rolls.py), MIDI messages -> notes (tracker.py), notes ->
frames (painter.py), whole clips (notes.py), and the render thread's event queue and pianoroll (pianoroll.py)."""
