"""Streaming iSTFT: any chunking of a known complex STFT reproduces the signal (max abs error <= 1e-5)."""

import numpy as np
import pytest

from rtperformer.config import AudioConfig
from rtperformer.dsp.features import stft
from rtperformer.dsp.istft_stream import StreamingISTFT
from rtperformer.dsp.synth import chords

CONFIGS = [AudioConfig(), AudioConfig(sample_rate=44100, n_fft=2048, hop=256), AudioConfig(n_fft=1000, hop=240)]


def _chunks(T, kind, rng):
    if kind == "random":
        sizes = []
        while sum(sizes) < T:
            sizes.append(int(rng.integers(0, 20)))  # includes empty pushes
        return sizes
    return [kind] * (T // kind + 1)


def _stream(spec, cfg, sizes, trim=0):
    ist = StreamingISTFT(cfg, trim_hops=trim)
    outs, t = [], 0
    for n in sizes:
        block = spec[:, t : t + n]
        y = ist.push(block)
        assert y.dtype == np.float32 and y.shape == (block.shape[1] * cfg.hop,)
        outs.append(y)
        t += block.shape[1]
    outs.append(ist.flush())
    return np.concatenate(outs), ist


@pytest.mark.parametrize("cfg", CONFIGS, ids=["48k-1024", "44k-2048", "odd-1000-240"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 64, "random"])
@pytest.mark.parametrize("trim", [0, 1, 2])
def test_streaming_istft_reproduces_signal(cfg, chunk, trim):
    """Also with low-delay synthesis (``trim_hops``): exact for a consistent STFT, trim*hop samples sooner."""
    rng = np.random.default_rng(3)
    n = int(0.4 * cfg.sample_rate) + 17
    x = chords(cfg.sample_rate, n / cfg.sample_rate) + 0.05 * rng.standard_normal(n).astype(np.float32)
    x[:5] = 0.3  # energy right at the start: frames before 0 do not exist
    spec = stft(x, cfg)
    y, ist = _stream(spec, cfg, _chunks(spec.shape[1], chunk, rng), trim)
    d = ist.delay_samples
    assert d == cfg.n_fft // 2 - trim * cfg.hop
    assert np.max(np.abs(y[d : d + n] - x)) <= 1e-5
    # after the signal: only the zero padding
    assert np.max(np.abs(y[d + n :])) <= 1e-5


def test_reset_and_flush_start_a_new_stream():
    cfg = AudioConfig()
    x = chords(cfg.sample_rate, 0.2)
    spec = stft(x, cfg)
    ist = StreamingISTFT(cfg)
    a = np.concatenate([ist.push(spec), ist.flush()])
    b = np.concatenate([ist.push(spec), ist.flush()])  # flush resets
    np.testing.assert_array_equal(a, b)
    ist.push(spec[:, :5])
    ist.reset()
    c = np.concatenate([ist.push(spec), ist.flush()])
    np.testing.assert_array_equal(a, c)


def test_warmup_is_bounded_for_arbitrary_spectra():
    """Model spectra at frame 0 need not vanish before the signal start; the warm-up must not blow up."""
    cfg = AudioConfig()
    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((cfg.n_bins, 4)) + 1j * rng.standard_normal((cfg.n_bins, 4))).astype(np.complex64)
    y = StreamingISTFT(cfg).push(spec)
    frame_peak = np.max(np.abs(np.fft.irfft(spec, n=cfg.n_fft, axis=0)))
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 4 * frame_peak


def test_trim_bounds():
    cfg = AudioConfig()
    with pytest.raises(ValueError, match="trim_hops"):
        StreamingISTFT(cfg, trim_hops=3)  # past the frame centre
    with pytest.raises(ValueError, match="trim_hops"):
        StreamingISTFT(cfg, trim_hops=-1)
