"""Audio features in NumPy/SciPy: log-mel spectrograms, MFCC statistics, and the speech task's
corruptions of the log-mel features. Not a plugin.

A log-mel feature is the mel-band power in dB *relative to the utterance's loudest bin*, floored
at ``-DB_RANGE`` dB and mapped linearly onto [0, 1]: ``x = 1 + dB / DB_RANGE``. One dB is
therefore ``1 / DB_RANGE`` feature units, and silence or padding is exactly 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dlbench.api import Corruption, UnsupportedError, find_corruption

DB_RANGE = 80.0
"""Dynamic range kept (dB); features are ``1 + dB / DB_RANGE`` in [0, 1]."""


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 8000
    n_fft: int = 256  # 32 ms Hann window
    hop: int = 128  # 16 ms
    n_mels: int = 40
    frames: int = 64  # fixed length: 1.04 s (longer recordings are cropped at the end)
    fmin: float = 0.0
    fmax: float | None = None  # None: Nyquist

    @property
    def samples(self) -> int:
        """Waveform length that yields exactly ``frames`` frames."""
        return self.n_fft + (self.frames - 1) * self.hop

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters ``(n_fft // 2 + 1, n_mels)``, each of unit area (Slaney norm)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (center - lower)
    down = (upper - freqs[None, :]) / (upper - center)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= (2.0 / (upper - lower))  # equal area per band
    return fb.T.astype(np.float64)


def fix_length(waves: list[np.ndarray], samples: int) -> np.ndarray:
    """Stack waveforms into ``(N, samples)`` float32: zero-padded or cropped at the end."""
    out = np.zeros((len(waves), samples), dtype=np.float32)
    for i, w in enumerate(waves):
        n = min(len(w), samples)
        out[i, :n] = w[:n]
    return out


def log_mel(waves: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """``(N, samples)`` waveforms -> ``(N, frames, n_mels)`` float32 features in [0, 1]."""
    from scipy.signal import stft

    _, _, z = stft(waves, fs=cfg.sample_rate, window="hann", nperseg=cfg.n_fft,
                   noverlap=cfg.n_fft - cfg.hop, boundary=None, padded=False, axis=-1)
    power = np.abs(z[..., : cfg.frames]).astype(np.float32) ** 2  # (N, bins, frames)
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    mel = np.matmul(power.transpose(0, 2, 1), fb.astype(np.float32))  # (N, frames, n_mels)
    db = 10.0 * np.log10(np.maximum(mel.astype(np.float64), 1e-20))
    db -= db.max(axis=(1, 2), keepdims=True)
    return (1.0 + np.maximum(db, -DB_RANGE) / DB_RANGE).astype(np.float32)


def mfcc_stats(features: np.ndarray, n_mfcc: int = 13) -> np.ndarray:
    """Per-utterance MFCC statistics from log-mel features ``(N, frames, n_mels[, 1])``.

    MFCCs are the orthonormal DCT-II of the dB log-mel frames; frames that are pure padding
    (all bands at the floor) are left out. Returns ``(N, 4 * n_mfcc + 1)``: mean and std of
    the MFCCs and of their first differences over time, and the number of frames (length).
    """
    from scipy.fft import dct

    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 4:
        x = x[..., 0]
    valid = x.max(axis=2) > 0.0  # (N, T)
    valid[:, 0] |= ~valid.any(axis=1)  # an all-silent utterance keeps one frame
    c = dct((x - 1.0) * DB_RANGE, type=2, norm="ortho", axis=2)[:, :, :n_mfcc]
    d = np.diff(c, axis=1)
    dvalid = valid[:, 1:] & valid[:, :-1]
    cols = [*_masked_mean_std(c, valid), *_masked_mean_std(d, dvalid), valid.sum(axis=1, keepdims=True)]
    return np.concatenate(cols, axis=1).astype(np.float32)


def _masked_mean_std(v: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = mask[:, :, None].astype(np.float64)
    n = np.maximum(m.sum(axis=1), 1.0)
    mean = (v * m).sum(axis=1) / n
    var = (((v - mean[:, None, :]) ** 2) * m).sum(axis=1) / n
    return mean, np.sqrt(var)


# ---------------------------------------------------------------------------------------------
# Corruptions, in the feature domain (the task exposes log-mel features, not waveforms)
# ---------------------------------------------------------------------------------------------

AUDIO_CORRUPTIONS = (
    Corruption("white_noise", (30.0, 20.0, 10.0, 0.0), "dB SNR"),
    Corruption("background_noise", (30.0, 20.0, 10.0, 0.0), "dB SNR"),
    Corruption("time_shift", (0.05, 0.1, 0.2, 0.3), "fraction of the clip"),
    Corruption("gain", (-20.0, -10.0, 10.0, 20.0), "dB"),
)
"""White noise and background speech at SNR 30/20/10/0 dB, time shift, gain: applied to the
log-mel features *consistently with the feature pipeline* (see :func:`corrupt_logmel`)."""

GAMMA_SHAPE = 3.0
"""Noise power in one mel band of one frame is Gamma-distributed with this shape: a band of a
256-point STFT at 8 kHz pools about three FFT bins, each an exponential periodogram value."""
FLOOR_DB = -200.0


def corrupt_logmel(
    x: np.ndarray, name: str, level: int, rng: np.random.Generator, db_per_unit: float
) -> np.ndarray:
    """Corrupt log-mel features ``(N, T, M[, 1])`` that hold ``1 + dB / db_per_unit``, with dB
    relative to each utterance's loudest bin and floored at ``-db_per_unit`` (the speech
    task), *as if the waveform had been corrupted before feature extraction*:

    * power ``P = 10 ** ((x - 1) * db_per_unit / 10)`` is recovered (floored bins stay at the
      floor); additive noise adds power, since noise and speech are uncorrelated;
    * ``white_noise``: the mel filters have equal area, so white noise puts the same expected
      power ``N`` in every band; ``N`` is set by the SNR over the whole clip
      (``mean(P) / 10 ** (snr / 10)``) and fluctuates per band and frame (Gamma, shape
      :data:`GAMMA_SHAPE`);
    * ``background_noise``: another utterance of the batch (a background talker), circularly
      shifted by a random number of frames, scaled to the SNR;
    * ``time_shift``: the clip is delayed by a fraction of its length (silence before, the end
      cropped), as a delayed recording;
    * ``gain``: the waveform scaled by ``gain`` dB. The features are normalised to each
      utterance's peak, so gain leaves them unchanged: the row shows this invariance.

    The features are then recomputed as the pipeline does: dB relative to the new peak, floored.
    """
    v = find_corruption(AUDIO_CORRUPTIONS, name, "speech").value(level)
    x = np.asarray(x, np.float64)
    shape = x.shape
    if x.ndim == 4:
        x = x[..., 0]
    if name == "time_shift":
        shift = int(round(v * x.shape[1]))
        out = np.zeros_like(x)
        out[:, shift:] = x[:, : x.shape[1] - shift]
        return out.reshape(shape).astype(np.float32)
    power = 10.0 ** ((x - 1.0) * db_per_unit / 10.0)
    axes = (1, 2)
    if name == "white_noise":
        level_n = power.mean(axis=axes, keepdims=True) / 10.0 ** (v / 10.0)
        noisy = power + level_n * rng.gamma(GAMMA_SHAPE, 1.0 / GAMMA_SHAPE, size=power.shape)
    elif name == "background_noise":
        n = len(power)
        other = (np.arange(n) + rng.integers(1, n, size=n)) % n if n > 1 else np.zeros(n, int)
        bg = np.stack(
            [np.roll(power[j], int(rng.integers(0, power.shape[1])), axis=0) for j in other]
        )
        ratio = power.mean(axis=axes, keepdims=True) / np.maximum(
            bg.mean(axis=axes, keepdims=True), 1e-30
        )
        noisy = power + bg * ratio / 10.0 ** (v / 10.0)
    elif name == "gain":
        noisy = power * 10.0 ** (v / 10.0)
    else:  # pragma: no cover
        raise UnsupportedError(name)
    db = 10.0 * np.log10(np.maximum(noisy, 10.0 ** (FLOOR_DB / 10.0)))
    db -= db.max(axis=axes, keepdims=True)
    out = 1.0 + np.maximum(db, -db_per_unit) / db_per_unit
    return out.reshape(shape).astype(np.float32)
