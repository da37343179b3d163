"""Make JAX compile less in tests: share jitted functions across models, skip XLA optimisations.

The models in the tests are tiny, so XLA's optimisation passes cost more than they save; and
models rebuilt from the same spec reuse one compilation. Both are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quick_jax() -> Iterator[None]:
    try:
        import jax
        from dlbench.builtin.frameworks.jax import share_compilations
    except ImportError:
        yield
        return
    flag = "jax_disable_most_optimizations"
    old = bool(getattr(jax.config, "values", {}).get(flag, False))
    try:
        jax.config.update(flag, True)
    except AttributeError:  # a JAX without the flag: only share compilations
        flag = ""
    share_compilations(True)
    try:
        yield
    finally:
        share_compilations(False)
        if flag:
            jax.config.update(flag, old)
