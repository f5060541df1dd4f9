"""Streaming phase reconstruction by Real-Time Phase Gradient Heap Integration (RTPGHI).

Prusa & Holighaus, "Phase vocoder done right" (2017), and Prusa & Soendergaard, "Real-time spectrogram
inversion using phase gradient heap integration" (DAFx 2016). For a Gaussian window exp(-pi t^2/gamma)
the STFT phase gradient follows from the log-magnitude s = log|S|. With the phase referred to each frame's
centre (t in frames, k in bins, a = hop, N = n_fft):

    dphi/dt [rad/frame] = a*N/gamma * ds/dk + 2*pi*a*k/N        (instantaneous frequency)
    dphi/dk [rad/bin]   = -gamma/(a*N) * ds/dt                  (local group delay)

and the Hann window is treated as the Gaussian with gamma = 0.25645 * N^2. Each new frame is integrated
from the previous one with a max-heap: the largest coefficient not yet done takes its phase from its
time neighbour (trapezoid of dphi/dt) or spreads it along frequency (trapezoid of dphi/dk). Coefficients
below tol * (largest magnitude of the frames involved) get a pseudo-random phase and are not integrated.
The previous frame's coefficients enter as one list sorted in place (largest first) merged with a
max-heap of the current frame's: the same pop order as one heap holding both (on a tie the previous
frame's goes first), ~10 % less CPU per frame, and nothing allocated per call.

Score-informed phase (``score_below_bins``, render.score_phase_below_bins): while a held note's f0 is
below that many bins, the frame's phase comes from the score instead of the heap: bin k advances by
2*pi*a*f/N per frame, f the harmonic h*f0 (in bins, any held note) nearest to k, and takes the phase of
the bin nearest f -- every bin of one harmonic shares one phase, as the lobe of a stationary sinusoid
does. Below ~2-3 bins a note's partials lie within each other's Hann main lobe, the magnitude's slope no
longer says where they are, and the heap plays them an octave or a fifth off, above all for a stationary
(model) magnitude; up to ~4 bins it still mistunes some frames (models/README.md, "Cello pitch": the
default 4 bins, 188 Hz at 48 kHz / 1024, is cello C2..F#3).

lookahead=0: ds/dt by the backward difference s[n] - s[n-1]; no delay.
lookahead=1: ds/dt by the centred difference (s[n+1] - s[n-1]) / 2; output is one frame late.

The per-frame work is one numba function (cache=True; nogil=True, so other threads run meanwhile):
about 0.03-0.06 ms per frame at n_fft 1024.
Its first call in a fresh environment compiles (a few seconds); later processes load the cache.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rtperformer.config import AudioConfig
from rtperformer.dsp.features import gaussian_lambda

TWO_PI = 2.0 * math.pi
MAX_PITCHES = 128  # rows of a notes roll: MIDI pitches 0..127


@njit(cache=True, inline="always")
def _heap_push(keys, idx, size, key, item):
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] >= key:
            break
        keys[i] = keys[parent]
        idx[i] = idx[parent]
        i = parent
    keys[i] = key
    idx[i] = item
    return size + 1


@njit(cache=True, inline="always")
def _heap_pop(keys, idx, size):
    """Remove the top; returns (item, new_size)."""
    item = idx[0]
    size -= 1
    if size > 0:
        key = keys[size]
        last = idx[size]
        i = 0
        while True:
            c = 2 * i + 1
            if c >= size:
                break
            if c + 1 < size and keys[c + 1] > keys[c]:
                c += 1
            if keys[c] <= key:
                break
            keys[i] = keys[c]
            idx[i] = idx[c]
            i = c
        keys[i] = key
        idx[i] = last
    return item, size


@njit(cache=True)
def _sort_ascending(keys, idx, n):
    """Heapsort keys[:n] in place, smallest first, idx along (the max-heap above; no allocation)."""
    size = 0
    for i in range(n):
        size = _heap_push(keys, idx, size, keys[i], idx[i])
    for end in range(n - 1, 0, -1):
        key = keys[0]
        item, size = _heap_pop(keys, idx, size)
        keys[end] = key
        idx[end] = item


@njit(cache=True, nogil=True)
def _xorshift_phase(rng):
    x = rng[0]
    x ^= (x << np.uint64(13)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(7)
    x ^= (x << np.uint64(17)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    rng[0] = x
    return (x >> np.uint64(11)) * (1.0 / 9007199254740992.0) * TWO_PI


@njit(cache=True, nogil=True)
def _score_partials(notes, j, lookahead, f0_bins, bend_ratios, below_bins, state_notes, partials):
    """The f0s (bins, bend applied) of the notes of the frame computed now into partials[:nf]; nf = 0
    unless the lowest is below ``below_bins``; ``bend_ratios`` (n,) per input frame, or (1,) for all. With no note held the last held set stays (its release
    rings on). With lookahead 1 the frame computed now is the pending one (state_notes row 0), and
    column j becomes the pending one."""
    P = notes.shape[0]
    if P == 0:
        return 0
    held = 0
    for p in range(P):
        v = state_notes[0, p] if lookahead == 1 else notes[p, j]
        if v > 0.0:
            held += 1
    if held > 0:
        for p in range(P):
            v = state_notes[0, p] if lookahead == 1 else notes[p, j]
            state_notes[1, p] = 1.0 if v > 0.0 else 0.0
    if lookahead == 1:
        for p in range(P):
            state_notes[0, p] = notes[p, j]
    nf = 0
    lowest = 1e300
    bend_ratio = bend_ratios[min(j, bend_ratios.shape[0] - 1)]
    for p in range(P):
        if state_notes[1, p] > 0.0:
            partials[nf] = f0_bins[p] * bend_ratio
            lowest = min(lowest, partials[nf])
            nf += 1
    return nf if lowest < below_bins else 0


@njit(cache=True, nogil=True)
def _score_phase(M, nf, f0s, omega, state_phase, phase, tgrad):
    """Score-informed phase of one frame: bin k belongs to the harmonic h*f0 (of the f0s[:nf], in bins)
    nearest to it, advances by that harmonic's frequency (omega * h*f0 rad per frame) and takes the phase
    of the bin nearest the harmonic, advanced from the previous frame: all bins of one harmonic share one
    centre-referenced phase, as a stationary sinusoid's lobe does."""
    for k in range(M):
        best = 1e300
        f = f0s[0]
        for i in range(nf):
            h = max(1.0, math.floor(k / f0s[i] + 0.5))
            d = abs(k - h * f0s[i])
            if d < best:
                best = d
                f = h * f0s[i]
        a = min(max(int(math.floor(f + 0.5)), 0), M - 1)
        w = omega * f
        phase[k] = state_phase[a] + w
        tgrad[k] = w


