"""Corruptions of all four domains at graded severities (level 1 = mildest).

:data:`CATALOGUE` lists, per task domain, each corruption's name, the parameter of every level,
its unit and the split it applies to. Tasks apply them through
:meth:`dlbench.task.Task.corrupt` (they know their input names, feature scale and vocabulary)
by calling the functions below; the robustness scenario reports the task metric per
corruption and level, and their mean.

* images (``[0, 1]`` arrays ``(N, H, W, C)``): Gaussian, shot (Poisson) and impulse
  (salt-and-pepper) noise, Gaussian blur, contrast, brightness, pixelation and JPEG (needs
  Pillow; without it the JPEG rows are skipped with that reason), after Hendrycks & Dietterich
  (ICLR 2019) with parameters for small digit images;
* audio: the speech task exposes log-mel features, not waveforms, so audio corruptions are
  applied *in the feature domain, consistently with the feature pipeline* (see
  :func:`corrupt_logmel`): white noise and background speech at SNR 30/20/10/0 dB, time shift,
  gain;
* text: character typos in 5/10/20% of the words, re-encoded through the task's vocabulary
  (a misspelt word usually becomes the unknown token, as it would for a deployed model);
* recommendation: dropped and random (spurious) training interactions; the scenario retrains
  on the corrupted interactions and scores the clean test split.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlbench.errors import UnsupportedError


@dataclass(frozen=True)
class Corruption:
    name: str
    values: tuple[float, ...]
    """The parameter of each severity level (level ``i`` is ``values[i - 1]``)."""
    unit: str
    split: str = "test"
    """``test``: corrupt the evaluation inputs; ``train``: corrupt the training data and retrain."""

    def value(self, level: int) -> float:
        if not 1 <= int(level) <= len(self.values):
            raise UnsupportedError(
                f"corruption {self.name!r} has levels 1-{len(self.values)}, not {level}"
            )
        return self.values[int(level) - 1]

    def seed(self, seed: int, level: int) -> list[int]:
        return [int(seed), zlib.crc32(self.name.encode()), int(level)]


IMAGE = (
    Corruption("gaussian_noise", (0.04, 0.08, 0.12, 0.18, 0.26), "sigma"),
    Corruption("shot_noise", (60.0, 25.0, 12.0, 5.0, 3.0), "photons at full scale"),
    Corruption("impulse_noise", (0.01, 0.03, 0.06, 0.10, 0.17), "fraction of pixels"),
    Corruption("blur", (0.5, 0.75, 1.0, 1.5, 2.0), "sigma in 28-px pixels"),
    Corruption("contrast", (0.6, 0.45, 0.3, 0.2, 0.1), "contrast factor"),
    Corruption("brightness", (0.1, 0.2, 0.3, 0.4, 0.5), "added intensity"),
    Corruption("pixelate", (0.8, 0.65, 0.5, 0.4, 0.3), "resolution factor"),
    Corruption("jpeg", (30.0, 20.0, 15.0, 10.0, 7.0), "JPEG quality"),
)
AUDIO = (
    Corruption("white_noise", (30.0, 20.0, 10.0, 0.0), "dB SNR"),
    Corruption("background_noise", (30.0, 20.0, 10.0, 0.0), "dB SNR"),
    Corruption("time_shift", (0.05, 0.1, 0.2, 0.3), "fraction of the clip"),
    Corruption("gain", (-20.0, -10.0, 10.0, 20.0), "dB"),
)
TEXT = (Corruption("typos", (0.05, 0.10, 0.20), "fraction of words"),)
RECOMMENDATION = (
    Corruption(
        "dropped_interactions", (0.1, 0.25, 0.5), "fraction of training interactions", "train"
    ),
    Corruption("random_interactions", (0.1, 0.25, 0.5), "fraction added at random", "train"),
)
CATALOGUE: dict[str, tuple[Corruption, ...]] = {
    "vision": IMAGE,
    "speech": AUDIO,
    "nlp": TEXT,
    "recommendation": RECOMMENDATION,
}


def find(domain: str, name: str) -> Corruption:
    for c in CATALOGUE.get(domain, ()):
        if c.name == name:
            return c
    names = ", ".join(c.name for c in CATALOGUE.get(domain, ())) or "(none)"
    raise UnsupportedError(f"unknown {domain} corruption {name!r}: choose one of {names}")


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def corrupt_images(
    x: np.ndarray,
    name: str,
    level: int,
    rng: np.random.Generator,
    clip: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Corrupt images ``(N, H, W, C)`` with values in ``clip``."""
    v = find("vision", name).value(level)
    lo, hi = clip
    x = (np.asarray(x, np.float64) - lo) / (hi - lo)
    if name == "gaussian_noise":
        out = x + rng.normal(0.0, v, x.shape)
    elif name == "shot_noise":
        out = rng.poisson(np.clip(x, 0, 1) * v) / v
    elif name == "impulse_noise":
        out = x.copy()
        hit = rng.random(x.shape) < v
        out[hit] = rng.integers(0, 2, size=int(hit.sum()))
    elif name == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = v * x.shape[1] / 28.0
        out = gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest")
    elif name == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        out = (x - mean) * v + mean
    elif name == "brightness":
        out = x + v
    elif name == "pixelate":
        out = _pixelate(x, v)
    elif name == "jpeg":
        out = _jpeg(x, int(v))
    else:  # pragma: no cover - find() rejects unknown names
        raise UnsupportedError(name)
    return (np.clip(out, 0.0, 1.0) * (hi - lo) + lo).astype(np.float32)


