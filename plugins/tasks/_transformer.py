"""What the Transformer encoder specs of the tasks share. Not a plugin.

:class:`TransformerSize` is the size of a BERT encoder (``_bert.py``) and of the speech encoder
(``_speech_encoder.py``). Their blocks stay in their own modules: BERT is post-LN (LayerNorm after
each residual add, epsilon 1e-12), the speech encoder pre-LN (LayerNorm before attention and the
FFN, a final LayerNorm, epsilon 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformerSize:
    """An encoder's depth and width: ``layers`` blocks of width ``d`` with ``heads`` attention
    heads; the FFN's hidden width is ``4 * d``, as in BERT and the original Transformer."""

    layers: int
    d: int
    heads: int

    @property
    def ffn(self) -> int:
        """The hidden width of each block's feed-forward network (``4 * d``)."""
        return 4 * self.d
