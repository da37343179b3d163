"""Speech task: spoken-digit recognition on the Free Spoken Digit Dataset (FSDD v1.0.10).

3,000 recordings ``recordings/{digit}_{speaker}_{index}.wav`` (6 speakers x 10 digits x 50
takes, 8 kHz, 16-bit mono). Features (computed once, in NumPy/SciPy, see :mod:`dlbench.builtin.tasks._audio`):
a 40-band log-mel spectrogram, 32 ms Hann window, 16 ms hop, 64 frames (1.04 s; recordings are
zero-padded or cropped at the end), in dB relative to the utterance's peak floored at -80 dB and
mapped to [0, 1] (``x = 1 + dB / 80``). They are cached in an ``.npz`` keyed by a digest of the
feature settings and the dataset manifest: beside the data when its folder is writable, else
in the user cache (see :func:`dlbench.data.registry.derived_dir`). The cache is sealed with its
SHA-256 (``.npz.sha256``, :func:`dlbench.data.sealed.seal`); one that no longer matches is rebuilt.

Splits: ``official`` (takes 0-4 test: 300; takes 5-49 train: 2,700), or ``speaker`` (all 500
recordings of ``holdout_speaker`` are the test split; the other five speakers train).
Train order is by file name (the accuracy scenario shuffles it with the cell's seed).

Models (parameter ``model``): ``cnn`` (Conv2D over time x mel), ``cnn1d`` (Conv1D, mels as
channels), and ``encoder`` (:mod:`._speech_encoder`: conv subsampling + a pre-LN Transformer
encoder of ``size`` tiny/small/base, mean-pooled over the real frames), which also reads the
input ``mask`` (float32 ``(16,)``: the clip's real length after the 4x subsampling, from
:func:`._speech_encoder.frame_mask`). Speed cells read no data: ``frames`` and ``mels`` give
other input shapes there (``frames: 1000, mels: 80`` is 10 s of 80-band features at a 10 ms
hop, the shape of LibriSpeech encoders); accuracy cells need the features' 64 x 40.

Robustness: attacks perturb the log-mel features (the model's input), within [0, 1]; suites
give epsilon in dB of log-mel power, and one dB is ``1 / 80`` feature units (``DB_PER_UNIT``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
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
    ModelSpec,
    Param,
    PerturbationDomain,
    SpecBuilder,
    SuiteError,
    Task,
    TrainConfig,
    atomic_writer,
    derived_dir,
    files_from_sums,
    hookimpl,
    read_sha256sums,
    require,
    seal,
    seal_state,
)

from ._audio import (
    AUDIO_CORRUPTIONS,
    DB_RANGE,
    LogMelConfig,
    corrupt_logmel,
    fix_length,
    log_mel,
    mfcc_stats,
)
from ._classify import ClassicClassifier, classification_metrics, param
from ._speech_encoder import SIZES as ENCODER_SIZES
from ._speech_encoder import encoder_spec, frame_mask

FSDD_URL = ("https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/"
            "v1.0.10/{path}")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FEATURES = LogMelConfig()
FEATURE_VERSION = 1
DB_PER_UNIT = DB_RANGE
"""Feature units are ``1 / DB_PER_UNIT``: an epsilon of ``e`` dB is ``e / DB_PER_UNIT`` in input space."""

EPOCHS_ENCODER = 30
"""Default epochs of the encoder (see docs/tasks.md for the accuracy it reaches)."""

_MANIFEST = Path(__file__).with_name("data") / "fsdd.sha256"


@functools.lru_cache(maxsize=1)
def fsdd_info() -> DatasetInfo:
    sums = read_sha256sums(_MANIFEST.read_text(encoding="ascii"))
    return DatasetInfo(
        name="fsdd",
        description="Free Spoken Digit Dataset v1.0.10: 3,000 recordings of spoken digits, "
                    "6 speakers x 10 digits x 50 takes, 8 kHz mono WAV",
        files=files_from_sums(sums, FSDD_URL),
        licence="CC BY-SA 4.0",
        citation="Z. Jackson, C. Souza, J. Flaks, Y. Pan, H. Nicolas, A. Thite. Jakobovski/"
                 "free-spoken-digit-dataset: v1.0.8. Zenodo, 2018. doi:10.5281/zenodo.1342401",
        homepage="https://github.com/Jakobovski/free-spoken-digit-dataset",
        size="21 MB",
        redistributable=True,
    )


class SpeechTask(Task):
    name = "speech"
    domain = "speech"
    description = "spoken-digit recognition (FSDD, log-mel spectrograms)"
    params = {
        "split": Param("official", "official (takes 0-4 test) or speaker (one speaker held out)",
                       ("official", "speaker")),
        "holdout_speaker": Param("theo", "test speaker when split=speaker", SPEAKERS),
        "model": Param("cnn", "cnn (Conv2D over time x mel), cnn1d (Conv1D over time, mels as "
                       "channels) or encoder (conv subsampling + Transformer of size)",
                       ("cnn", "cnn1d", "encoder")),
        "activation": Param("relu", "hidden activation of cnn and cnn1d (encoder: gelu)", ACTIVATIONS),
        "size": Param("tiny", "encoder: tiny (2 layers, d=64, 2 heads), small (4, 144, 4), "
                      "base (12, 256, 4)", tuple(ENCODER_SIZES)),
        "frames": Param(FEATURES.frames, "encoder: log-mel frames per clip; other than 64 only in "
                        "cells that read no data (speed)", type=int, min=8, max=100_000),
        "mels": Param(FEATURES.n_mels, "encoder: mel bands; other than 40 only in cells that read "
                      "no data (speed)", type=int, min=1, max=1024),
    }
    metrics = ("accuracy", "macro_f1")

    def _p(self, params: Mapping[str, Any], name: str) -> Any:
        return param(params, name, self.params, self.name)

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, params: Mapping[str, Any]) -> list[str]:
        return ["fsdd"]

    def load(self, params: Mapping[str, Any]) -> Dataset:
        split, speaker, model = (self._p(params, k) for k in ("split", "holdout_speaker", "model"))
        feats = load_features(require(fsdd_info()))
        x, y = feats["x"], feats["label"]
        if split == "official":
            test = feats["take"] < 5
            desc = "official: takes 0-4 test"
        else:
            test = feats["speaker"] == speaker
            desc = f"speaker: {speaker} held out"
        if model == "cnn":
            x = x[..., None]
        meta = {"split": desc, "features": FEATURES.to_dict(), "db_per_unit": DB_PER_UNIT}
        if model != "encoder":
            return Dataset({"spectrogram": x[~test]}, y[~test], {"spectrogram": x[test]}, y[test],
                           num_classes=10, name="fsdd", meta=meta)
        for name, native in (("frames", FEATURES.frames), ("mels", FEATURES.n_mels)):
            if self._p(params, name) != native:
                raise SuiteError(f"task speech: {name}={self._p(params, name)}, but the FSDD "
                                 f"features have {native}: set {name}: {native}, or use it in "
                                 "speed cells only (no data)")
        mask = frame_mask(x)
        return Dataset({"spectrogram": x[~test], "mask": mask[~test]}, y[~test],
                       {"spectrogram": x[test], "mask": mask[test]}, y[test],
                       num_classes=10, name="fsdd", meta=meta)

    # -- model -----------------------------------------------------------------------------------
    def model_spec(self, params: Mapping[str, Any], dataset: Dataset | None = None) -> ModelSpec:
        model, act = self._p(params, "model"), self._p(params, "activation")
        t, m = FEATURES.frames, FEATURES.n_mels
        if model == "encoder":
            size, frames, mels = (self._p(params, k) for k in ("size", "frames", "mels"))
            name = f"speech-encoder-{size}" + ("" if (frames, mels) == (t, m) else f"-{frames}x{mels}")
            return encoder_spec(name, ENCODER_SIZES[size], frames, mels, 10)
        b = SpecBuilder(f"speech-{model}-{act}")
        if model == "cnn":
            x = b.input("spectrogram", (t, m, 1))
            for filters in (16, 32, 32):
                x = b.conv2d(x, filters, 3, activation=act)
                x = b.max_pool(x, 2)  # 64x40 -> 32x20 -> 16x10 -> 8x5
        else:
            x = b.input("spectrogram", (t, m))
            for filters in (64, 64, 64):
                x = b.conv1d(x, filters, 5, activation=act)
                x = b.max_pool(x, 2)  # 64 -> 32 -> 16 -> 8
        x = b.flatten(x)
        x = b.dropout(x, 0.3)
        x = b.dense(x, 64, activation=act)
        return b.build(b.dense(x, 10, name="logits"))

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        return TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=1e-3)

    def default_epochs(self, params: Mapping[str, Any]) -> int:
        """10 (the encoder: EPOCHS_ENCODER; it learns more slowly from its random start)."""
        return EPOCHS_ENCODER if self._p(params, "model") == "encoder" else 10

    def synthetic_batch(self, spec: ModelSpec, batch_size: int, rng: np.random.Generator,
                        params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Random features; the encoder's mask a {0, 1} prefix of random length (at least one)."""
        xs, y = super().synthetic_batch(spec, batch_size, rng, params)
        if "mask" in xs:
            length = xs["mask"].shape[1]
            keep = rng.integers(1, length + 1, size=batch_size)
            xs["mask"] = (np.arange(length)[None, :] < keep[:, None]).astype(np.float32)
        return xs, y

    def target(self, params: Mapping[str, Any]) -> float | None:
        return 0.9

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> dict[str, float]:
        return classification_metrics(y_true, outputs, 10)

    def classic_model(self, params: Mapping[str, Any]) -> ClassicClassifier:
        """RBF SVM (C=10) on standardised MFCC statistics (13 MFCCs and their deltas: mean and
        std over time, plus length); scores are one-vs-rest decision values."""
        def make(seed: int) -> Any:
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler
            from sklearn.svm import SVC

            return make_pipeline(StandardScaler(), SVC(C=10.0, random_state=seed))

        return ClassicClassifier("rbf-svm on MFCC statistics", make, _mfcc_features, 10,
                                 int(params.get("seed", 0)))

    def perturbation(self, params: Mapping[str, Any]) -> PerturbationDomain:
        return PerturbationDomain(space="input", inputs=("spectrogram",), clip_min=0.0, clip_max=1.0,
                                  unit="dB", scale=1.0 / DB_PER_UNIT)

    def describe(self, params: Mapping[str, Any]) -> str:
        split = self._p(params, "split")
        if split == "speaker":
            split = f"speaker {self._p(params, 'holdout_speaker')} held out"
        if self._p(params, "model") == "encoder":
            return f"FSDD ({split}), encoder {self._p(params, 'size')}"
        return f"FSDD ({split}), {self._p(params, 'model')} ({self._p(params, 'activation')})"

    def corruptions(self, params: Mapping[str, Any]) -> tuple[Corruption, ...]:
        return AUDIO_CORRUPTIONS

    def corrupt(self, x: Batch, y: np.ndarray, corruption: str, level: int,
                rng: np.random.Generator, dataset: Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Audio corruptions applied to the log-mel features as the waveform corruption would
        change them (see :func:`._audio.corrupt_logmel`)."""
        feats = corrupt_logmel(x["spectrogram"], corruption, level, rng, DB_PER_UNIT)
        if "mask" in x:  # the encoder's mask follows the corrupted clip (time_shift moves its end)
            return {**x, "spectrogram": feats, "mask": frame_mask(feats)}, y
        return {**x, "spectrogram": feats}, y


def _mfcc_features(x: Batch) -> np.ndarray:
    return mfcc_stats(np.asarray(x["spectrogram"]))


# ---------------------------------------------------------------------------------------------
# Feature extraction and cache
# ---------------------------------------------------------------------------------------------


def _parse_name(path: str) -> tuple[int, str, int]:
    digit, speaker, take = Path(path).stem.split("_")
    return int(digit), speaker, int(take)


def feature_key(info: DatasetInfo, cfg: LogMelConfig = FEATURES) -> str:
    """Digest of the feature settings and of the dataset manifest (names and file digests)."""
    h = hashlib.sha256(json.dumps({"version": FEATURE_VERSION, "cfg": cfg.to_dict()},
                                  sort_keys=True).encode())
    for fe in info.files:
        h.update(f"{fe.path}={fe.sha256};".encode())
    return h.hexdigest()[:16]


def extract_features(folder: Path, info: DatasetInfo, cfg: LogMelConfig = FEATURES) -> dict[str, np.ndarray]:
    """Read every recording and compute log-mel features (a few seconds for 3,000 files)."""
    from scipy.io import wavfile

    waves, labels, speakers, takes = [], [], [], []
    for fe in info.files:
        try:
            rate, w = wavfile.read(folder / fe.path)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"cannot read {folder / fe.path}: {exc} (delete it and run: "
                               f"dlbench data fetch {info.name})") from exc
        if rate != cfg.sample_rate or w.ndim != 1:
            raise DatasetError(f"{folder / fe.path}: {rate} Hz, {w.ndim} channel(s); expected "
                               f"{cfg.sample_rate} Hz mono (run: dlbench data fetch {info.name})")
        scale = 32768.0 if w.dtype == np.int16 else 1.0
        waves.append(w.astype(np.float32) / scale)
        d, s, t = _parse_name(fe.path)
        labels.append(d)
        speakers.append(s)
        takes.append(t)
    x = log_mel(fix_length(waves, cfg.samples), cfg)
    return {"x": x, "label": np.asarray(labels, dtype=np.int64), "speaker": np.asarray(speakers),
            "take": np.asarray(takes, dtype=np.int64)}


def load_features(folder: Path) -> dict[str, np.ndarray]:
    """Features of the whole dataset, from the ``.npz`` cache or computed (and cached) now."""
    info = fsdd_info()
    return _load_features(str(folder), feature_key(info))


@functools.lru_cache(maxsize=2)
def _load_features(folder: str, key: str) -> dict[str, np.ndarray]:
    info = fsdd_info()
    cache = derived_dir(info, Path(folder).parent) / f"logmel-{key}.npz"
    if seal_state(cache) == "ok":  # unsealed, changed or unreadable: recomputed and overwritten
        try:
            with np.load(cache, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            pass
    feats = extract_features(Path(folder), info)
    with contextlib.suppress(OSError):  # caching is an optimisation
        with atomic_writer(cache) as f:
            np.savez(f, **feats)  # type: ignore[arg-type]
        seal(cache)
    return feats


@hookimpl
def dlbench_register_tasks(register: Any) -> None:
    register(SpeechTask())


@hookimpl
def dlbench_register_datasets(register: Any) -> None:
    register(fsdd_info())
