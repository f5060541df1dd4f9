"""Shared fixtures: a private JACK server (dummy driver) for tests on real I/O.

``jack_server`` starts ``jackd -n <unique> -d dummy -r 48000 -p 256`` once per session
(:class:`rtperformer.live.jacktools.PrivateJackServer`) and sets ``JACK_DEFAULT_SERVER=<unique>`` (and
``JACK_NO_START_SERVER=1``) for this process and its subprocesses. Without jackd the tests that use it are
skipped, unless ``RTPERFORMER_REQUIRE_JACK=1``: then they fail. On teardown the server is stopped and its
/dev/shm leftovers removed.
"""

from __future__ import annotations

import os

import pytest

from rtperformer.live.jacktools import JackUnavailable, PrivateJackServer


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


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread for the test (small tensors: threads only add contention on a shared
    CI box, and the step-size-dependent float rounding stays that of one thread)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
