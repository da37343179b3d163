"""Large trained weights (hundreds of MB at ResNet-50 / BERT-base sizes) are written to disk array
by array, sealed with a SHA-256 computed from the file in chunks, and reloaded after a streamed
digest check without ever holding two copies in memory (tracemalloc sees NumPy's allocations)."""

from __future__ import annotations

import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest

from dlbench.data.sealed import seal_path
from dlbench.errors import DlbenchError
from dlbench.run.context import CellContext

MB = 2**20


def _ctx(tmp_path: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(artifacts_dir=tmp_path,
                                 artifact_path=lambda key: tmp_path / "weights" / f"{key}.npz")


def test_large_weights_round_trip_sealed_with_one_copy_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    weights = {f"layer{i}.kernel": rng.standard_normal((1024, 2048), dtype=np.float32) for i in range(8)}
    size = sum(w.nbytes for w in weights.values())  # 64 MiB
    ctx = _ctx(tmp_path)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        rel = CellContext.save_weights(ctx, "big", weights, {"epochs": 1})  # type: ignore[arg-type]
        _, save_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        loaded = CellContext.load_weights(ctx, "big")  # type: ignore[arg-type]
        after, load_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded is not None and rel == "weights/big.npz"
    got, meta = loaded
    assert meta == {"epochs": 1} and all(np.array_equal(got[k], weights[k]) for k in weights)
    assert save_peak < 0.25 * size, f"saving held {save_peak / MB:.0f} MiB beside {size / MB:.0f} MiB of weights"
    assert after - before >= size * 0.95  # the loaded copy ...
    assert load_peak - before < 1.25 * size, f"loading peaked at {(load_peak - before) / MB:.0f} MiB"  # ... and no second
    assert seal_path(tmp_path / rel).read_text().split()[0]  # sealed


def test_a_truncated_weights_file_is_refused_in_one_line(tmp_path):
    ctx = _ctx(tmp_path)
    CellContext.save_weights(ctx, "w", {"k": np.ones((256, 256), np.float32)}, {})  # type: ignore[arg-type]
    path = tmp_path / "weights" / "w.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DlbenchError, match=r"no longer match their digest.*delete both to train again"):
        CellContext.load_weights(ctx, "w")  # type: ignore[arg-type]
