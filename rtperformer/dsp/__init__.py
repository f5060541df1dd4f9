"""Signal processing: STFT features and their inverse, phase reconstruction, streaming iSTFT, crossfades
(the voice chain's audio stage, rtperformer/voice/audio_stage.py, chains them).

Conventions shared by every module here (see features.py):
- frames are centred: frame t is centred on sample t*hop (the signal is zero-padded by n_fft//2 at both
  ends), windowed by a periodic Hann window of length n_fft; T = N//hop + 1 frames for N samples;
- spectra are numpy complex64 arrays (n_bins, T), n_bins = n_fft//2 + 1, with numpy's rfft phase
  convention for a frame buffer starting at sample t*hop - n_fft//2;
- features are log1p(power_scale * |S|^2), float32 (n_bins, T).
"""

from rtperformer.dsp.features import istft, log_power, spectral_convergence_db, stft, to_magnitude, to_power
from rtperformer.dsp.istft_stream import StreamingISTFT
from rtperformer.dsp.griffin_lim import griffin_lim
from rtperformer.dsp.phase import make_phase, warmup
from rtperformer.dsp.rtpghi import RTPGHI
from rtperformer.dsp.rtisila import RTISILA
from rtperformer.dsp.crossfade import crossfade, equal_power_fade

__all__ = [
    "stft",
    "istft",
    "log_power",
    "to_magnitude",
    "to_power",
    "spectral_convergence_db",
    "StreamingISTFT",
    "griffin_lim",
    "make_phase",
    "warmup",
    "RTPGHI",
    "RTISILA",
    "crossfade",
    "equal_power_fade",
]