@njit(cache=True, nogil=True)
def _rtpghi_block(mags, out, lookahead, tol, tgrad_coef, fgrad_coef, omega,
                  state_mag, state_phase, state_tgrad, have_pending, rng,
                  keys, idx, done, logs_prev, logs_cur, logs_next, tgrad, fgrad, phase, pkeys, porder,
                  notes, f0_bins, bend_ratios, below_bins, state_notes, partials):
    """Process frames mags (M, n) float32 into out (M, n) complex64.

    state_mag (3, M) float64: rows 0 = previous done frame, 1 = pending frame (lookahead 1).
    state_phase, state_tgrad (M,) float64: phase and dphi/dt of the previous done frame.
    have_pending (1,) int64: 1 when row 1 holds a frame waiting for its successor.
    notes (P, n) float32: the held-note roll aligned with mags (P = 0: no score, plain RTPGHI);
    f0_bins (P,) float64: each pitch's f0 in bins; bend_ratios (n,) or (1,) float64: the f0s' bend ratio per
    input frame (or one for all); state_notes (2, P) float32: row 0 = the pending frame's
    notes (lookahead 1), row 1 = the last held set (kept through the release); partials (P,) scratch.
    """
    M = mags.shape[0]
    n = mags.shape[1]
    P = notes.shape[0]
    for j in range(n):
        # choose the frame to compute now (cur) and its successor (nxt) for the centred difference
        if lookahead == 1:
            if have_pending[0] == 0:
                for k in range(M):
                    state_mag[1, k] = mags[k, j]
                    out[k, j] = 0.0
                for p in range(P):
                    state_notes[0, p] = notes[p, j]
                have_pending[0] = 1
                continue
            for k in range(M):
                state_mag[2, k] = mags[k, j]
            cur_row = 1
        else:
            for k in range(M):
                state_mag[1, k] = mags[k, j]
            cur_row = 1
        nf = _score_partials(notes, j, lookahead, f0_bins, bend_ratios, below_bins, state_notes, partials)
        # tolerance relative to the largest coefficient of the frames involved
        mx = 0.0
        for k in range(M):
            mx = max(mx, state_mag[0, k], state_mag[cur_row, k])
            if lookahead == 1:
                mx = max(mx, state_mag[2, k])
        abstol = tol * mx
        floor = max(abstol, 1e-30)
        for k in range(M):
            logs_prev[k] = math.log(max(state_mag[0, k], floor))
            logs_cur[k] = math.log(max(state_mag[cur_row, k], floor))
            if lookahead == 1:
                logs_next[k] = math.log(max(state_mag[2, k], floor))
        # phase gradients of the current frame
        for k in range(M):
            if k == 0 or k == M - 1:
                dsdk = 0.0  # |S| is even about DC and Nyquist
            else:
                dsdk = 0.5 * (logs_cur[k + 1] - logs_cur[k - 1])
            tgrad[k] = tgrad_coef * dsdk + omega * k
            if lookahead == 1:
                dsdt = 0.5 * (logs_next[k] - logs_prev[k])
            else:
                dsdt = logs_cur[k] - logs_prev[k]
            fgrad[k] = fgrad_coef * dsdt
        todo = 0
        if nf > 0:
            # score-informed (a low note is held): every bin from the nearest harmonic, no heap
            _score_phase(M, nf, partials, omega, state_phase, phase, tgrad)
        else:
            # heap integration
            for k in range(M):
                if state_mag[cur_row, k] > abstol:
                    done[k] = False
                    todo += 1
                else:
                    done[k] = True
                    phase[k] = _xorshift_phase(rng)
        # prev-frame entries in descending key order (a sorted list instead of heap pushes), merged with
        # a heap of current-frame entries
        np_prev = 0
        if todo > 0:
            for k in range(M):
                if state_mag[0, k] > abstol and not done[k]:
                    pkeys[np_prev] = logs_prev[k]
                    porder[np_prev] = k
                    np_prev += 1
            _sort_ascending(pkeys, porder, np_prev)
        ip = np_prev - 1  # the list is consumed from its end, largest first
        size = 0
        while todo > 0:
            if size == 0 and ip < 0:
                best = -1
                bk = -1e300
                for k in range(M):
                    if not done[k] and logs_cur[k] > bk:
                        bk = logs_cur[k]
                        best = k
                phase[best] = state_phase[best] + 0.5 * (state_tgrad[best] + tgrad[best])
                done[best] = True
                todo -= 1
                size = _heap_push(keys, idx, size, logs_cur[best], best)
                continue
            if ip >= 0 and (size == 0 or pkeys[ip] >= keys[0]):
                k = porder[ip]
                ip -= 1
                if not done[k]:
                    phase[k] = state_phase[k] + 0.5 * (state_tgrad[k] + tgrad[k])
                    done[k] = True
                    todo -= 1
                    size = _heap_push(keys, idx, size, logs_cur[k], k)
                continue
            k, size = _heap_pop(keys, idx, size)
            if k + 1 < M and not done[k + 1]:
                phase[k + 1] = phase[k] + 0.5 * (fgrad[k] + fgrad[k + 1])
                done[k + 1] = True
                todo -= 1
                size = _heap_push(keys, idx, size, logs_cur[k + 1], k + 1)
            if k - 1 >= 0 and not done[k - 1]:
                phase[k - 1] = phase[k] - 0.5 * (fgrad[k] + fgrad[k - 1])
                done[k - 1] = True
                todo -= 1
                size = _heap_push(keys, idx, size, logs_cur[k - 1], k - 1)
        # emit (numpy rfft convention: the frame buffer starts n_fft/2 before the centre -> (-1)^k)
        for k in range(M):
            p = phase[k] % TWO_PI
            m = state_mag[cur_row, k]
            ph = p + math.pi * (k & 1)
            out[k, j] = complex(m * math.cos(ph), m * math.sin(ph))
            state_phase[k] = p
            state_tgrad[k] = tgrad[k]
            state_mag[0, k] = m
            if lookahead == 1:
                state_mag[1, k] = state_mag[2, k]


