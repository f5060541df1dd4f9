"""Shared fixtures: a private JACK server (dummy driver) for tests on real I/O.

``jack_server`` starts ``jackd -n <unique> -d dummy -r 48000 -p 256`` once per session and sets
``JACK_DEFAULT_SERVER=<unique>`` (and ``JACK_NO_START_SERVER=1``) for this process and its subprocesses.
Without jackd the tests that use it are skipped, unless ``RTPERFORMER_REQUIRE_JACK=1``: then they fail.
On teardown the server is stopped and its /dev/shm leftovers removed (the shared registry only when no
other jackd runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

JACK_RATE = 48000
JACK_PERIOD = 256


@dataclass
class JackServer:
    name: str
    rate: int
    period: int
    proc: subprocess.Popen
    log: Path

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["JACK_DEFAULT_SERVER"] = self.name
        e["JACK_NO_START_SERVER"] = "1"
        return e


def _require_jack() -> bool:
    return os.environ.get("RTPERFORMER_REQUIRE_JACK") == "1"


def _unavailable(msg: str):
    if _require_jack():
        pytest.fail(f"JACK required (RTPERFORMER_REQUIRE_JACK=1) but {msg}")
    pytest.skip(msg)


def _other_jackd_running(own_pid: int) -> bool:
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == own_pid:
            continue
        try:
            if (d / "comm").read_text().strip() == "jackd":
                return True
        except OSError:
            continue
    return False


def _cleanup_shm(name: str, own_pid: int) -> None:
    shm = Path("/dev/shm")
    for p in shm.glob(f"jack*_{name}_*"):
        p.unlink(missing_ok=True)
    for p in shm.glob(f"jack_sem.*_{name}_*"):
        p.unlink(missing_ok=True)
    if not _other_jackd_running(own_pid):
        for p in list(shm.glob("jack-shm-registry")) + list(shm.glob("jack-[0-9]*")):
            try:
                p.unlink()
            except OSError:
                pass


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    jackd = shutil.which("jackd")
    if jackd is None:
        _unavailable("jackd is not installed (apt-get install jackd2)")
    from rtperformer.midi.sources import jack_server_running

    name = f"rtptest{os.getpid()}{uuid.uuid4().hex[:6]}"
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([jackd, "-n", name, "-d", "dummy", "-r", str(JACK_RATE), "-p", str(JACK_PERIOD)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 15
    while not jack_server_running(name):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            _cleanup_shm(name, proc.pid)
            _unavailable(f"jackd did not start: {log.read_text(errors='replace')[-400:]}")
        time.sleep(0.05)
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield JackServer(name, JACK_RATE, JACK_PERIOD, proc, log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _cleanup_shm(name, proc.pid)
