"""The robustness scenario on CUDA (PyTorch, JAX): skipped without a CUDA GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from tests.robustness_helpers import FAST, audit, curve, run_cell
except ImportError:  # pragma: no cover
    from robustness_helpers import FAST, audit, curve, run_cell

PARAMS = {
    **FAST,
    "attacks": "fgsm,pgd,apgd,square,noise",
    "epsilons": [0, 16, 64],
    "corruptions": True,
    "audit": True,
}


@pytest.mark.gpu
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_robustness_cell_on_cuda(framework: str, tmp_path: Path) -> None:
    pytest.importorskip(framework)
    if framework == "jax":
        import jax

        if not any(d.platform == "gpu" for d in jax.devices()):
            pytest.skip("jax sees no GPU")
    res = run_cell("vision", framework, PARAMS, tmp_path, device="cuda")
    assert res.status == "ok", res.error
    assert curve(res, "pgd")[-1]["metric"] < res.metrics["clean_accuracy"] - 0.3
    assert res.metrics["audit_passed"] == 1.0, audit(res)
