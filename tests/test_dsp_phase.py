"""Phase reconstruction: RTPGHI, RTISI-LA (streaming) and fast Griffin-Lim (offline).

Spectral convergence SC = 20*log10(|| |STFT(y)| - M ||_F / ||M||_F), measured on 1.5 s synthetic
harmonic signals with vibrato (rtperformer.dsp.synth): ``melody`` (legato line), ``chords`` (double stops
and a triad in violin register) and ``low_triad`` (close A3 triad whose low partials the 1024-point window
does not resolve: the hard case). The thresholds below are what each method must reach; the values
measured when they were set are in the comments (bench/phase.py prints the current ones). RTPGHI reaches
-15 dB or better everywhere except the low_triad at 1024 points (-12.7 / -14.0 dB), which is a
resolution limit of the window, not of the integration (Griffin-Lim, which sees the whole signal, gets -24).
RTISI-LA: lookahead 3, 4 iterations, initial phase from the partial reconstruction. Griffin-Lim: 32
iterations, momentum 0.99, RTPGHI initial phase.
"""

import numpy as np
import pytest

from rtperformer.config import AudioConfig, RenderConfig
from rtperformer.dsp.features import istft, spectral_convergence_db, stft
from rtperformer.dsp.istft_stream import StreamingISTFT
from rtperformer.dsp.griffin_lim import OfflineGriffinLim, griffin_lim
from rtperformer.dsp.phase import make_phase
from rtperformer.dsp.rtisila import RTISILA
from rtperformer.dsp.rtpghi import RTPGHI
from rtperformer.dsp.synth import SIGNALS
from rtperformer.errors import UserError

RT = AudioConfig()  # realtime: 48 kHz, n_fft 1024, hop 256
PAPER = AudioConfig(sample_rate=44100, n_fft=2048, hop=256)
DUR = 1.5

# SC thresholds in dB: (config, signal) -> {method: max SC}. Measured when set, in brackets.
THRESHOLDS = {
    ("rt", "melody"): {"rtpghi0": -30, "rtpghi1": -31, "rtisila": -35, "gla": -37},  # [-33.8 -34.5 -40.8 -40.5]
    ("rt", "chords"): {"rtpghi0": -15, "rtpghi1": -16.5, "rtisila": -23, "gla": -26},  # [-17.7 -19.3 -26.2 -28.8]
    ("rt", "low_triad"): {"rtpghi0": -11, "rtpghi1": -12, "rtisila": -16, "gla": -21},  # [-12.7 -14.0 -18.4 -23.7]
    ("paper", "melody"): {"rtpghi0": -29, "rtpghi1": -33, "rtisila": -30, "gla": -42},  # [-32.2 -36.4 -33.2 -44.9]
    ("paper", "chords"): {"rtpghi0": -25, "rtpghi1": -28, "rtisila": -25, "gla": -38},  # [-28.5 -31.6 -28.0 -40.7]
    ("paper", "low_triad"): {"rtpghi0": -15, "rtpghi1": -15.5, "rtisila": -18, "gla": -19.5},  # [-17.4 -17.9 -20.9 -21.4]
}
CFGS = {"rt": RT, "paper": PAPER}
_CACHE = {}


def _mag(cfg_name, signal):
    key = (cfg_name, signal)
    if key not in _CACHE:
        cfg = CFGS[cfg_name]
        x = SIGNALS[signal](cfg.sample_rate, DUR)
        _CACHE[key] = np.abs(stft(x, cfg))
    return _CACHE[key]


def _streamed_sc(obj, mag, cfg, chunk=None):
    """Run a streaming phase method, align by its delay, invert offline, return SC over the aligned frames."""
    d = obj.delay_frames
    padded = np.concatenate([mag, np.zeros((mag.shape[0], d), np.float32)], axis=1)
    if chunk is None:
        spec = obj.process(padded)
    else:
        spec = np.concatenate([obj.process(padded[:, i : i + chunk]) for i in range(0, padded.shape[1], chunk)], axis=1)
    spec = spec[:, d:]
    assert spec.shape == mag.shape and spec.dtype == np.complex64
    # the phase methods keep the target magnitude exactly
    np.testing.assert_allclose(np.abs(spec), mag, rtol=1e-4, atol=1e-5 * mag.max())
    return spectral_convergence_db(istft(spec, cfg), mag, cfg)


CASES = [(c, s) for c in CFGS for s in SIGNALS]


@pytest.mark.parametrize("cfg_name,signal", CASES)
@pytest.mark.parametrize("lookahead", [0, 1])
def test_rtpghi_spectral_convergence_db(cfg_name, signal, lookahead):
    cfg = CFGS[cfg_name]
    sc = _streamed_sc(RTPGHI(cfg, lookahead=lookahead), _mag(cfg_name, signal), cfg)
    assert sc <= THRESHOLDS[(cfg_name, signal)][f"rtpghi{lookahead}"], sc


@pytest.mark.parametrize("cfg_name,signal", CASES)
def test_rtisila_spectral_convergence_db(cfg_name, signal):
    cfg = CFGS[cfg_name]
    sc = _streamed_sc(RTISILA(cfg, lookahead=3, iterations=4), _mag(cfg_name, signal), cfg)
    assert sc <= THRESHOLDS[(cfg_name, signal)]["rtisila"], sc


