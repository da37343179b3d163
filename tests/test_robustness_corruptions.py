"""Corruptions change inputs, more at each severity level, in each built-in task (each task
declares its own: :meth:`dlbench.task.Task.corruptions`)."""

from __future__ import annotations

import numpy as np
import pytest
from dlbench.builtin.tasks._audio import corrupt_logmel
from dlbench.builtin.tasks._images import IMAGE_CORRUPTIONS
from dlbench.builtin.tasks.nlp import typo_tokens
from dlbench.builtin.tasks.recsys import corrupt_interactions

from dlbench.errors import UnsupportedError
from dlbench.plugins import get_plugins


def _graded(distances: list[float]) -> None:
    assert distances[0] > 0
    for a, b in zip(distances, distances[1:], strict=False):
        assert b >= a * 0.98, distances  # non-decreasing (random draws: 2% slack)
    assert distances[-1] > distances[0]


@pytest.fixture(scope="module")
def digits():
    task = get_plugins().tasks.get("vision")
    return task, task.load({"dataset": "digits"})


@pytest.mark.parametrize("name", [c.name for c in IMAGE_CORRUPTIONS])
def test_image_corruptions_are_graded(name, digits) -> None:
    task, data = digits
    x = {"image": data.x_test["image"][:64]}
    dists = []
    for level in range(1, 6):
        try:
            xc, yc = task.corrupt(
                x, data.y_test[:64], name, level, np.random.default_rng([0, level]), data
            )
        except UnsupportedError as exc:
            assert name == "jpeg" and "Pillow" in str(exc)
            pytest.skip(str(exc))
        assert xc["image"].shape == x["image"].shape and xc["image"].dtype == np.float32
        assert xc["image"].min() >= 0 and xc["image"].max() <= 1
        np.testing.assert_array_equal(yc, data.y_test[:64])
        dists.append(float(np.abs(xc["image"] - x["image"]).mean()))
    _graded(dists)


def _logmel(rng: np.random.Generator, n: int = 8) -> np.ndarray:
    """Speech-like features: 1 + dB/80 with a peak at 0 dB and a floor at -80 dB."""
    db = np.clip(rng.normal(-45, 15, size=(n, 64, 40)), -80, 0)
    db[:, 10, 5] = 0.0
    db[:, 48:] = -80.0  # trailing silence
    return (1 + db / 80).astype(np.float32)


@pytest.mark.parametrize("name", ["white_noise", "background_noise", "time_shift"])
def test_audio_corruptions_are_graded(name) -> None:
    x = _logmel(np.random.default_rng(0))
    dists = []
    for level in range(1, 5):
        xc = corrupt_logmel(x, name, level, np.random.default_rng([1, level]), 80.0)
        assert xc.shape == x.shape and xc.min() >= 0 and xc.max() <= 1
        assert np.allclose(
            xc.max(axis=(1, 2)), 1.0
        )  # renormalised to the new peak, as the pipeline does
        dists.append(float(np.abs(xc - x).mean()))
    _graded(dists)


def test_audio_gain_is_invisible_to_peak_normalised_features() -> None:
    x = _logmel(np.random.default_rng(0))
    for level in range(1, 5):
        np.testing.assert_allclose(
            corrupt_logmel(x, "gain", level, np.random.default_rng(0), 80.0), x, atol=1e-5
        )
    noisy = corrupt_logmel(x[..., None], "white_noise", 4, np.random.default_rng(0), 80.0)
    assert noisy.shape == (8, 64, 40, 1)
    assert noisy[:, 48:].mean() > x[:, 48:].mean() + 0.2  # noise fills the silence at 0 dB SNR


def test_text_typos_are_graded() -> None:
    vocab = ["<pad>", "<unk>", "good", "bad", "movie", "the", "!", "great", "plot"]
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, len(vocab), size=(400, 20)).astype(np.int32)
    mask = np.ones((400, 20), np.float32)
    mask[:, 15:] = 0
    tokens[:, 15:] = 0
    changed = []
    for level in (1, 2, 3):
        out = typo_tokens(tokens, mask, vocab, level, np.random.default_rng(level))
        assert np.all(out[:, 15:] == 0)  # padding untouched
        assert np.all(out[tokens == 6] == 6)  # punctuation untouched
        changed.append(float(np.mean(out[:, :15] != tokens[:, :15])))
    _graded(changed)
    words = np.mean(tokens[:, :15] != 6)
    assert changed[-1] == pytest.approx(0.2 * words, abs=0.03)  # most typos become <unk>


def test_nlp_task_corrupts_through_its_vocabulary() -> None:
    task = get_plugins().tasks.get("nlp")
    params = {"dataset": "sentiment", "max_len": 32, "vocab_size": 2000}
    try:
        data = task.load(params)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"sentiment data unavailable: {exc}")
    x = {k: v[:200] for k, v in data.x_test.items()}
    xc, _ = task.corrupt(x, data.y_test[:200], "typos", 3, np.random.default_rng(0), data)
    diff = xc["tokens"] != x["tokens"]
    assert 0.05 < diff[x["mask"] > 0].mean() < 0.25
    assert np.mean(xc["tokens"][diff] == 1) > 0.8  # typos mostly map to <unk> (id 1)
    np.testing.assert_array_equal(xc["mask"], x["mask"])


@pytest.mark.parametrize("implicit", [False, True])
def test_recommendation_corruptions_are_graded(implicit) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    x = {
        "user": rng.integers(0, 50, (n, 1)).astype(np.int32),
        "item": rng.integers(0, 80, (n, 1)).astype(np.int32),
    }
    y = (rng.integers(0, 2, n) if implicit else rng.integers(1, 6, n) - 3.5).astype(np.float32)
    targets = np.array([1.0]) if implicit else np.arange(1.0, 6.0) - 3.5
    observed = int((y > 0.5).sum()) if implicit else n
    dropped, added = [], []
    for level in (1, 2, 3):
        xd, yd = corrupt_interactions(
            x, y, "dropped_interactions", level, np.random.default_rng(level), 50, 80, targets
        )
        xr, yr = corrupt_interactions(
            x, y, "random_interactions", level, np.random.default_rng(level), 50, 80, targets
        )
        assert len(xd["user"]) == len(yd) and len(xr["item"]) == len(yr)
        dropped.append(n - len(yd))
        added.append(len(yr) - n)
        assert set(np.unique(yr[n:])) <= set(targets.astype(np.float32))
    _graded([float(v) for v in dropped])
    _graded([float(v) for v in added])
    assert dropped[-1] == round(0.5 * observed)


def test_each_builtin_task_declares_its_corruptions() -> None:
    plugins = get_plugins()
    names = {t: [c.name for c in plugins.tasks.get(t).corruptions({})]
             for t in ("vision", "speech", "nlp", "recsys")}
    assert "blur" in names["vision"] and "white_noise" in names["speech"]
    assert names["nlp"] == ["typos"]
    assert names["recsys"] == ["dropped_interactions", "random_interactions"]
    splits = {c.split for c in plugins.tasks.get("recsys").corruptions({})}
    assert splits == {"train"}


def test_an_unknown_corruption_names_the_valid_ones() -> None:
    task = get_plugins().tasks.get("vision")
    x = {"image": np.zeros((2, 8, 8, 1), np.float32)}
    with pytest.raises(UnsupportedError, match="unknown vision corruption 'fog': choose one of "
                                               "gaussian_noise"):
        task.corrupt(x, np.zeros(2), "fog", 1, np.random.default_rng(0), None)
