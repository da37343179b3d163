"""Image corruptions of the vision task at graded severities (level 1 = mildest). Not a plugin.

Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise, Gaussian blur, contrast,
brightness, pixelation and JPEG (needs Pillow; without it the JPEG rows are skipped with that
reason), after Hendrycks & Dietterich (ICLR 2019), with parameters for small digit images. Images
are ``(N, H, W, C)`` arrays with values in a clip range (``[0, 1]`` for the built-in task).
"""

from __future__ import annotations

import io

import numpy as np

from dlbench.api import Corruption, UnsupportedError, find_corruption

IMAGE_CORRUPTIONS = (
    Corruption("gaussian_noise", (0.04, 0.08, 0.12, 0.18, 0.26), "sigma"),
    Corruption("shot_noise", (60.0, 25.0, 12.0, 5.0, 3.0), "photons at full scale"),
    Corruption("impulse_noise", (0.01, 0.03, 0.06, 0.10, 0.17), "fraction of pixels"),
    Corruption("blur", (0.5, 0.75, 1.0, 1.5, 2.0), "sigma in 28-px pixels"),
    Corruption("contrast", (0.6, 0.45, 0.3, 0.2, 0.1), "contrast factor"),
    Corruption("brightness", (0.1, 0.2, 0.3, 0.4, 0.5), "added intensity"),
    Corruption("pixelate", (0.8, 0.65, 0.5, 0.4, 0.3), "resolution factor"),
    Corruption("jpeg", (30.0, 20.0, 15.0, 10.0, 7.0), "JPEG quality"),
)


def corrupt_images(
    x: np.ndarray,
    name: str,
    level: int,
    rng: np.random.Generator,
    clip: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Corrupt images ``(N, H, W, C)`` with values in ``clip``."""
    v = find_corruption(IMAGE_CORRUPTIONS, name, "vision").value(level)
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
    else:  # pragma: no cover - find_corruption() rejects unknown names
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

    out = np.empty_like(x)
    q = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    for i in range(len(x)):
        for ch in range(x.shape[-1]):
            buf = io.BytesIO()
            Image.fromarray(q[i, :, :, ch], mode="L").save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            out[i, :, :, ch] = np.asarray(Image.open(buf), np.float64) / 255.0
    return out
