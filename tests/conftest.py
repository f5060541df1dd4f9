"""Shared fixtures: a private JACK server (dummy driver) for tests on real I/O.

``jack_server`` starts ``jackd -n <unique> -d dummy -r 48000 -p 256`` once per session
(:class:`rtperformer.jacktools.PrivateJackServer`) and sets ``JACK_DEFAULT_SERVER=<unique>`` (and
``JACK_NO_START_SERVER=1``) for this process and its subprocesses. Without jackd the tests that use it are
skipped, unless ``RTPERFORMER_REQUIRE_JACK=1``: then they fail. On teardown the server is stopped and its
/dev/shm leftovers removed.
"""

from __future__ import annotations

import os

import pytest

from rtperformer.jacktools import JackUnavailable, PrivateJackServer


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    server = PrivateJackServer("rtptest", 48000, 256, log=tmp_path_factory.mktemp("jack") / "jackd.log")
    try:
        server.__enter__()
    except JackUnavailable as exc:
        if os.environ.get("RTPERFORMER_REQUIRE_JACK") == "1":
            pytest.fail(f"JACK required (RTPERFORMER_REQUIRE_JACK=1) but {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.__exit__(None, None, None)
