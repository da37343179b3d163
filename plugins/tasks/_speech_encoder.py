"""Transformer speech encoder specs for the speech task. Not a plugin.

Over log-mel frames ``spectrogram`` (float32 ``(frames, mels)``) and a padding mask ``mask``
(float32 ``(frames / 4,)``, 1 for a real subsampled frame):

* conv subsampling: two Conv1D (kernel 3, stride 2, one zero on each side, GELU), the first from
  the mels to ``d`` channels, so the sequence is a quarter of the frames (64 -> 16), as the conv
  front ends of Conformer/ESPnet encoders (theirs are Conv2D over time x mel; these convolve over
  time with the mels as channels);
* a learned position table added to the subsampled frames;
* ``layers`` pre-LN Transformer blocks: ``x + Dropout(MHSA(LN(x), mask))`` then
  ``x + Dropout(Dense(d)(Dense(4d, GELU)(LN(x))))`` (epsilon 1e-5, dropout 0.1);
* a final LayerNorm, the mean over the real (unmasked) frames, Dense to the classes.

Sizes: ``tiny`` (2 layers, d=64, 2 heads), ``small`` (4, 144, 4: Conformer-S's width),
``base`` (12, 256, 4: Conformer-M-like width, a Transformer where Conformer has conv modules).
"""

from __future__ import annotations

import numpy as np

from dlbench.api import ModelSpec, SpecBuilder

from ._transformer import TransformerSize

SIZES = {
    "tiny": TransformerSize(2, 64, 2),
    "small": TransformerSize(4, 144, 4),
    "base": TransformerSize(12, 256, 4),
}
SUBSAMPLING = 4
"""Frames per position of the encoder (two stride-2 convolutions)."""
EPSILON = 1e-5
DROPOUT = 0.1


def subsampled_length(frames: int) -> int:
    """Positions after the two stride-2 convolutions (kernel 3, padding 1): ``ceil(frames / 4)``."""
    for _ in range(2):
        frames = (frames + 2 - 3) // 2 + 1
    return frames


def encoder_spec(name: str, size: TransformerSize, frames: int, mels: int, classes: int) -> ModelSpec:
    """The encoder classifier over ``spectrogram`` ``(frames, mels)`` and ``mask``."""
    length = subsampled_length(frames)
    b = SpecBuilder(name)
    x = b.input("spectrogram", (frames, mels))
    mask = b.input("mask", (length,))
    x = b.conv1d(x, size.d, 3, 2, 1, "gelu", name="subsample1")
    x = b.conv1d(x, size.d, 3, 2, 1, "gelu", name="subsample2")
    x = b.position_embedding(x, length, name="positions")
    for i in range(size.layers):
        a = b.self_attention(b.layer_norm(x, EPSILON, name=f"layer{i}_norm1"), size.heads, mask,
                             name=f"layer{i}_attention")
        x = b.add(x, b.dropout(a, DROPOUT, name=f"layer{i}_attention_dropout"),
                  name=f"layer{i}_residual1")
        f = b.dense(b.layer_norm(x, EPSILON, name=f"layer{i}_norm2"), size.ffn, "gelu",
                    name=f"layer{i}_ffn1")
        f = b.dropout(b.dense(f, size.d, name=f"layer{i}_ffn2"), DROPOUT, name=f"layer{i}_ffn_dropout")
        x = b.add(x, f, name=f"layer{i}_residual2")
    h = b.global_avg_pool(b.layer_norm(x, EPSILON, name="final_norm"), mask, name="pool")
    return b.build(b.dense(h, classes, name="logits"))


def frame_mask(features: np.ndarray) -> np.ndarray:
    """The encoder's mask ``(N, ceil(frames / 4))`` from log-mel features ``(N, frames, mels)``.

    A clip's length is one past its last frame with any band above the floor (features are 0
    exactly where the recording was zero-padded); a subsampled position is real when its first
    frame is within the length, so the mask keeps ``ceil(length / 4)`` positions, at least one.
    """
    x = np.asarray(features)
    if x.ndim == 4:
        x = x[..., 0]
    voiced = x.max(axis=2) > 0.0  # (N, frames)
    frames = x.shape[1]
    length = np.where(voiced.any(axis=1), frames - np.argmax(voiced[:, ::-1], axis=1), 1)
    positions = subsampled_length(frames)
    keep = np.maximum(-(-length // SUBSAMPLING), 1)
    return (np.arange(positions)[None, :] < keep[:, None]).astype(np.float32)
