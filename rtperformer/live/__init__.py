"""Playing live: the engine (voices mixed per MIDI channel), one session's threads paced by the audio device,
the server opening the ports and its JACK connections, the demo; jacktools.py is the private JACK server and
probe used by the tests and benchmarks."""
