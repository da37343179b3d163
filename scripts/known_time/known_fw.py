"""A framework plugin whose step is a known amount of CPU work, for ``scripts/harness_error.py``.

``KNOWNFW_STEP_US`` (default 5000) sets the step: it spins until the thread's CPU time has
advanced by that many microseconds, so it is fixed work like a real model's step (preemption
makes it longer in wall time, never shorter). The spin itself is :func:`spin`, which the script
also hands to pytest-benchmark, so both harnesses time the very same function.
"""

from __future__ import annotations

import os
import time

import numpy as np

import dlbench
from dlbench.framework import Framework, Model


def spin(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def step_seconds() -> float:
    return float(os.environ.get("KNOWNFW_STEP_US", "5000")) / 1e6


class KnownModel(Model):
    def __init__(self, spec, options):
        self.spec, self.options = spec, options
        self.seconds = step_seconds()

    def to_device(self, batch):
        return dict(batch) if isinstance(batch, dict) else np.asarray(batch)

    def forward(self, native_inputs):
        spin(self.seconds)
        return np.zeros(1)

    def train_step(self, native_inputs, native_targets):
        spin(self.seconds)
        return np.float64(0.0)

    def synchronize(self):
        pass

    def to_numpy(self, native):
        return np.asarray(native)

    def get_weights(self):
        return {}

    def set_weights(self, weights):
        pass

    def loss_and_input_gradient(self, inputs, targets):
        raise NotImplementedError


class KnownFramework(Framework):
    name = "knownfw"
    label = "known-time step"
    modules = ("numpy",)
    distribution = "numpy"
    variants = ("eager",)

    def devices(self):
        return ["cpu"]

    def build(self, spec, weights, options):
        return KnownModel(spec, options)


@dlbench.hookimpl
def dlbench_register_frameworks(register):
    register(KnownFramework())