def _pixelate(x: np.ndarray, factor: float) -> np.ndarray:
    """Box-average to ``factor`` of the resolution, then nearest-neighbour back up."""
    n, h, w, c = x.shape
    sh, sw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    rows = np.minimum((np.arange(h) * sh) // h, sh - 1)
    cols = np.minimum((np.arange(w) * sw) // w, sw - 1)
    small = np.zeros((n, sh, sw, c))
    count = np.zeros((sh, sw))
    np.add.at(count, (rows[:, None], cols[None, :]), 1.0)
    for i in range(h):
        for j in range(w):
            small[:, rows[i], cols[j]] += x[:, i, j]
    small /= count[None, :, :, None]
    return small[:, rows][:, :, cols]


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise UnsupportedError("JPEG compression needs Pillow: pip install pillow") from None
    import io

    out = np.empty_like(x)
    q = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    for i in range(len(x)):
        for ch in range(x.shape[-1]):
            buf = io.BytesIO()
            Image.fromarray(q[i, :, :, ch], mode="L").save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            out[i, :, :, ch] = np.asarray(Image.open(buf), np.float64) / 255.0
    return out


# ---------------------------------------------------------------------------------------------
# Audio (log-mel features)
# ---------------------------------------------------------------------------------------------

GAMMA_SHAPE = 3.0
"""Noise power in one mel band of one frame is Gamma-distributed with this shape: a band of a
256-point STFT at 8 kHz pools about three FFT bins, each an exponential periodogram value."""
FLOOR_DB = -200.0


def corrupt_logmel(
    x: np.ndarray, name: str, level: int, rng: np.random.Generator, db_per_unit: float
) -> np.ndarray:
    """Corrupt log-mel features ``(N, T, M[, 1])`` that hold ``1 + dB / db_per_unit``, with dB
    relative to each utterance's loudest bin and floored at ``-db_per_unit`` (the built-in speech
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
    v = find("speech", name).value(level)
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


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(word: str, rng: np.random.Generator) -> str:
    """One character edit: swap two neighbours, delete, insert or substitute a letter."""
    if len(word) < 2:
        return word + LETTERS[int(rng.integers(26))]
    op = int(rng.integers(4))
    i = int(rng.integers(len(word) - 1 if op == 0 else len(word)))
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    letter = LETTERS[int(rng.integers(26))]
    if op == 2:
        return word[:i] + letter + word[i:]
    return word[:i] + letter + word[i + 1 :]


def typo_tokens(
    tokens: np.ndarray,
    mask: np.ndarray,
    vocab: Sequence[str],
    level: int,
    rng: np.random.Generator,
    unk: int = 1,
) -> np.ndarray:
    """Token ids ``(N, L)`` with a typo in each real word token with probability of the level's
    fraction, re-encoded through ``vocab`` (id -> token; unknown -> ``unk``). Punctuation and
    unknown-word tokens are left alone."""
    frac = find("nlp", "typos").value(level)
    index = {t: i for i, t in enumerate(vocab)}
    out = np.array(tokens, copy=True)
    hit = (rng.random(out.shape) < frac) & (np.asarray(mask) > 0.5)
    for i, j in zip(*np.nonzero(hit), strict=True):
        tid = int(out[i, j])
        word = vocab[tid] if 0 <= tid < len(vocab) else ""
        if tid == unk or not word.replace("'", "").isalpha():
            continue
        out[i, j] = index.get(typo(word, rng), unk)
    return out


# ---------------------------------------------------------------------------------------------
# Recommendation (training interactions)
# ---------------------------------------------------------------------------------------------


def corrupt_interactions(
    x: dict[str, np.ndarray],
    y: np.ndarray,
    name: str,
    level: int,
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
    random_targets: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Training interactions ``x = {"user", "item"}`` (``(N, 1)`` ids) with targets ``y``:

    * ``dropped_interactions``: remove a fraction of the observed interactions (ratings; for
      implicit feedback the positive rows, ``y > 0.5``), uniformly at random;
    * ``random_interactions``: add that fraction of spurious interactions between random users
      and items, with targets drawn from ``random_targets`` (random ratings; ``[1.0]`` for
      implicit feedback: accidental clicks).
    """
    frac = find("recommendation", name).value(level)
    users, items = np.asarray(x["user"]), np.asarray(x["item"])
    y = np.asarray(y)
    implicit = bool(np.all((y == 0) | (y == 1)))
    observed = np.flatnonzero(y > 0.5) if implicit else np.arange(len(y))
    n = int(round(frac * len(observed)))
    if name == "dropped_interactions":
        keep = np.setdiff1d(np.arange(len(y)), rng.choice(observed, size=n, replace=False))
        return {"user": users[keep], "item": items[keep]}, y[keep]
    new_u = rng.integers(0, n_users, size=(n, 1)).astype(users.dtype)
    new_i = rng.integers(0, n_items, size=(n, 1)).astype(items.dtype)
    new_y = rng.choice(np.asarray(random_targets, y.dtype), size=n)
    return (
        {"user": np.concatenate([users, new_u]), "item": np.concatenate([items, new_i])},
        np.concatenate([y, new_y]),
    )
