"""The wheel works outside the checkout: build it, install it with its play-path dependencies into a fresh
virtualenv (no system site-packages, torch==2.13.0 from this machine's disk), and from a folder that is not
the checkout render a MIDI file with the shipped violin and serve on a JACK server.

Checks: the shipped models and configs come from inside the installed package; the play-only install has
no training package (music21, librosa, pyfluidsynth, matplotlib); the rendered notes sound at their pitch.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audio_checks import dominant_midi, rms, write_melody

REPO = Path(__file__).resolve().parents[1]
TRAINING_PACKAGES = ("music21", "librosa", "pyfluidsynth", "matplotlib", "scipy")


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _setuptools_at_least(major: int) -> bool:
    """True when this interpreter has setuptools >= ``major`` (pyproject's build backend, SPDX license)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    return int(version("setuptools").split(".")[0]) >= major


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, a work folder outside the checkout, the environment to run it with)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy (links kept as links, as git checks them out) so that no build/ or egg-info lands
    # in the checkout and no stale build/lib from an earlier build slips into the wheel.
    anywhere = shutil.ignore_patterns("__pycache__", "*.egg-info", "resume", "*.onnx", "*.trt.ep")
    top = {".git", ".venv", "build", "data", "out", ".pytest_cache"}  # checkout-level folders only

    def skip(folder, names):
        return set(anywhere(folder, names)) | (top & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, tmp / "src", symlinks=True, ignore=skip)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RTPERFORMER_MODELS", "VIRTUAL_ENV")}
    isolation = ["--no-build-isolation"] if _setuptools_at_least(77) else []  # else pip fetches the backend
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp / "dist", tmp / "src"],
         env=env, cwd=tmp)
    wheel = next((tmp / "dist").glob("rtperformer-*.whl"))
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", tmp / "venv"], env=env, cwd=tmp)
    py = tmp / "venv" / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0", wheel], timeout=900, env=env, cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    env.update(HOME=str(tmp / "home"), XDG_DATA_HOME=str(tmp / "home" / "data"),
               XDG_CONFIG_HOME=str(tmp / "home" / "config"), PATH=f"{py.parent}:{env.get('PATH', '')}")
    return py, work, env


def test_play_install_has_no_training_packages(installed):
    py, work, env = installed
    listed = _run([py, "-m", "pip", "list", "--format=freeze"], cwd=work, env=env).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert "onnxruntime" in names and "torch" in names
    assert not names & set(TRAINING_PACKAGES), names & set(TRAINING_PACKAGES)
    r = _run([py, "-c", "import rtperformer.paths as p; print(p.SHIPPED_MODELS); print(p.checkout_root())"],
             cwd=work, env=env)
    shipped, root = r.stdout.split()
    assert "site-packages" in shipped and root == "None"
    # the whole package is there (training modules too, for an install with [train])
    files = _run([py, "-c", "import rtperformer, pathlib; p = pathlib.Path(rtperformer.__file__).parent; "
                  "print(sorted(str(f.relative_to(p)) for f in p.rglob('*.py')))"], cwd=work, env=env).stdout
    for module in ("data/corpus.py", "train.py", "midi/score.py", "commands/train.py"):
        assert module in files, module


def test_render_with_shipped_violin_outside_checkout(installed):
    py, work, env = installed
    write_melody(work / "melody.mid", [(67, 1.0), (69, 1.0), (72, 1.0)], program=40)
    r = _run([py.parent / "rtperformer", "render", "melody.mid", "-o", "x.wav"],
             cwd=work, env=env, timeout=300)
    assert "violin" in r.stdout and "site-packages" not in r.stderr
    import soundfile as sf

    x, rate = sf.read(work / "x.wav", dtype="float32", always_2d=True)
    x = x[:, 0]
    for i, pitch in enumerate((67, 69, 72)):
        body = x[int((i + 0.2) * rate): int((i + 0.9) * rate)]
        assert rms(body) > 1e-3, f"note {pitch} is silent"
        assert abs(dominant_midi(body, rate) - pitch) <= 0.5


def test_serve_from_the_wheel_on_jack(installed, jack_server):
    py, work, env = installed
    env = dict(env, **{k: v for k, v in jack_server.env().items() if k.startswith("JACK")})
    proc = subprocess.Popen([py.parent / "rtperformer", "serve", "--virtual", "in", "--midi-api", "jack",
                             "--model", "violin", "--config", "serve-steady", "--quiet", "--duration", "2"],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "ready: midi=" in out and "onnx" not in err.lower(), (out, err)
