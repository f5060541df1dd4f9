"""Routing on a real JACK dummy server: ``serve --connect-midi`` / ``--connect-audio`` / ``--no-connect``
(rtperformer/live/jackroute.py) and GM channel 10 ignored live unless ``serve.channel_map`` maps it.

The server runs as a subprocess with a small random-weight model (its gate keeps it exactly silent without
notes and it sounds while a note is held); a JACK-Client probe in this process owns a MIDI output flagged
*physical* (what a USB keyboard's port is) and two audio inputs, and records what reaches them. The ALSA
sequencer cannot be reached on these machines (no /dev/snd/seq), so MIDI routing is tested on JACK only.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from audio_checks import rms
from rtperformer.live.jacktools import JackProbe

REPO = Path(__file__).resolve().parents[1]
SERVER = "rtproute"


@pytest.fixture(scope="module")
def tiny_violin(tmp_path_factory):
    import torch

    from rtperformer.config import from_dict
    from rtperformer.model.checkpoint import save_checkpoint
    from rtperformer.model.performancenet import build_model

    cfg = from_dict({"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2], "norm": "layer"}})
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models") / "violin"
    save_checkpoint(d, build_model(cfg).eval(), cfg, {"step": 0, "note": "random weights for tests"})
    return d


def _config(tmp: Path, extra: str = "") -> Path:
    p = tmp / "serve.yaml"
    p.write_text("render:\n  release_seconds: 0.15\nserve:\n  lead_samples: 512\n  max_lead_samples: 1024\n" + extra)
    return p


class Server:
    """``rtperformer serve`` as a subprocess: stdout lines kept, ``ready`` once its ports are open."""

    def __init__(self, args: list[str], env: dict):
        cmd = [sys.executable, "-m", "rtperformer", "serve", "--client-name", SERVER, "--midi-api", "jack", *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready = threading.Event()
        self._threads = [threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + 180
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server not ready:\n{''.join(self.out)}\n{''.join(self.err)[-3000:]}")

    def _read(self):
        for line in self.proc.stdout:
            self.out.append(line)
            if line.startswith("ready:"):
                self.ready.set()

    @property
    def connected(self) -> list[str]:
        """The ``connected: A -> B`` lines serve wrote on stderr (complete once :meth:`stop` returned)."""
        return [line.split(":", 1)[1].strip() for line in self.err if line.startswith("connected:")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        for t in self._threads:
            t.join(timeout=10)
        return rc


def _play(probe: JackProbe, events, total: float) -> np.ndarray:
    sched = probe.play(events)
    base = sched[0][0] - int(round(events[0][0] * probe.rate))
    probe.wait_frame(base + int(total * probe.rate))
    return probe.buf[: probe.recorded, 0].copy(), base


def _connections(port: str) -> set[str]:
    import jack

    c = jack.Client("rtproute-query", no_start_server=True)
    try:
        return {p.name for p in c.get_all_connections(port)}
    finally:
        c.close()


def test_connect_midi_all_and_audio_pattern(jack_server, tiny_violin, tmp_path):
    """A hardware MIDI port is connected to the virtual input by default (--connect-midi all for a virtual
    port) and --connect-audio REGEX sends the audio to the probe instead of the system playback: notes
    played on the probe's port with no manual connection sound in the probe's recording."""
    probe = JackProbe("rtpkbd", 2, seconds=6.0, physical_midi=True)
    probe.client.activate()
    server = None
    try:
        server = Server(["--virtual", "in", "--model", f"violin={tiny_violin}", "--config", str(_config(tmp_path)),
                         "--connect-audio", "^rtpkbd:", "--quiet"], jack_server.env())
        assert server.out[0].startswith("ready:")  # stdout's first line; the connections go to stderr
        assert _connections(f"{SERVER}:in") == {"rtpkbd:midi_out"}
        assert _connections(f"{SERVER}-out:out_0") == {"rtpkbd:in_0"}  # PortAudio's system links replaced
        time.sleep(1.0)
        x, base = _play(probe, [(0.2, bytes([0x90, 69, 100])), (0.8, bytes([0x80, 69, 0]))], 1.5)
        rate = probe.rate
        assert np.all(x[: base + int(0.2 * rate)] == 0.0)
        assert rms(x[base + int(0.35 * rate): base + int(0.8 * rate)]) > 1e-4, "the keyboard's note is silent"
    finally:
        if server is not None:
            assert server.stop() == 0, "".join(server.err)[-3000:]
        probe.close()
    assert "rtpkbd:midi_out -> rtproute:in" in server.connected, server.err
    assert f"{SERVER}-out:out_0 -> rtpkbd:in_0" in server.connected, server.err


def test_connect_midi_regex_and_no_connect(jack_server, tiny_violin, tmp_path):
    """--connect-midi REGEX connects a non-physical port by name; --no-connect connects nothing at all."""
    probe = JackProbe("rtpseq", 1, seconds=2.0)
    probe.client.activate()
    try:
        server = Server(["--virtual", "in", "--model", f"violin={tiny_violin}", "--config", str(_config(tmp_path)),
                         "--connect-midi", "rtpseq:midi", "--quiet", "--duration", "2"], jack_server.env())
        assert _connections(f"{SERVER}:in") == {"rtpseq:midi_out"}
        assert server.stop() == 0
        assert "rtpseq:midi_out -> rtproute:in" in server.connected, server.err
        server = Server(["--virtual", "in", "--model", f"violin={tiny_violin}", "--config", str(_config(tmp_path)),
                         "--connect-midi", "rtpseq", "--no-connect", "--quiet", "--duration", "3"], jack_server.env())
        assert _connections(f"{SERVER}:in") == set() and _connections(f"{SERVER}-out:out_0") == set()
        assert server.stop() == 0
        assert server.connected == []
    finally:
        probe.close()


def test_bad_connect_pattern_is_one_line_exit_2(jack_server):
    r = subprocess.run([sys.executable, "-m", "rtperformer", "serve", "--midi-api", "jack", "--connect-midi", "(",
                        "--model", "/nonexistent"], cwd=REPO, env=jack_server.env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--connect-midi" in r.stderr


@pytest.mark.parametrize("mapped", [False, True])
def test_drum_channel_ignored_unless_mapped(jack_server, tiny_violin, tmp_path, mapped):
    """Notes on GM channel 10 make no sound and the status line names the channel once, unless
    serve.channel_map maps channel index 9 to an instrument; channel 1 plays either way."""
    probe = JackProbe("rtpdrum", 1, seconds=6.0)
    probe.client.activate()
    server = None
    try:
        extra = "  channel_map: {9: violin}\n" if mapped else ""
        server = Server(["--virtual", "in", "--model", f"violin={tiny_violin}", "--config",
                         str(_config(tmp_path, extra)), "--connect-audio", "^rtpdrum:"], jack_server.env())
        probe.client.connect(probe.midi_out, f"{SERVER}:in")
        time.sleep(1.0)
        events = [(0.2, bytes([0xC9, 40])),  # a program change on the drum channel changes nothing
                  (0.3, bytes([0x99, 38, 100])), (0.8, bytes([0x89, 38, 0])),
                  (0.9, bytes([0x99, 42, 100])), (1.2, bytes([0x89, 42, 0])),
                  (1.8, bytes([0x90, 69, 100])), (2.3, bytes([0x80, 69, 0]))]
        x, base = _play(probe, events, 2.8)
        rate = probe.rate
        drums = x[base + int(0.3 * rate): base + int(1.6 * rate)]
        violin = x[base + int(1.95 * rate): base + int(2.3 * rate)]
        assert rms(violin) > 1e-4
        if mapped:
            assert rms(drums) > 1e-4
        else:
            assert np.all(drums == 0.0), "a drum-channel note sounded"
        time.sleep(0.7)  # one more status line
    finally:
        if server is not None:
            assert server.stop() == 0, "".join(server.err)[-3000:]
        probe.close()
    status = "".join(server.err)
    assert ("ignored: ch10 drums" in status) is (not mapped), status[-2000:]
    assert status.count("ch10 drums, ch10") == 0  # named once, not per note