@pytest.mark.parametrize("cfg_name,signal", CASES)
def test_griffin_lim_spectral_convergence_db(cfg_name, signal):
    cfg = CFGS[cfg_name]
    mag = _mag(cfg_name, signal)
    y = griffin_lim(mag, cfg, iterations=32, momentum=0.99)  # RTPGHI start: 32 iterations suffice
    assert y.dtype == np.float32 and y.shape == ((mag.shape[1] - 1) * cfg.hop,)
    sc = spectral_convergence_db(y, mag, cfg)
    assert sc <= THRESHOLDS[(cfg_name, signal)]["gla"], sc


def test_griffin_lim_random_init_and_momentum_help():
    mag = _mag("rt", "chords")
    sc_plain = spectral_convergence_db(griffin_lim(mag, RT, 16, momentum=0.0, init="random"), mag, RT)
    sc_fast = spectral_convergence_db(griffin_lim(mag, RT, 16, momentum=0.99, init="random"), mag, RT)
    assert sc_fast < sc_plain - 1.0
    assert sc_fast <= -12.0


@pytest.mark.parametrize("make", [lambda: RTPGHI(RT, 0), lambda: RTPGHI(RT, 1), lambda: RTISILA(RT, 2, 3),
                                  lambda: RTISILA(RT, 3, 2, init="rtpghi")], ids=["pghi0", "pghi1", "rtisila", "rtisila-pghi"])
def test_streaming_phase_is_chunking_invariant_and_resets(make):
    mag = _mag("rt", "chords")[:, :60]
    whole = make().process(mag)
    obj = make()
    rng = np.random.default_rng(0)
    parts, t = [], 0
    while t < mag.shape[1]:
        n = int(rng.integers(0, 9))
        parts.append(obj.process(mag[:, t : t + n]))
        t += n
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-5, atol=1e-5 * mag.max())
    obj.reset()
    np.testing.assert_allclose(obj.process(mag), whole, rtol=1e-5, atol=1e-5 * mag.max())


@pytest.mark.parametrize("obj", [RTPGHI(RT, 0), RTPGHI(RT, 1), RTISILA(RT, 3, 4), RTISILA(RT, 0, 2)], ids=["p0", "p1", "isi3", "isi0"])
def test_delay_frames(obj):
    mag = _mag("rt", "melody")[:, 20:40]
    out = obj.process(mag)
    d = obj.delay_frames
    assert np.all(out[:, :d] == 0)
    np.testing.assert_allclose(np.abs(out[:, d:]), mag[:, : mag.shape[1] - d], rtol=1e-4, atol=1e-6)


def test_silence_and_float64_input():
    for obj in (RTPGHI(RT, 1), RTISILA(RT, 2, 2)):
        out = obj.process(np.zeros((RT.n_bins, 5)))
        assert out.dtype == np.complex64 and np.all(out == 0)
    with pytest.raises(ValueError):
        RTPGHI(RT, 2)
    with pytest.raises(ValueError):
        RTPGHI(RT).process(np.zeros((10, 3), np.float32))


def test_stream_through_streaming_istft_matches_offline():
    """The live chain: RTPGHI frame by frame -> StreamingISTFT; same audio as the offline inverse."""
    mag = _mag("rt", "melody")
    ph, ist = RTPGHI(RT, lookahead=1), StreamingISTFT(RT)
    out = [ist.push(ph.process(mag[:, j : j + 1])) for j in range(mag.shape[1])]
    out.append(ist.push(ph.process(np.zeros((RT.n_bins, 1), np.float32))))
    out.append(ist.flush())
    y = np.concatenate(out)
    shift = ist.delay_samples + ph.delay_frames * RT.hop
    ref = istft(RTPGHI(RT, 1).process(np.pad(mag, ((0, 0), (0, 1))))[:, 1:], RT)
    np.testing.assert_allclose(y[shift : shift + len(ref)], ref, atol=1e-5)


def test_make_phase_factory():
    rc = RenderConfig(phase_lookahead=1, rtisila_lookahead=2, rtisila_iterations=3)
    p = make_phase("rtpghi", RT, rc)
    assert isinstance(p, RTPGHI) and p.delay_frames == 1 and p.streaming
    r = make_phase("rtisila", RT, rc)
    assert isinstance(r, RTISILA) and r.delay_frames == 2 and r.iterations == 3 and r.streaming
    g = make_phase("gla", RT, RenderConfig(gla_iterations=2))
    assert isinstance(g, OfflineGriffinLim) and not g.streaming
    assert g.reconstruct(_mag("rt", "melody")[:, :10]).shape == (9 * RT.hop,)
    with pytest.raises(UserError):
        make_phase("nope", RT, rc)


def test_warmup_compiles_the_phase_kernels():
    """In a fresh process the numba kernels have no compiled signature until warmup() runs them."""
    import subprocess
    import sys

    code = (
        "from rtperformer.config import AudioConfig\n"
        "from rtperformer.dsp import rtisila, rtpghi, warmup\n"
        "ks = [rtpghi._rtpghi_block, rtisila._gather, rtisila._project, rtisila._scatter]\n"
        "before = [len(k.signatures) for k in ks]\n"
        "t = warmup(AudioConfig())\n"
        "print(before, [len(k.signatures) for k in ks], t > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[0,", "0,", "0,", "0]", "[1,", "1,", "1,", "1]", "True"]
