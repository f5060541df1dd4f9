"""Rendering a MIDI file offline: its parts arranged to instruments, each through the voice chain, mixed to
one WAV (+PNG)."""
