"""``rtperformer serve`` on a real JACK dummy server when things go wrong (issue 11): garbage MIDI, MIDI
sent while the engines are still building, a MIDI source that disappears and comes back, the JACK server
dying under a running server, a recording that hits a full disk.

As in test_jack_serve.py the server runs in its own process; this process's JACK-Client plays MIDI and
records the server's audio ports. Assertions are on the audio, the exit code and stderr, never on
wall-clock figures.
"""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pytest

from rtperformer.live.jacktools import JackProbe
from test_jack_serve import RELEASE, _rms, _serve_config, _start_server, _stop_server, tiny_model_dir  # noqa: F401

OUT_DELAY = (384 + 2 * 256) / 48000  # fill target + one step + one period (streaming, step_frames 1)


def _ready_line(proc, timeout: float = 180.0) -> str:
    """The server's ``ready:`` line (earlier stdout lines, e.g. ``connected:``, are skipped); fails the test
    if it does not come within ``timeout`` (never blocks on a server that runs on)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue()

    def read():
        for line in proc.stdout:
            if line.startswith("ready:"):
                q.put(line)
                return
        q.put("")

    threading.Thread(target=read, daemon=True).start()
    try:
        line = q.get(timeout=timeout)
    except queue.Empty:
        line = ""
    if not line:
        proc.kill()
        proc.wait()
        pytest.fail(f"server did not get ready (rc={proc.returncode})")
    return line


class _Lines(list):
    """Lines read from a stream by a thread; :meth:`text` waits for the end of the stream."""

    def text(self, timeout: float = 10.0) -> str:
        self.thread.join(timeout)
        return "".join(self)


def _collect(stream) -> _Lines:
    """Read ``stream`` in a thread (a server's stderr pipe must never fill up)."""
    import threading

    lines = _Lines()
    lines.thread = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    lines.thread.start()
    return lines


def _connect(probe: JackProbe, midi_port: str, audio_ports: list[str]) -> None:
    probe.client.connect(probe.midi_out, midi_port)
    for src, dst in zip(audio_ports, probe.inputs):
        probe.client.connect(src, dst)


def _reset_all() -> list[bytes]:
    """What a keyboard's panic button sends on every channel: all sound off, reset controllers, pedal up,
    all notes off, full volume and expression, bend centred."""
    out = []
    for ch in range(16):
        b = 0xB0 | ch
        out += [bytes((b, 120, 0)), bytes((b, 121, 0)), bytes((b, 64, 0)), bytes((b, 123, 0)),
                bytes((b, 7, 127)), bytes((b, 11, 127)), bytes((0xE0 | ch, 0, 64))]
    return out


def _notes_sound(x, f, notes, xruns) -> list[int]:
    silent = [p for on, off, p in notes if _rms(x[f(on): f(off)]) <= 1e-4]
    allowed = 0 if xruns == 0 else 1  # an xrun on this shared box may drop one MIDI event
    assert len(silent) <= allowed, f"no sound for notes {silent} (probe xruns {xruns})"
    return silent


def test_random_bytes_do_not_kill_serve_and_notes_sound_after(jack_server, tiny_model_dir, tmp_path):
    """6,400 random bytes as MIDI events (a broken controller), then a panic reset and 20 notes: the
    server survives, nothing is stuck after the reset, the 20 notes sound, the status counts the garbage.
    On main this killed the server (IndexError in rolls.py) and none of the 20 notes sounded."""
    rng = np.random.default_rng(11)
    garbage, sent, t = [], 0, 0.0
    while sent < 6400:
        n = int(rng.integers(1, 4))
        garbage.append((t, rng.integers(0, 256, n).astype(np.uint8).tobytes()))
        sent += n
        t += 0.0004  # ~1 s of garbage
    reset_t = 1.3
    events = garbage + [(reset_t, m) for m in _reset_all()]
    notes = []
    t = 2.2
    for i in range(20):
        p = 60 + (i * 5) % 17
        events += [(t, bytes((0x90, p, 100))), (t + 0.2, bytes((0x80, p, 0)))]
        notes.append((t, t + 0.2, p))
        t += 0.35
    total = t + 0.5
    args = ["--virtual", "in", "--client-name", "rtpfuzz", "--midi-api", "jack",
            "--config", str(_serve_config(tmp_path, "streaming")), "--model", f"violin={tiny_model_dir}"]
    proc, midi_port, audio_ports, err = _start_server(args, jack_server.env())
    probe = None
    try:
        probe = JackProbe("rtpfuzzprobe", len(audio_ports), seconds=total + 2)
        probe.client.activate()
        _connect(probe, midi_port, audio_ports)
        time.sleep(1.0)
        sched = probe.play(events)
        base = sched[0][0]
        probe.wait_frame(base + int(total * probe.rate))
        x = probe.buf[: probe.recorded, 0].copy()
        xruns, rate = probe.xruns, probe.rate
        assert proc.poll() is None, "".join(err)[-3000:]
    finally:
        if probe is not None:
            probe.close()
        rc = _stop_server(proc)
    assert rc == 0, "".join(err)[-3000:]
    f = lambda s: base + int(round(s * rate))  # noqa: E731
    # after the panic reset nothing is left sounding (all sound off closes the gates at once)
    quiet = x[f(reset_t + OUT_DELAY + 0.3): f(2.2)]
    assert len(quiet) > 0.3 * rate and np.all(quiet == 0.0), "a note stayed stuck after the reset"
    _notes_sound(x, f, notes, xruns)
    last = "".join(err).strip().splitlines()[-1]
    assert last.startswith("stopped:") and " bad " in last, last


def test_midi_sent_while_engines_build_does_not_fire_later(jack_server, tiny_model_dir, tmp_path):
    """A note-on sent while the server is still building its engines (its MIDI port already connected)
    must not sound once the server is ready; a note sent afterwards does. On main the queued note-on fired
    at the first render step and held forever."""
    probe = JackProbe("rtpearly", 2, seconds=6)
    probe.client.activate()
    proc = None
    try:
        args = ["--midi-port", "rtpearly:midi", "--client-name", "rtpearlysrv", "--midi-api", "jack",
                "--config", str(_serve_config(tmp_path, "streaming")), "--model", f"violin={tiny_model_dir}"]
        import sys
        from test_jack_serve import REPO

        proc = subprocess.Popen([sys.executable, "-m", "rtperformer", "serve", *args], cwd=REPO,
                                env=dict(jack_server.env(), PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = _collect(proc.stderr)
        deadline = time.monotonic() + 120
        while not probe.client.get_all_connections(probe.midi_out):
            assert proc.poll() is None and time.monotonic() < deadline, "the server never connected its MIDI port"
            time.sleep(0.005)
        probe.play_frames([(0, bytes((0x90, 69, 100)))], lead=0)  # sent at the next JACK cycle
        while probe._next == 0:
            time.sleep(0.001)
        line = _ready_line(proc)
        # the server printed ready after the note went out: the note arrived while it was building
        fields = dict(kv.split("=", 1) for kv in line.split()[1:])
        for src, dst in zip(fields["audio"].split(","), probe.inputs):
            probe.client.connect(src, dst)
        time.sleep(0.3)
        sched = probe.play([(1.2, bytes((0x90, 64, 100))), (1.6, bytes((0x80, 64, 0)))], lead=0.0)
        probe.wait_frame(int(2.2 * probe.rate))
        x = probe.buf[: probe.recorded, 0].copy()
        rate = probe.rate
    finally:
        probe.close()
        if proc is not None:
            rc = _stop_server(proc)
    err = lines.text()
    assert rc == 0, err[-3000:]
    on = sched[0][0]
    assert np.all(x[:on] == 0.0), "a note-on sent before the server was ready sounds"
    assert _rms(x[on + int(0.05 * rate): on + int(0.4 * rate)]) > 1e-4, "the note after ready is silent"
    assert " early 1" in err.strip().splitlines()[-1]


def test_serve_without_onnxruntime_is_one_line_exit_2(jack_server, tiny_model_dir, tmp_path):
    """onnxruntime not importable (shadowed by a package that raises ImportError, as when it is not
    installed) and the config asks for onnx: one line naming it, exit 2, before any model loads. On main
    the server silently fell back to eager torch."""
    import sys

    from test_jack_serve import REPO

    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'onnxruntime'\", name='onnxruntime')\n")
    env = dict(jack_server.env())
    env["PYTHONPATH"] = f"{shadow.parent}:{env.get('PYTHONPATH', '')}"
    r = subprocess.run([sys.executable, "-m", "rtperformer", "serve", "--virtual", "x", "--midi-api", "jack",
                        "--backend", "onnx", "--duration", "2", "--model", f"violin={tiny_model_dir}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "onnxruntime" in r.stderr, r.stderr


def test_engine_refuses_an_unavailable_backend(monkeypatch):
    """The engine itself (also reached by the demo and bench) raises the same one-line error."""
    import sys

    pytest.importorskip("torch")
    from test_engine import tiny

    from rtperformer.live.engine import Engine, Instrument
    from rtperformer.errors import UserError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    model, cfg = tiny(serve={"backend": "onnx"})
    with pytest.raises(UserError, match="backend 'onnx' is not available here: onnxruntime not installed"):
        Engine([Instrument("violin", model, cfg)], cfg)


def test_unwritable_record_path_fails_before_models_load(jack_server):
    """--record into a folder nothing can be created in: one line, exit 2, before the models load (the
    model given does not exist: on main that error came first, or the record error came only after the
    models had loaded, as a traceback)."""
    import sys

    from test_jack_serve import REPO

    r = subprocess.run([sys.executable, "-m", "rtperformer", "serve", "--virtual", "x", "--midi-api", "jack",
                        "--record", "/proc/rtperformer-take.wav", "--model", "/nonexistent/model"],
                       cwd=REPO, env=jack_server.env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot record to /proc/rtperformer-take.wav" in lines[0], r.stderr


def _limit_file_size(limit: int):
    def pre():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def _record_session(jack_server, tiny_model_dir, tmp_path, name, n_notes, preexec=None):
    """Serve with --record, play ``n_notes`` notes (0.3 s on, 0.5 s apart) 1 s after ready; returns
    (proc, err, probe, base, notes, rec path, ready time)."""
    import sys

    from test_jack_serve import REPO

    rec = tmp_path / f"{name}.wav"
    args = [sys.executable, "-m", "rtperformer", "serve", "--virtual", "in", "--client-name", f"rtp{name}",
            "--midi-api", "jack", "--record", str(rec), "--config", str(_serve_config(tmp_path, "streaming")),
            "--model", f"violin={tiny_model_dir}"]
    proc = subprocess.Popen(args, cwd=REPO, env=dict(jack_server.env(), PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
    err: list[str] = []
    import threading

    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    try:
        line = _ready_line(proc)
        t_ready = time.monotonic()
        fields = dict(kv.split("=", 1) for kv in line.split()[1:])
        audio_ports = fields["audio"].split(",")
        probe = JackProbe(f"rtp{name}probe", len(audio_ports), seconds=n_notes * 0.5 + 3)
        probe.client.activate()
        _connect(probe, fields["midi"], audio_ports)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    notes, events = [], []
    for i in range(n_notes):
        t, p = 0.2 + 0.5 * i, 60 + (i * 7) % 12
        events += [(t, bytes((0x90, p, 100))), (t + 0.3, bytes((0x80, p, 0)))]
        notes.append((t, t + 0.3, p))
    time.sleep(1.0)
    sched = probe.play(events, lead=0.0)
    return proc, err, probe, sched[0][0] - int(0.2 * probe.rate), notes, rec, t_ready


@pytest.mark.parametrize("how", ["SIGKILL", "SIGHUP"])
def test_recording_is_a_readable_wav_after_sigkill_or_sighup(jack_server, tiny_model_dir, tmp_path, how):
    """The take is readable under its own name up to the last second written even when the server is
    killed (-9), and SIGHUP (a closed terminal) ends it cleanly like SIGTERM. On main SIGKILL left only a
    hidden .part with an unfinished header and SIGHUP killed the server the same way."""
    proc, err, probe, base, notes, rec, t_ready = _record_session(jack_server, tiny_model_dir, tmp_path,
                                                                  how.lower(), 6)
    try:
        probe.wait_frame(base + int((notes[-1][1] + 0.5) * probe.rate))
        probe.close()
        probe = None
        t_kill = time.monotonic()
        rc = _stop_server(proc, getattr(signal, how))
    finally:
        if probe is not None:
            probe.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    import soundfile as sf

    if how == "SIGHUP":
        assert rc == 0, "".join(err)[-3000:]
    else:
        assert rc == -signal.SIGKILL
    assert rec.is_file(), f"no {rec.name}: {[p.name for p in tmp_path.iterdir()]}"
    got, rate = sf.read(rec, dtype="float32", always_2d=True)
    # all audio up to the last header update (every second) is there; the session ran t_kill - t_ready
    assert len(got) >= (t_kill - t_ready - 1.5) * rate, (len(got) / rate, t_kill - t_ready)
    loud = sum(_rms(got[s:s + rate // 10, 0]) > 1e-4 for s in range(0, len(got), rate // 10))
    assert loud >= len(notes), f"only {loud} sounding 0.1 s chunks in the recording"


def test_disk_full_stops_the_recording_not_the_music(jack_server, tiny_model_dir, tmp_path):
    """The recording hits a file size limit (writes fail as on a full disk) after about 2.6 s: a clear
    message, the music keeps playing (notes after the failure sound), a readable WAV of what was written,
    exit 0. On main the recorder thread died with a traceback and the take was lost."""
    limit = 1_000_000  # bytes: ~2.6 s of 48 kHz stereo float
    proc, err, probe, base, notes, rec, _ = _record_session(jack_server, tiny_model_dir, tmp_path, "full", 12,
                                                            preexec=_limit_file_size(limit))
    try:
        probe.wait_frame(base + int((notes[-1][1] + 0.5) * probe.rate))
        x = probe.buf[: probe.recorded, 0].copy()
        xruns, rate = probe.xruns, probe.rate
        assert proc.poll() is None, "".join(err)[-3000:]
    finally:
        probe.close()
        rc = _stop_server(proc)
    text = "".join(err)
    assert rc == 0, text[-3000:]
    assert "recording stopped (file too large)" in text, text[-2000:]
    f = lambda s: base + int(round(s * rate))  # noqa: E731
    _notes_sound(x, f, notes[-6:], xruns)  # the last 6 notes come seconds after the recording stopped
    import soundfile as sf

    got, rrate = sf.read(rec, dtype="float32", always_2d=True)
    assert 0.5 * limit / (8 * rrate) <= len(got) / rrate <= limit / (8 * rrate)


def test_jack_server_dying_is_a_message_not_a_hang(tiny_model_dir, tmp_path):
    """jackd is killed under a running server (its own private JACK server, not the session one): the
    server notices (no audio callback for 1.5 s), says so in one line, finishes the recording and exits
    with code 3. On main it hung silently until killed."""
    import sys

    import soundfile as sf

    from rtperformer.live.jacktools import PrivateJackServer
    from test_jack_serve import REPO

    rec = tmp_path / "take.wav"
    with PrivateJackServer("rtpdie", 48000, 256, log=tmp_path / "jackd.log") as jack:
        args = [sys.executable, "-m", "rtperformer", "serve", "--virtual", "in", "--client-name", "rtpdie",
                "--midi-api", "jack", "--record", str(rec), "--config", str(_serve_config(tmp_path, "streaming")),
                "--model", f"violin={tiny_model_dir}"]
        proc = subprocess.Popen(args, cwd=REPO, env=dict(jack.env(), PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        lines = _collect(proc.stderr)
        try:
            _ready_line(proc)
            time.sleep(2.0)
            jack.proc.kill()
            jack.proc.wait()
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail("serve hung after its JACK server died")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = lines.text()
    assert rc == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("rtperformer serve: audio lost: the JACK server stopped or restarted"), err[-2000:]
    got, rate = sf.read(rec, dtype="float32", always_2d=True)
    assert len(got) >= 1.5 * rate  # the 2 s before the kill are in the finished take


def test_keyboard_unplugged_releases_notes_and_is_found_again(jack_server, tiny_model_dir, tmp_path):
    """The keyboard's JACK client (a port the server connected to by name) goes away while two notes are
    held under the pedal: the server releases them (silence follows), says so on the status line, and
    reconnects when a client of the same name comes back; its notes sound. On main the notes sounded
    forever and the port stayed dead."""
    kb = JackProbe("rtpkb", 0, seconds=1)
    kb.client.activate()
    args = ["--midi-port", "rtpkb:midi", "--client-name", "rtpkbsrv", "--midi-api", "jack",
            "--config", str(_serve_config(tmp_path, "streaming")), "--model", f"violin={tiny_model_dir}"]
    proc, midi_port, audio_ports, err = _start_server(args, jack_server.env())
    ear = kb2 = None
    try:
        assert midi_port == "rtpkb:midi_out"
        ear = JackProbe("rtpear", len(audio_ports), seconds=12)
        ear.client.activate()
        for src, dst in zip(audio_ports, ear.inputs):
            ear.client.connect(src, dst)
        time.sleep(0.5)
        ear.play_frames([], lead=0)
        kb.play_frames([(0, b"\xb0\x40\x7f"), (0, b"\x90\x3c\x64"), (0, b"\x90\x43\x64")], lead=0)
        rate = ear.rate
        ear.wait_frame(int(1.0 * rate))
        unplug = ear.recorded
        kb.close()  # the keyboard is unplugged: its port disappears
        kb = None
        ear.wait_frame(unplug + int(2.5 * rate))
        back = ear.recorded
        kb2 = JackProbe("rtpkb", 0, seconds=1)  # plugged in again: same name
        kb2.client.activate()
        deadline = time.monotonic() + 10
        while not kb2.client.get_all_connections(kb2.midi_out):
            assert time.monotonic() < deadline, "the server did not reconnect to the keyboard"
            time.sleep(0.05)
        reconnected = ear.recorded
        kb2.play_frames([(0, b"\x90\x48\x64"), (int(0.4 * rate), b"\x80\x48\x00")], lead=0)
        ear.wait_frame(reconnected + int(1.0 * rate))
        x = ear.buf[: ear.recorded, 0].copy()
    finally:
        for p in (kb, kb2, ear):
            if p is not None:
                p.close()
        rc = _stop_server(proc)
    text = "".join(err)
    assert rc == 0, text[-3000:]
    assert _rms(x[int(0.3 * rate): unplug]) > 1e-4, "the held notes did not sound"
    # released within a watch period (0.5 s) + release (0.15 s) + output buffering
    assert np.all(x[unplug + int(1.2 * rate): back] == 0.0), "notes still sound after the keyboard went away"
    assert "MIDI port 'rtpkb:midi_out' lost, waiting for it: all notes released" in text, text[-2000:]
    assert "MIDI port 'rtpkb:midi_out' back" in text
    assert _rms(x[reconnected: reconnected + int(0.5 * rate)]) > 1e-4, "no sound after the keyboard came back: " + text[-600:]


def test_sequencer_disconnecting_from_the_virtual_port_releases_notes(jack_server, tiny_model_dir, tmp_path):
    """A sequencer connected to the server's virtual port quits (its connection goes) while a note is held
    under the pedal: the server releases everything and says so; a new connection plays again."""
    args = ["--virtual", "in", "--client-name", "rtpvirt", "--midi-api", "jack",
            "--config", str(_serve_config(tmp_path, "streaming")), "--model", f"violin={tiny_model_dir}"]
    proc, midi_port, audio_ports, err = _start_server(args, jack_server.env())
    seq = ear = None
    try:
        ear = JackProbe("rtpvear", len(audio_ports), seconds=10)
        ear.client.activate()
        for src, dst in zip(audio_ports, ear.inputs):
            ear.client.connect(src, dst)
        seq = JackProbe("rtpseq", 0, seconds=1)
        seq.client.activate()
        seq.client.connect(seq.midi_out, midi_port)
        time.sleep(0.7)  # the watch sees the connection
        rate = ear.rate
        ear.play_frames([], lead=0)
        seq.play_frames([(0, b"\xb0\x40\x7f"), (0, b"\x90\x3c\x64")], lead=0)
        ear.wait_frame(int(1.0 * rate))
        gone = ear.recorded
        seq.client.disconnect(seq.midi_out, midi_port)
        ear.wait_frame(gone + int(2.0 * rate))
        seq.client.connect(seq.midi_out, midi_port)
        time.sleep(0.3)
        again = ear.recorded
        seq.play_frames([(0, b"\x90\x48\x64"), (int(0.4 * rate), b"\x80\x48\x00")], lead=0)
        ear.wait_frame(again + int(0.8 * rate))
        x = ear.buf[: ear.recorded, 0].copy()
    finally:
        for p in (seq, ear):
            if p is not None:
                p.close()
        rc = _stop_server(proc)
    text = "".join(err)
    assert rc == 0, text[-3000:]
    assert _rms(x[int(0.3 * rate): gone]) > 1e-4
    assert np.all(x[gone + int(1.2 * rate): gone + int(2.0 * rate)] == 0.0), "the held note outlived its sequencer"
    assert "MIDI input disconnected: all notes released" in text, text[-2000:]
    assert _rms(x[again: again + int(0.5 * rate)]) > 1e-4


def test_midi_flood_over_a_full_queue_leaves_no_stuck_note(jack_server, tiny_model_dir, tmp_path):
    """6,000 messages in 0.6 s (bursts of 50 note-ons and their 50 note-offs inside one JACK period) into
    a 64-slot event queue: note-ons and controllers are dropped, note-offs never (the reserve, or a
    channel-wide release when even that is full), so the output is silent again after the release time and
    the next note sounds. On main the full queue dropped note-offs like anything else: stuck notes."""
    cfg = _serve_config(tmp_path, "streaming")
    cfg.write_text(cfg.read_text() + "  event_queue: 64\n")
    rng = np.random.default_rng(5)
    args = ["--virtual", "in", "--client-name", "rtpflood", "--midi-api", "jack", "--config", str(cfg),
            "--model", f"violin={tiny_model_dir}"]
    proc, midi_port, audio_ports, err = _start_server(args, jack_server.env())
    probe = None
    try:
        probe = JackProbe("rtpfloodprobe", len(audio_ports), seconds=6)
        probe.client.activate()
        _connect(probe, midi_port, audio_ports)
        time.sleep(1.0)
        rate = probe.rate
        events = []
        # 50 note-ons and their 50 note-offs inside one JACK period, 60 times: each burst overflows the
        # 64-slot queue (the render thread drains it once per period) and a loaded box still delivers it
        # (far larger bursts make JACK itself drop the cycles of a late MIDI client, before any queue)
        for burst in range(60):
            at = int(burst * 0.01 * rate)
            keys = [(int(rng.integers(0, 3)), int(rng.integers(36, 96))) for _ in range(50)]
            events += [(at, bytes((0x90 | c, p, 100))) for c, p in keys]
            events += [(at + 1, bytes((0x80 | c, p, 0))) for c, p in keys]
        t_after = int(2.5 * rate)
        events += [(t_after, b"\x90\x45\x64"), (t_after + int(0.3 * rate), b"\x80\x45\x00")]
        probe.play_frames(events, lead=int(0.1 * rate))
        probe.wait_frame(int(3.5 * rate))
        x = probe.buf[: probe.recorded, 0].copy()
        assert proc.poll() is None, "".join(err)[-3000:]
    finally:
        if probe is not None:
            probe.close()
        rc = _stop_server(proc)
    text = "".join(err)
    assert rc == 0, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert " dropped " in last and " coalesced " in last, last  # the queue did overflow
    assert " midi 6002 " in last, last  # everything reached the server (JACK dropped nothing)
    assert _rms(x[int(0.1 * rate): int(0.7 * rate)]) > 1e-4  # the flood played
    quiet = x[int((0.1 + 0.6 + RELEASE + OUT_DELAY + 0.3) * rate): int(2.5 * rate)]
    assert len(quiet) > 0.5 * rate and np.all(quiet == 0.0), "a note stayed stuck after the flood: " + text[-1500:]
    assert _rms(x[t_after + int(0.1 * rate): t_after + int(0.4 * rate)]) > 1e-4, "no sound after the flood"
