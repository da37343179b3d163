"""BERT encoder specs for the nlp task (Devlin et al., NAACL 2019; sizes of Google's BERT
miniatures, Turc et al. 2019). Not a plugin.

Post-LN, as the original BERT: token embedding + learned positions (512) -> LayerNorm ->
Dropout(0.1); per layer: masked self-attention -> Dropout -> Add -> LayerNorm, Dense(4d, GELU
(exact erf)) -> Dense(d) -> Dropout -> Add -> LayerNorm (epsilon 1e-12 everywhere). Head: mean
over the real (unmasked) tokens, the pooler Dense(d, tanh), Dropout, Dense to the classes.

Differences from the published model, each stated: no token-type (segment) embedding: with one
segment it is a single learned vector added at every position, which the position table already
can hold; mean pooling over the real tokens instead of the [CLS] token (the spec has no slice
op); no dropout on the attention probabilities (the spec's attention has none); the spec's
seeded Glorot initialisation instead of N(0, 0.02).
"""

from __future__ import annotations

from dlbench.api import ModelSpec, SpecBuilder

from ._transformer import TransformerSize

SIZES = {
    "tiny": TransformerSize(2, 128, 2),
    "mini": TransformerSize(4, 256, 4),
    "small": TransformerSize(4, 512, 8),
    "base": TransformerSize(12, 768, 12),
}
POSITIONS = 512
"""Rows of the position table (BERT's maximum sequence length)."""
EPSILON = 1e-12
DROPOUT = 0.1


def bert_spec(name: str, size: TransformerSize, seq_len: int, vocab_size: int, classes: int) -> ModelSpec:
    """A BERT encoder classifier over ``tokens`` (int32 ``(seq_len,)``) and ``mask`` (float32)."""
    b = SpecBuilder(name)
    tokens = b.input("tokens", (seq_len,), "int32")
    mask = b.input("mask", (seq_len,), "float32")
    x = b.embedding(tokens, vocab_size, size.d, name="embedding")
    x = b.position_embedding(x, max(POSITIONS, seq_len), name="positions")
    x = b.dropout(b.layer_norm(x, EPSILON, name="embed_norm"), DROPOUT, name="embed_dropout")
    for i in range(size.layers):
        a = b.self_attention(x, size.heads, mask, name=f"layer{i}_attention")
        a = b.dropout(a, DROPOUT, name=f"layer{i}_attention_dropout")
        x = b.layer_norm(b.add(x, a, name=f"layer{i}_residual1"), EPSILON, name=f"layer{i}_norm1")
        f = b.dense(x, size.ffn, "gelu", name=f"layer{i}_ffn1")
        f = b.dropout(b.dense(f, size.d, name=f"layer{i}_ffn2"), DROPOUT, name=f"layer{i}_ffn_dropout")
        x = b.layer_norm(b.add(x, f, name=f"layer{i}_residual2"), EPSILON, name=f"layer{i}_norm2")
    h = b.global_avg_pool(x, mask, name="pool")
    h = b.dropout(b.dense(h, size.d, "tanh", name="pooler"), DROPOUT, name="pooler_dropout")
    return b.build(b.dense(h, classes, name="logits"))
