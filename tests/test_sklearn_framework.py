"""The scikit-learn baseline framework: a classic estimator behind the Model interface."""

from __future__ import annotations

import numpy as np
import pytest
from dlbench.builtin.frameworks.sklearn import SklearnFramework
from dlbench.builtin.tasks._classify import ClassicClassifier

from dlbench.errors import UnsupportedError
from dlbench.framework import BuildOptions, Model
from dlbench.plugins import get_plugins


@pytest.fixture()
def fw() -> SklearnFramework:
    return get_plugins().frameworks.get("sklearn")


def _toy(n: int = 300, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)).astype(np.float32) + y[:, None] * 2.0
    return {"x": x}, y


def _classifier() -> ClassicClassifier:
    def make(seed: int) -> object:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(random_state=seed)

    return ClassicClassifier("toy", make, lambda b: np.asarray(b["x"]), num_classes=3)


def test_declares_a_classic_cpu_framework(fw: SklearnFramework) -> None:
    assert fw.kind == "classic" and fw.name == "sklearn"
    assert fw.variants == ("eager",) and fw.precisions == ("fp32",)
    av = fw.availability()
    assert av.installed and av.version
    assert fw.devices() == ["cpu"]


def test_build_rejects_the_neural_spec(fw: SklearnFramework) -> None:
    spec = get_plugins().tasks.get("vision").model_spec({})
    with pytest.raises(UnsupportedError, match="classic baseline: it ignores the neural spec"):
        fw.build(spec, spec.init_weights(0), BuildOptions())


def test_build_classic_checks_options(fw: SklearnFramework) -> None:
    with pytest.raises(UnsupportedError, match="variant 'compiled'"):
        fw.build_classic(_classifier(), BuildOptions(variant="compiled"))
    with pytest.raises(UnsupportedError, match="cpu only"):
        fw.build_classic(_classifier(), BuildOptions(device="cuda"))
    with pytest.raises(UnsupportedError, match="no classic model"):
        fw.build_classic(None, BuildOptions())


def test_fit_predict_through_the_model_interface(fw: SklearnFramework) -> None:
    fw.setup(1, 0, {})
    clf = _classifier()
    model = fw.build_classic(clf, BuildOptions(seed=3))
    assert isinstance(model, Model) and clf.random_state == 3
    x, y = _toy()
    order = np.random.default_rng(0).permutation(len(y))
    loss = model.fit_epoch(x, y, batch_size=32, order=order)
    assert np.isfinite(loss) and loss > 0
    xt, yt = _toy(100, seed=1)
    scores = model.predict(xt, batch_size=30)  # batched through to_device/forward/to_numpy
    assert scores.shape == (100, 3) and scores.dtype == np.float32
    assert float(np.mean(scores.argmax(1) == yt)) > 0.9
    model.synchronize()
    w = model.get_weights()
    assert w["coef"].shape == (3, 4) and w["intercept"].shape == (3,)


def test_fit_epoch_fits_once_per_training_set(fw: SklearnFramework) -> None:
    clf = _classifier()
    model = fw.build_classic(clf, BuildOptions())
    calls = []
    real_fit = clf.fit

    def counting_fit(X, y):  # type: ignore[no-untyped-def]
        calls.append(len(y))
        return real_fit(X, y)

    clf.fit = counting_fit  # type: ignore[method-assign]
    x, y = _toy()
    first = model.fit_epoch(x, y, 32, np.arange(len(y)))
    assert model.fit_epoch(x, y, 32, np.random.default_rng(1).permutation(len(y))) == first
    assert calls == [300]
    x2, y2 = _toy(200, seed=2)
    model.fit_epoch(x2, y2, 32, np.arange(200))
    assert calls == [300, 200]


def test_no_train_steps_gradients_or_canonical_weights(fw: SklearnFramework) -> None:
    model = fw.build_classic(_classifier(), BuildOptions())
    x, y = _toy(10)
    with pytest.raises(UnsupportedError, match="no train steps"):
        model.train_step(model.to_device(x), model.to_device(y))
    with pytest.raises(UnsupportedError, match="no input gradients"):
        model.loss_and_input_gradient(x, y)
    with pytest.raises(UnsupportedError, match="no canonical weights"):
        model.set_weights({"a": np.zeros(1)})
    model.set_weights({})
    assert model.get_weights() == {}


def test_wraps_the_vision_baseline(fw: SklearnFramework) -> None:
    """Vision's classic model goes through the framework and Task.evaluate unchanged."""
    task = get_plugins().tasks.get("vision")
    d = task.load({})
    model = fw.build_classic(task.classic_model({}), BuildOptions())
    model.fit_epoch(d.x_train, d.y_train, 64, np.arange(d.n_train))
    m = task.evaluate(d.y_test, model.predict(d.x_test), {})
    assert m["accuracy"] >= 0.93
