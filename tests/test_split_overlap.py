"""No example is in both the train and the test split of any built-in task, on the real data.

"The same example" is what the model could memorise: token-identical texts (the nlp task's own
tokenisation), identical input arrays (images, spectrograms; hashed), identical (user, item)
pairs (recommendation). Every dataset choice of every task is checked; a configuration whose
files are not in ``DLBENCH_DATA_DIR`` (default ``../shared/data`` beside the checkout) is skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dlbench.builtin.tasks.nlp import NlpTask, tokenize
from dlbench.builtin.tasks.recsys import RecsysTask
from dlbench.builtin.tasks.speech import SpeechTask
from dlbench.builtin.tasks.vision import VisionTask

from dlbench.task import Dataset, Task

DATA = Path(os.environ.get("DLBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def _choices(task: Task, name: str) -> tuple[Any, ...]:
    choices = task.params[name].choices
    assert choices, f"{task.name}.{name} declares no choices"
    return tuple(choices)


CASES: list[tuple[Task, dict[str, Any]]] = [
    *((NlpTask(), {"dataset": d}) for d in _choices(NlpTask(), "dataset")),
    *((VisionTask(), {"dataset": d}) for d in _choices(VisionTask(), "dataset")),
    (SpeechTask(), {"split": "official"}),
    *((SpeechTask(), {"split": "speaker", "holdout_speaker": s})
      for s in _choices(SpeechTask(), "holdout_speaker")),
    *((RecsysTask(), {"objective": o}) for o in _choices(RecsysTask(), "objective")),
]


def _ids(case: tuple[Task, dict[str, Any]]) -> str:
    task, params = case
    return f"{task.name}-" + "-".join(str(v) for v in params.values())


def _row_hashes(x: Mapping[str, np.ndarray]) -> list[Hashable]:
    names = sorted(x)
    n = len(x[names[0]])
    out: list[Hashable] = []
    for i in range(n):
        h = hashlib.sha256()
        for k in names:
            h.update(np.ascontiguousarray(x[k][i]).tobytes())
        out.append(h.hexdigest())
    return out


def split_keys(task: Task, params: dict[str, Any], ds: Dataset) -> tuple[list[Hashable], list[Hashable]]:
    """What identifies an example of each split, per kind of task."""
    if isinstance(task, NlpTask):
        texts = task.corpus(params).texts
        return ([tuple(tokenize(texts[i])) for i in ds.meta["train_index"]],
                [tuple(tokenize(texts[i])) for i in ds.meta["test_index"]])
    if {"user", "item"} <= set(ds.x_train):
        def pairs(x: Mapping[str, np.ndarray]) -> list[Hashable]:
            return list(zip(x["user"].reshape(-1).tolist(), x["item"].reshape(-1).tolist(), strict=True))
        return pairs(ds.x_train), pairs(ds.x_test)
    return _row_hashes(ds.x_train), _row_hashes(ds.x_test)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_no_example_is_in_both_splits(case: tuple[Task, dict[str, Any]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    task, params = case
    missing = [name for name in task.datasets(params) if not (DATA / name).is_dir()]
    if missing:
        pytest.skip(f"dataset(s) {', '.join(missing)} not in {DATA}")
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(DATA))
    ds = task.load(params)
    train, test = split_keys(task, params, ds)
    assert len(train) == ds.n_train and len(test) == ds.n_test > 0
    shared = set(train) & set(test)
    assert not shared, f"{len(shared)} distinct examples in both splits, e.g. {sorted(map(str, shared))[:3]}"


def test_the_check_sees_an_overlap() -> None:
    """The keys detect a planted leak: a test row copied into the training split."""
    x_train = {"image": np.arange(12, dtype=np.float32).reshape(3, 2, 2)}
    x_test = {"image": np.stack([x_train["image"][1] + 100, x_train["image"][2]])}
    leaky = Dataset(x_train, np.zeros(3), x_test, np.zeros(2))
    train, test = split_keys(VisionTask(), {}, leaky)
    assert set(train) & set(test) == {test[1]} and test[0] not in train
    pairs = Dataset({"user": np.array([[0], [1]]), "item": np.array([[5], [6]])}, np.zeros(2),
                    {"user": np.array([[1], [1]]), "item": np.array([[5], [6]])}, np.zeros(2))
    train, test = split_keys(RecsysTask(), {}, pairs)
    assert set(train) & set(test) == {(1, 6)}