class RTPGHI:
    """Streaming RTPGHI. process(mag (n_bins, n) float, notes (P, n) | None) -> complex64 (n_bins, n).

    Frame j of the output is input frame j - delay_frames (delay_frames = lookahead); warm-up frames
    are zero. Chunking does not change the result. ``tol``: relative magnitude below which coefficients
    get a random phase (default 1e-5, -100 dB). ``seed`` fixes that random phase.

    Score-informed phase (``score_below_bins`` > 0): with ``notes``, the held-note roll aligned with
    ``mag`` (P <= 128 rows, row = MIDI pitch, > 0 = held), every frame in which a held note's f0 (times
    that frame's ``bend_ratios``) lies below ``score_below_bins`` bins (sample_rate / n_fft each) takes its phase
    from the score instead of the heap: each bin advances with the nearest harmonic of the held notes
    and all bins of one harmonic share one phase. Below ~2 bins a note's partials are closer than the
    Hann main lobe's half width, the magnitude's slope no longer says where they are, and RTPGHI puts the
    sound an octave or a fifth off (models/README.md, "Cello pitch"). With no note held the last held
    set stays (the release rings at its pitch). No added delay; per frame O(n_bins * notes held).
    """

    score_informed = True

    def __init__(self, audio_cfg: AudioConfig, lookahead: int = 0, tol: float = 1e-5, seed: int = 1,
                 score_below_bins: float = 0.0):
        if lookahead not in (0, 1):
            raise ValueError(f"RTPGHI lookahead must be 0 or 1, got {lookahead}")
        self.cfg = audio_cfg
        self.lookahead = int(lookahead)
        self.delay_frames = int(lookahead)
        self.tol = float(tol)
        self.seed = int(seed)
        N, a, M = audio_cfg.n_fft, audio_cfg.hop, audio_cfg.n_bins
        self.n_bins = M
        gamma = gaussian_lambda(N)
        self._tgrad_coef = a * N / gamma
        self._fgrad_coef = -gamma / (a * N)
        self._omega = TWO_PI * a / N
        self.score_below_bins = float(score_below_bins)
        self._unbent = np.ones(1, np.float64)
        bin_hz = audio_cfg.sample_rate / N
        self._f0_bins = 440.0 * 2.0 ** ((np.arange(MAX_PITCHES) - 69) / 12.0) / bin_hz
        self._no_notes = np.zeros((0, 1), np.float32)
        self._state_notes = np.zeros((2, MAX_PITCHES), np.float32)
        self._partials = np.empty(MAX_PITCHES, np.float64)
        self._state_mag = np.zeros((3, M), dtype=np.float64)
        self._state_phase = np.zeros(M, dtype=np.float64)
        self._state_tgrad = np.zeros(M, dtype=np.float64)
        self._pending = np.zeros(1, dtype=np.int64)
        self._rng = np.zeros(1, dtype=np.uint64)
        self._keys = np.empty(2 * M, dtype=np.float64)
        self._idx = np.empty(2 * M, dtype=np.int64)
        self._done = np.empty(M, dtype=np.bool_)
        self._pkeys = np.empty(M, dtype=np.float64)
        self._porder = np.empty(M, dtype=np.int64)
        self._scratch = np.empty((6, M), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (silence before the next frame; no notes remembered)."""
        self._state_mag[:] = 0.0
        self._state_phase[:] = 0.0
        self._state_tgrad[:] = 0.0
        self._state_notes[:] = 0.0
        self._pending[0] = 0
        self._rng[0] = np.uint64(0x9E3779B97F4A7C15 ^ (self.seed * 0x2545F4914F6CDD1D & 0xFFFFFFFFFFFFFFFF)) or np.uint64(1)

    def process(self, mag: np.ndarray, out: np.ndarray | None = None, notes: np.ndarray | None = None,
                bend_ratios: np.ndarray | None = None) -> np.ndarray:
        """mag (n_bins, n) non-negative float -> complex64 (n_bins, n); see the class docstring for delay.

        ``out``: a C-contiguous complex64 (n_bins, n) array to write into (no allocation).
        ``notes``: (P, n) held-note roll aligned with ``mag`` for the score-informed phase (None: none).
        ``bend_ratios``: (n,) float64, each frame's pitch-bend ratio for the score-informed f0s (None: 1)."""
        if mag.ndim != 2 or mag.shape[0] != self.n_bins:
            raise ValueError(f"RTPGHI.process expects ({self.n_bins}, n) magnitudes, got {mag.shape}")
        mag = np.ascontiguousarray(mag, dtype=np.float32)  # one compiled signature
        if out is None:
            out = np.empty(mag.shape, dtype=np.complex64)
        if notes is None or self.score_below_bins <= 0.0:
            notes = self._no_notes
        else:
            if notes.ndim != 2 or notes.shape[1] != mag.shape[1] or notes.shape[0] > MAX_PITCHES:
                raise ValueError(f"RTPGHI.process expects notes (<= {MAX_PITCHES}, {mag.shape[1]}), got {notes.shape}")
            notes = np.ascontiguousarray(notes, dtype=np.float32)
        s = self._scratch
        _rtpghi_block(mag, out, self.lookahead, self.tol, self._tgrad_coef, self._fgrad_coef, self._omega,
                      self._state_mag, self._state_phase, self._state_tgrad, self._pending, self._rng,
                      self._keys, self._idx, self._done, s[0], s[1], s[2], s[3], s[4], s[5], self._pkeys, self._porder,
                      notes, self._f0_bins, self._unbent if bend_ratios is None else bend_ratios,
                      self.score_below_bins, self._state_notes,
                      self._partials)
        return out
