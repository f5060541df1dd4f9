"""rtperformer: a streaming PerformanceNet you can play from a MIDI keyboard."""

__version__ = "0.1.0"
