"""Bundled files: demo.mid (a 20 s violin/cello/flute trio, written by make_demo.py)."""
