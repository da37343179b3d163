"""The speech task's Transformer encoder family: structure, padding mask, data, speed shapes, and
parity at the tiny size on every installed framework (tests/family_parity.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from dlbench.builtin.tasks import _speech_encoder as enc
from dlbench.builtin.tasks import speech

from dlbench import spec_numpy
from dlbench.errors import DlbenchError
from dlbench.plugins import get_plugins
from dlbench.task import Task
from tests import family_parity

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_fsdd = pytest.mark.skipif(not (SHARED / "fsdd" / "recordings").is_dir(),
                                reason="needs ../shared/data/fsdd")
TINY = {"model": "encoder", "size": "tiny"}


@pytest.fixture(scope="module")
def task() -> Task:
    return get_plugins().tasks.get("speech")


def _expected_parameters(size: enc.TransformerSize, mels: int, positions: int) -> int:
    d = size.d
    per_layer = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return (3 * mels * d + d) + (3 * d * d + d) + positions * d + size.layers * per_layer + 2 * d + d * 10 + 10


@pytest.mark.parametrize("size", sorted(enc.SIZES))
def test_sizes_are_pre_ln_encoders_of_the_stated_shape(task: Task, size: str) -> None:
    shape = enc.SIZES[size]
    spec = task.model_spec({"model": "encoder", "size": size})
    assert {n: s.attrs["shape"] for n, s in spec.inputs.items()} == {"spectrogram": (64, 40), "mask": (16,)}
    attention = [n for n in spec.nodes if n.op == "MultiHeadSelfAttention"]
    assert len(attention) == shape.layers and {n.attrs["num_heads"] for n in attention} == {shape.heads}
    for n in attention:  # pre-LN: attention reads a LayerNorm and the padding mask
        assert spec.node(n.inputs[0]).op == "LayerNorm" and n.inputs[1] == "mask"
    subsample = [n for n in spec.nodes if n.op == "Conv1D"]
    assert [(n.attrs["strides"], n.attrs["filters"]) for n in subsample] == [(2, shape.d)] * 2
    assert spec.shapes()["subsample2"] == (16, shape.d) and spec.shapes()[spec.output] == (10,)
    assert spec.node("pool").inputs == ("final_norm", "mask")
    assert spec.parameter_count() == _expected_parameters(shape, 40, 16)


def test_sizes_match_the_brief() -> None:
    assert {k: (s.layers, s.d, s.heads) for k, s in enc.SIZES.items()} == {
        "tiny": (2, 64, 2), "small": (4, 144, 4), "base": (12, 256, 4)}


def test_frame_mask_keeps_the_subsampled_length() -> None:
    x = np.zeros((4, 64, 40), np.float32)
    x[0, :64] = 0.5  # full clip
    x[1, :10] = 0.5  # 10 frames: positions 0..2 (ceil(10 / 4))
    x[2, 5:9, 3] = 0.2  # silence inside the clip counts as clip: length 9 -> 3 positions
    # x[3] all silent: one position kept
    m = enc.frame_mask(x)
    assert m.shape == (4, 16) and set(np.unique(m)) <= {0.0, 1.0}
    assert m.sum(axis=1).tolist() == [16, 3, 3, 1]
    assert np.all(np.diff(m, axis=1) <= 0)  # a prefix
    assert enc.frame_mask(x[..., None]).tolist() == m.tolist()  # the cnn layout too


def test_padding_beyond_the_mask_does_not_change_the_output(task: Task) -> None:
    spec = task.model_spec(TINY).without_dropout()
    w = spec.init_weights(0)
    rng = np.random.default_rng(0)
    x = np.zeros((2, 64, 40), np.float32)
    x[:, :20] = rng.random((2, 20, 40))
    mask = enc.frame_mask(x)  # 5 real positions: they read frames up to 4 * 4 + 3 = 19
    other = x.copy()
    other[:, 24:] = rng.random((2, 40, 40))  # beyond every real position's receptive field
    a = spec_numpy.forward(spec, w, {"spectrogram": x, "mask": mask})
    b = spec_numpy.forward(spec, w, {"spectrogram": other, "mask": mask})
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    unmasked = spec_numpy.forward(spec, w, {"spectrogram": other, "mask": np.ones_like(mask)})
    assert np.max(np.abs(unmasked - b)) > 1e-6  # the mask is what hides them


def test_speed_shapes_need_no_data_and_accuracy_refuses_them(task: Task) -> None:
    params = {"model": "encoder", "size": "base", "frames": 1000, "mels": 80}
    spec = task.model_spec(params)
    assert spec.inputs["spectrogram"].attrs["shape"] == (1000, 80)
    assert spec.inputs["mask"].attrs["shape"] == (250,)
    xs, y = task.synthetic_batch(spec, 3, np.random.default_rng(0), params)
    assert set(np.unique(xs["mask"])) <= {0.0, 1.0} and np.all(xs["mask"][:, 0] == 1.0)
    assert np.all(np.diff(xs["mask"], axis=1) <= 0) and y.shape == (3,)
    assert spec.flops_per_example() > 12 * 2 * 250 * 8 * 256 * 256  # the FFNs alone
    with pytest.raises(DlbenchError, match="frames=1000.*speed cells only"):
        task.load(params)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_small_encoder_at_librispeech_shape_trains_on_torch(task: Task) -> None:
    params = {"model": "encoder", "size": "small", "frames": 400, "mels": 80}
    spec = task.model_spec(params)
    xs, y = task.synthetic_batch(spec, 2, np.random.default_rng(0), params)
    fw = get_plugins().frameworks.get("torch")
    from dlbench.framework import BuildOptions

    model = fw.build(spec, spec.init_weights(0), BuildOptions(train=task.train_config(params)))
    assert model.predict(xs).shape == (2, 10)
    assert np.isfinite(float(model.to_numpy(model.train_step(model.to_device(xs), model.to_device(y)))))


@needs_fsdd
def test_load_gives_the_encoder_its_mask(task: Task) -> None:
    d = task.load(TINY)
    assert set(d.x_train) == {"spectrogram", "mask"} and d.x_train["spectrogram"].shape[1:] == (64, 40)
    assert d.x_train["mask"].shape == (2700, 16) and d.x_test["mask"].shape == (300, 16)
    np.testing.assert_array_equal(d.x_test["mask"], enc.frame_mask(d.x_test["spectrogram"]))
    lengths = d.x_train["mask"].sum(axis=1)
    assert lengths.min() >= 1 and 1 < np.median(lengths) < 16  # most clips are shorter than 1 s
    rng = np.random.default_rng(0)
    x, _ = task.corrupt(d.x_test, d.y_test, "time_shift", 4, rng, d)
    assert np.all(x["mask"].sum(axis=1) >= lengths.min())
    np.testing.assert_array_equal(x["mask"], enc.frame_mask(x["spectrogram"]))
    assert task.default_epochs(TINY) == speech.EPOCHS_ENCODER


# -- parity ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fw_name", family_parity.framework_ids())
def test_tiny_encoder_parity_on_every_framework(fw_name: str) -> None:
    """Outputs vs NumPy; loss, input gradients and one SGD step vs torch: all <= 1e-4."""
    family_parity.assert_family_parity(fw_name, "speech", TINY)
