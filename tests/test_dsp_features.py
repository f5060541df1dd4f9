"""STFT features, their inverse, spectral convergence and crossfades (rtperformer.dsp)."""

import numpy as np
import pytest
import torch

from rtperformer.config import AudioConfig
from rtperformer.dsp.crossfade import crossfade, equal_power_fade
from rtperformer.dsp.features import hann, istft, log_power, spectral_convergence_db, stft, to_magnitude
from rtperformer.dsp.synth import melody

CONFIGS = [AudioConfig(), AudioConfig(sample_rate=44100, n_fft=2048, hop=256)]


def _noise(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1


@pytest.mark.parametrize("cfg", CONFIGS, ids=["48k-1024", "44k-2048"])
@pytest.mark.parametrize("n", [5000, 5120, 1, 300])
def test_stft_matches_torch_centred_zero_padded(cfg, n):
    x = _noise(n)
    s = stft(x, cfg)
    assert s.dtype == np.complex64 and s.shape == (cfg.n_bins, n // cfg.hop + 1)
    ref = torch.stft(torch.from_numpy(x), cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft),
                     center=True, pad_mode="constant", return_complex=True).numpy()
    assert ref.shape == s.shape
    np.testing.assert_allclose(s, ref, atol=2e-5 * cfg.n_fft ** 0.5)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["48k-1024", "44k-2048"])
@pytest.mark.parametrize("n", [12345, 7680])
def test_istft_inverts_stft(cfg, n):
    x = _noise(n) + melody(cfg.sample_rate, n / cfg.sample_rate)
    y = istft(stft(x, cfg), cfg, length=n)
    assert y.dtype == np.float32 and y.shape == (n,)
    assert np.max(np.abs(y - x)) <= 1e-5


def test_hann_is_periodic():
    np.testing.assert_allclose(hann(16), torch.hann_window(16).numpy(), atol=1e-6)


def test_log_power_and_inverse():
    cfg = AudioConfig(power_scale=100.0)
    x = melody(cfg.sample_rate, 0.5)
    f = log_power(x, cfg)
    assert f.dtype == np.float32 and f.shape == (cfg.n_bins, len(x) // cfg.hop + 1)
    mag = np.abs(stft(x, cfg))
    np.testing.assert_allclose(f, np.log1p(100.0 * mag.astype(np.float64) ** 2), rtol=1e-4, atol=1e-5)
    m = to_magnitude(f, cfg)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, mag, rtol=1e-3, atol=1e-4)
    # negative predictions (a model can output them) clamp to zero magnitude
    assert np.all(to_magnitude(np.full((3, 2), -0.5, np.float32), cfg) == 0.0)
    # written into a given array, the same numbers
    out = np.empty_like(f)
    assert to_magnitude(f, cfg, out=out) is out
    np.testing.assert_array_equal(out, m)
    # the torch inversion (training losses) gives the same numbers
    from rtperformer.learn.losses import features_to_magnitude

    mt = features_to_magnitude(torch.from_numpy(f), cfg.power_scale, eps=0.0)
    np.testing.assert_allclose(mt.numpy(), m, rtol=1e-5, atol=1e-6)


def test_spectral_convergence_of_exact_audio_is_tiny():
    cfg = AudioConfig()
    x = melody(cfg.sample_rate, 0.5)
    mag = np.abs(stft(x, cfg))
    assert spectral_convergence_db(x, mag, cfg) < -80.0
    assert spectral_convergence_db(-x, mag, cfg) < -80.0  # magnitude only
    assert spectral_convergence_db(0.5 * x, mag, cfg) == pytest.approx(20 * np.log10(0.5), abs=0.01)


def test_equal_power_fade_and_crossfade():
    out, inn = equal_power_fade(64)
    assert out.dtype == np.float32 and out.shape == (64,)
    np.testing.assert_allclose(out**2 + inn**2, 1.0, atol=1e-6)
    assert np.all(np.diff(inn) > 0) and np.all(np.diff(out) < 0)
    mixed = crossfade(np.ones(64), np.ones(64))
    np.testing.assert_allclose(mixed, out + inn, atol=1e-6)
    two = crossfade(np.ones((2, 8)), np.zeros((2, 8)))
    assert two.shape == (2, 8)
    with pytest.raises(ValueError):
        crossfade(np.ones(4), np.ones(5))
