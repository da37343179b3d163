"""Derived files are sealed with their digest and checked on reuse (dlbench.data.sealed): trained
weights that changed are refused in one line; the speech feature cache is rebuilt
(tests/test_speech_task.py::test_a_tampered_feature_cache_is_rebuilt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import FIXTURE_PLUGINS  # noqa: I001
from robustness_helpers import run_cell

from dlbench.data.sealed import seal, seal_path, seal_state


def test_seal_states(tmp_path: Path) -> None:
    f = tmp_path / "derived.bin"
    assert seal_state(f) == "missing"
    f.write_bytes(b"derived bytes")
    assert seal_state(f) == "unsealed"
    digest = seal(f)
    assert seal_path(f).read_text() == f"{digest}  derived.bin\n"  # sha256sum's format
    assert seal_state(f) == "ok"
    f.write_bytes(b"derived bytez")  # same size, one byte changed
    assert seal_state(f) == "mismatch"
    seal_path(f).write_text("")
    assert seal_state(f) == "unsealed"


def test_reused_weights_are_checked_against_their_seal(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"

    def cell():
        return run_cell("blobs", "numpyfw", {"epochs": 1, "reuse": True}, artifacts,
                        plugins_dirs=(str(FIXTURE_PLUGINS),), scenario="accuracy")

    first = cell()
    assert first.status == "ok", first.error
    assert first.details["reused_trained_weights"] is False
    (path,) = (artifacts / "weights").glob("*.npz")
    assert seal_state(path) == "ok"
    again = cell()
    assert again.status == "ok" and again.details["reused_trained_weights"] is True
    # weights changed after they were written: refused, one line naming the file and the fix
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    name = next(k for k in arrays if k != "__meta__")
    arrays[name] = arrays[name] + 1.0
    np.savez(path, **arrays)
    tampered = cell()
    assert tampered.status == "failed"
    assert tampered.error is not None and "\n" not in tampered.error
    assert f"trained weights {path} no longer match their digest" in tampered.error
    assert "delete both to train again" in tampered.error
    # weights without a seal (written before seals existed) are not trusted: trained again
    seal_path(path).unlink()
    retrained = cell()
    assert retrained.status == "ok" and retrained.details["reused_trained_weights"] is False
    assert seal_state(path) == "ok"
    assert retrained.model.trained_digest == first.model.trained_digest  # same seed, same weights
