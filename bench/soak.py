"""Soak: long dense playing over JACK, a MIDI parser fuzz, and a CPU hog during play (issue 11).

Three parts, one JSON (``--out``, default bench/results/soak.json):

1. ``fuzz``: ``--fuzz`` (default 10^6) random messages of 1-3 random bytes through the one MIDI decoder
   (rtperformer/midi/decode.py), the event queue (rtperformer/midi/queue.py) and the note tracker + roll
   painter behind the model's input (rtperformer/roll/rolls.py): messages per second, valid / invalid counts,
   exceptions (must be 0), notes left held after a final panic (must be 0).
2. ``soak``: a private ``jackd -d dummy -r 48000 -p 256``; ``rtperformer serve --virtual in`` in its own
   process; a JACK-Client probe in this one plays ``--minutes`` of dense random playing at ``--rate`` note-ons
   per second (single notes and 3-note chords, sustain pedal down/up every few seconds, program changes
   among the loaded instruments, pitch bends, 0.05-1.5 s notes) on MIDI channels 0-2. Every ``--every``
   seconds (default 10) it samples the server's RSS (/proc/PID/status VmRSS) and, from its status line,
   underruns, the render step p99 over the last 4096 steps, notes held, RTF. At the end: all notes off on
   every channel, then the notes still held 2 s later (must be 0: no stuck note) and the RSS growth from
   the first sample after the warm-up minute (half the run, for runs under 2 minutes) to the last.
3. ``hog``: ``--hog-seconds`` (default 3) into the second half of the soak, one busy-looping process per
   core (``os.sched_getaffinity``) for that long, at the server's own priority; the probe records the
   server's output from 2 s before the hog to 5 s after it and reports the longest run of exact silence
   and the time from the hog's end to the first 50 ms with sound (the goal: < 1 s), plus the underruns it
   caused.

Run: ``.venv/bin/python bench/soak.py --minutes 10`` (the long form: about 12 minutes on an idle machine);
``--minutes 1 --fuzz 100000`` is the short form that checks the script works. The server plays the shipped
models (violin, cello, flute) unless ``--model`` names others.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, machine, write_json  # noqa: E402

from rtperformer.live.jacktools import JackProbe, PrivateJackServer  # noqa: E402

PROGRAMS = {"violin": 40, "cello": 42, "flute": 73}
STATUS = re.compile(r"notes\s+(?P<notes>\d+)\s+rtf (?P<rtf>[\d.]+).*?underruns (?P<underruns>\d+).*?"
                    r"step p99 (?P<p99>[\d.na]+)ms")


# -- 1. fuzz ------------------------------------------------------------------------------------------
def fuzz(n: int, seed: int = 0) -> dict:
    """``n`` random 1-3 byte messages through decode -> queue -> tracker -> painter."""
    from rtperformer.midi.decode import DecodeStats
    from rtperformer.midi.queue import MidiQueue
    from rtperformer.roll.painter import RollPainter
    from rtperformer.roll.rolls import Rolls
    from rtperformer.roll.tracker import NoteTracker

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 4, n)
    raw = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    stats, queue, tracker, painter, rolls = DecodeStats(), MidiQueue(4096), NoteTracker(), RollPainter(), Rolls.zeros(8)
    errors, frame = 0, 0
    t0 = time.perf_counter()
    for i in range(n):
        msg = raw[i, : lengths[i]].tobytes()
        queue.push(i, msg)
        if i % 64 == 63:  # the render thread's turn: drain, apply, paint one step
            while (item := queue.pop()) is not None:
                try:
                    m = stats.decode(item.data)
                    if m is not None:
                        tracker.apply(frame, m)
                except Exception:
                    errors += 1
            try:
                painter.paint(tracker, frame, frame + 8, rolls)
                tracker.forget_before(frame + 8)
            except Exception:
                errors += 1
            frame += 8
    for ch in range(16):  # panic: pedal up, all sound off
        tracker.feed(frame, bytes((0xB0 | ch, 64, 0)))
        tracker.feed(frame, bytes((0xB0 | ch, 120, 0)))
    dt = time.perf_counter() - t0
    return {"messages": n, "valid": stats.valid, "invalid": stats.invalid, "exceptions": errors,
            "queue_dropped": queue.dropped, "queue_coalesced": queue.coalesced,
            "held_after_panic": len(tracker.open), "messages_per_s": round(n / dt)}


# -- 2. + 3. soak with a hog ----------------------------------------------------------------------------
def schedule(minutes: float, rate: float, instruments: list[str], seed: int = 1) -> list[tuple[float, bytes]]:
    """Dense random playing: (seconds, message) sorted by time."""
    rng = np.random.default_rng(seed)
    total = minutes * 60.0
    ev: list[tuple[float, bytes]] = []
    t = 0.0
    programs = [PROGRAMS[i] for i in instruments if i in PROGRAMS] or [40]
    while t < total:
        ch = int(rng.integers(0, 3))
        chord = rng.random() < 0.3
        base = int(rng.integers(48, 84))
        pitches = [base, base + 4, base + 7] if chord else [base]
        dur = float(rng.uniform(0.05, 1.5))
        for p in pitches:
            ev.append((t, bytes((0x90 | ch, p, int(rng.integers(30, 127))))))
            ev.append((min(t + dur, total), bytes((0x80 | ch, p, 0))))
        r = rng.random()
        if r < 0.05:
            ev.append((t, bytes((0xB0 | ch, 64, 127 if rng.random() < 0.5 else 0))))
        elif r < 0.07:
            ev.append((t, bytes((0xC0 | ch, int(rng.choice(programs))))))
        elif r < 0.17:
            bend = int(rng.integers(0, 16384))
            ev.append((t, bytes((0xE0 | ch, bend & 127, bend >> 7))))
        t += float(rng.exponential(len(pitches) / rate))
    ev.sort(key=lambda e: e[0])
    return ev


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def hog(seconds: float) -> list[subprocess.Popen]:
    """One busy loop per usable core for ``seconds``."""
    code = f"import time\nt=time.perf_counter()+{seconds}\nwhile time.perf_counter()<t: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(len(os.sched_getaffinity(0)))]


def soak(minutes: float, rate: float, models: list[str], every: float, hog_s: float, config: str | None) -> dict:
    with PrivateJackServer("rtpsoak", 48000, 256) as jack:
        args = [sys.executable, "-m", "rtperformer", "serve", "--virtual", "in", "--midi-api", "jack",
                "--client-name", "rtpsoak"]
        for m in models:
            args += ["--model", m]
        if config:
            args += ["--config", config]
        proc = subprocess.Popen(args, cwd=REPO, env=jack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        last_status: list[str] = [""]

        def read_err():
            for line in proc.stderr:
                last_status[0] = line.strip()

        threading.Thread(target=read_err, daemon=True).start()
        probe = ear = None
        try:
            line = ""
            for line in proc.stdout:  # "connected: ..." lines come first
                if line.startswith("ready:"):
                    break
            if not line.startswith("ready:"):
                raise SystemExit(f"server did not start: {last_status[0]}")
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            audio_ports = fields["audio"].split(",")
            instruments = sorted({m.split("=")[0] for m in models} or {"violin", "cello", "flute"})
            events = schedule(minutes, rate, instruments)
            total = minutes * 60.0
            probe = JackProbe("rtpsoakplayer", 0, seconds=1)
            ear_s = hog_s + 7.0
            ear = JackProbe("rtpsoakear", 1, seconds=ear_s)
            probe.client.activate()
            ear.client.activate()
            probe.client.connect(probe.midi_out, fields["midi"])
            ear.client.connect(audio_ports[0], ear.inputs[0])
            time.sleep(2.0)
            t0 = time.monotonic()
            probe.play(events, lead=0.1)
            hog_at = max(total * 0.6, 3.0) if hog_s > 0 else None
            samples, procs, hog_info = [], [], {}
            next_sample = 0.0
            while True:
                now = time.monotonic() - t0
                if proc.poll() is not None:
                    raise SystemExit(f"server exited ({proc.returncode}) during the soak: {last_status[0]}")
                if hog_at is not None and not hog_info and now >= hog_at - 2.0:
                    ear.play_frames([], lead=0)
                    hog_info = {"ear_start": now}
                if hog_at is not None and not procs and now >= hog_at:
                    hog_info["underruns_before"] = _status(last_status[0]).get("underruns")
                    procs = hog(hog_s)
                    hog_info["start"] = now
                if now >= next_sample:
                    st = _status(last_status[0])
                    samples.append({"t": round(now, 1), "rss_mb": round(rss_kb(proc.pid) / 1024, 1), **st})
                    next_sample += every
                if now >= total + 0.2:
                    break
                time.sleep(0.1)
            for p in procs:
                p.wait()
            if procs:
                ear.wait_frame(int(ear_s * ear.rate) - 1, timeout=30)
                hog_info.update(_hog_report(ear.buf[:, 0].copy(), ear.rate, hog_info, hog_s))
                hog_info["underruns_after"] = _status(last_status[0]).get("underruns")
            # panic on every channel; then nothing may be held
            probe.play([(0.0, bytes((0xB0 | ch, c, 0))) for ch in range(16) for c in (64, 123)], lead=0.05)
            time.sleep(2.5)
            end = _status(last_status[0])
        finally:
            for p in (probe, ear):
                if p is not None:
                    p.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    warm = [s for s in samples if s["t"] >= min(60.0, total / 2)] or samples  # after the warm-up minute
    rss0, rss1 = warm[0]["rss_mb"], samples[-1]["rss_mb"]
    return {"minutes": minutes, "note_rate_per_s": rate, "events": len(events), "models": models or ["default"],
            "samples": samples, "rss_growth_pct": round(100.0 * (rss1 - rss0) / rss0, 2) if rss0 else None,
            "underruns": end.get("underruns"), "step_p99_ms_max": max((s.get("p99_ms") or 0.0) for s in samples),
            "held_after_all_notes_off": end.get("notes"), "server_exit": proc.returncode,
            "last_status": last_status[0], "hog": hog_info}


def _status(line: str) -> dict:
    m = STATUS.search(line)
    if not m:
        return {}
    p99 = m["p99"]
    return {"notes": int(m["notes"]), "rtf": float(m["rtf"]), "underruns": int(m["underruns"]),
            "p99_ms": None if p99 == "nan" else float(p99)}


def _hog_report(x: np.ndarray, rate: int, info: dict, hog_s: float) -> dict:
    """Silence around the hog: the longest run of exact zeros, and the first 50 ms with sound after its end."""
    win = rate // 20
    start = int((info["start"] - info["ear_start"]) * rate)
    end = start + int(hog_s * rate)
    rms = np.sqrt(np.mean(x[: len(x) // win * win].reshape(-1, win) ** 2, axis=1))
    after = np.flatnonzero(rms[end // win:] > 1e-4)
    zero = (x == 0.0).astype(np.int8)
    # longest run of exact zeros
    d = np.diff(np.concatenate([[0], zero, [0]]))
    runs = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
    return {"seconds": hog_s, "longest_silence_s": round(float(runs.max()) / rate, 3) if len(runs) else 0.0,
            "sound_again_after_end_s": round(float(after[0]) * win / rate, 3) if len(after) else None,
            "sounding_before_fraction": round(float(np.mean(rms[: start // win] > 1e-4)), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    ap.add_argument("--rate", type=float, default=50.0, help="note-ons per second (default 50)")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--fuzz", type=int, default=1_000_000, help="fuzzed messages through the parser (default 10^6)")
    ap.add_argument("--hog-seconds", type=float, default=3.0, help="CPU hog length during play (0: none)")
    ap.add_argument("--model", action="append", default=[], help="as serve --model (default: the shipped ones)")
    ap.add_argument("--config", help="serve --config")
    ap.add_argument("--out", default=str(RESULTS / "soak.json"))
    a = ap.parse_args(argv)
    result = {"machine": machine(), "argv": sys.argv[1:]}
    print(f"fuzz: {a.fuzz} messages ...", flush=True)
    result["fuzz"] = fuzz(a.fuzz)
    print(f"fuzz: {result['fuzz']}", flush=True)
    print(f"soak: {a.minutes} min at {a.rate} notes/s, hog {a.hog_seconds} s ...", flush=True)
    result["soak"] = soak(a.minutes, a.rate, a.model, a.every, a.hog_seconds, a.config)
    s = result["soak"]
    print(f"soak: RSS growth {s['rss_growth_pct']} %, underruns {s['underruns']}, step p99 max "
          f"{s['step_p99_ms_max']} ms, held after all-notes-off {s['held_after_all_notes_off']}, hog {s['hog']}")
    write_json(result, Path(a.out))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
