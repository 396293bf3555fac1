"""The two training recipes, with checkpoint/resume, device placement and precision choices.

* **Cross-entropy baseline** (:func:`train_ce`): encoder + classifier trained end to end with the
  baseline augmentation (pad-4 crop, flip) and softmax cross-entropy.
* **SupCon, two phases** (:func:`train_supcon`): phase 1 trains encoder + projection head on
  ``views`` augmented views of every image with ``SupConLoss``; phase 2 freezes the encoder and
  trains a classifier on its features (the linear probe by default, the original example's
  dropout MLP as an option). Phase 2 runs on features computed once from the un-augmented
  training images, which makes the probe tens of times cheaper than re-encoding augmented images
  every epoch (the paper's linear evaluation augments; on a frozen encoder the difference is small).

Both recipes share one run folder layout (``RUN_DIR``)::

    config.json          the settings of the run (a restart must use the same ones)
    checkpoints/         <phase>.json (epochs done, history) + the matching .npz of variables
    embedder.keras       pipeline + trained encoder (images -> features), reloaded by load_encoder
    metrics.json         written last, atomically: accuracies, times, history

A run interrupted at any point continues, when started again with the same ``RUN_DIR``, from its
last completed epoch: every epoch is checkpointed (model *and* optimizer state, including the
augmentation's random-number state) and each epoch's data order depends only on (seed, epoch),
so a resumed run retraces an uninterrupted one.

Defaults: SGD with momentum 0.9, linear warm-up then cosine decay, decoupled weight decay (not on
biases or batch-norm parameters), learning rate scaled linearly with the batch size. The original
example's recipe (Adam 1e-3, constant) is ``optimizer="adam"``. Mixed precision and XLA are
chosen per device (:func:`select_precision`, :func:`select_jit`), and :func:`select_strategy`
picks ``tf.distribute`` for several GPUs or a TPU; ``batch_size`` is always the global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from supcon_lib import augment, data, evaluation, losses, models, momentum, paths

__all__ = [
    "CheckpointError",
    "EpochBatches",
    "EpochCheckpointer",
    "LOSSES",
    "METHODS",
    "MergeViews",
    "OPTIMIZERS",
    "PROFILES",
    "RunConfig",
    "RunFolderBusy",
    "RunResult",
    "SplitViews",
    "accelerator_info",
    "build_ce_model",
    "build_compiled_model",
    "build_hybrid_model",
    "build_momentum_model",
    "build_supcon_model",
    "check_run_dir",
    "contrastive_loss",
    "epoch_batches",
    "epoch_order",
    "fit_epochs",
    "flip_averaged",
    "inference_model",
    "learning_rate_schedule",
    "load_data",
    "load_encoder",
    "make_dataset",
    "make_optimizer",
    "num_rows",
    "recalibrate_batch_norm",
    "run",
    "select_jit",
    "select_precision",
    "select_strategy",
    "strategy_scope",
    "train_ce",
    "train_hybrid",
    "train_supcon",
]

METHODS = ("ce", "supcon", "hybrid")
PROFILES = ("smoke", "cpu", "gpu", "full")
OPTIMIZERS = ("sgd", "adam")
LOSSES = ("supcon", "simclr", "npairs")

# Per profile, then per method. Explicit settings override these.
_PROFILE_SETTINGS = {
    # Offline, seconds: the digits that ship with scikit-learn, a small ResNet, a few epochs.
    # (Short runs need a higher rate than the linear scaling rule gives a batch of 64.)
    "smoke": {
        "common": dict(dataset="digits", encoder="resnet_small", batch_size=64, train_size=600, test_size=None,
                       learning_rate=0.2),
        "ce": dict(epochs=5),
        "supcon": dict(epochs=5, probe_epochs=30),
        "hybrid": dict(epochs=5, views=1),
    },
    # Real CIFAR-10 images on 2 CPU cores in at most 5 minutes per method (measured 2026-11-29;
    # the recipe from benchmarks/recipe_study.py, at batch 128; cross-entropy and the hybrid take
    # batch 64, twice the steps in the same time: 0.749 against 0.736 for cross-entropy in the
    # tuning runs). Evaluation averages each image with its mirror image.
    "cpu": {
        "common": dict(dataset="cifar10", encoder="resnet_small", batch_size=128, train_size=10_000, test_size=2_000,
                       flip_average=True),
        "ce": dict(epochs=27, batch_size=64, label_smoothing=0.1),
        "supcon": dict(epochs=12, probe_epochs=30),
        "hybrid": dict(epochs=27, batch_size=64, views=1, label_smoothing=0.1),
    },
    # All of CIFAR-10 in one Colab session: notebooks 04-06 within an hour on a T4 (an estimate,
    # supcon_lib.cost, with room for a factor of 1.8). Both recipes push the same number of
    # images through the encoder: 50 epochs of one view against 25 epochs of two.
    "gpu": {
        "common": dict(dataset="cifar10", encoder="resnet18", batch_size=512, train_size=None, test_size=None,
                       flip_average=True),
        "ce": dict(epochs=50, label_smoothing=0.1),
        "supcon": dict(epochs=25, probe_epochs=20),
        "hybrid": dict(epochs=50, views=1, label_smoothing=0.1),
    },
    # The paper-style schedule on all of CIFAR-10, for readers with hours of GPU time.
    "full": {
        "common": dict(dataset="cifar10", encoder="resnet18", batch_size=512, train_size=None, test_size=None,
                       flip_average=True),
        "ce": dict(epochs=200, label_smoothing=0.1),
        "supcon": dict(epochs=500, probe_epochs=50),
        "hybrid": dict(epochs=200, views=1, label_smoothing=0.1),
    },
}

# Learning rate per 256 images of batch (scaled linearly), per optimizer and method: the CIFAR
# recipes' 0.1 at batch 128 for cross-entropy, SupContrast's 0.5 at batch 1024 for SupCon.
_BASE_LEARNING_RATE = {("sgd", "ce"): 0.2, ("sgd", "supcon"): 0.125, ("sgd", "hybrid"): 0.2,
                       ("adam", "ce"): 1e-3, ("adam", "supcon"): 1e-3, ("adam", "hybrid"): 1e-3}
# Weight decay with the strength of the CIFAR recipes (5e-4 for cross-entropy, 1e-4 for SupCon, as
# in HobbitLong/SupContrast), written in Keras' convention. PyTorch's SGD, which those recipes use,
# adds wd * w to the gradient before momentum 0.9, which multiplies its steady-state effect by
# 1 / (1 - 0.9) = 10; Keras' SGD decays decoupled, w -= lr * wd * w, once per step. So Keras'
# 5e-3 is PyTorch's 5e-4 (and 1e-3 is 1e-4).
_WEIGHT_DECAY = {"ce": 5e-3, "supcon": 1e-3, "hybrid": 5e-3}


@dataclasses.dataclass
class RunConfig:
    """Every setting of a run. Build one with :meth:`from_profile`; ``None`` means "default"."""

    method: str = "supcon"
    profile: str = "smoke"
    dataset: str = "digits"
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    encoder: str = "resnet_small"
    epochs: int = 3
    probe_epochs: int = 20
    batch_size: int = 128
    temperature: float = 0.1
    views: int = 2
    seed: int = 0
    loss: str = "supcon"
    formulation: str = "out"
    augmentation: str | None = None  # default: "baseline" for ce, "supcon" for supcon
    projection_head: str = "mlp"
    projection_dim: int = 128
    classifier_head: str = "linear"
    optimizer: str = "sgd"
    learning_rate: float | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    probe_learning_rate: float = 1e-2
    precision: str = "auto"
    jit_compile: str = "auto"
    strategy: str = "auto"
    knn_k: int = 20
    label_smoothing: float = 0.0  # ce, hybrid: the cross-entropy's target smoothing
    flip_average: bool = False  # evaluate on the mean of each image's and its mirror image's outputs
    supcon_weight: float = 1.0  # hybrid: loss = cross-entropy + supcon_weight * SupCon
    queue_size: int = 0  # supcon: > 0 adds a momentum encoder and a queue of this many keys
    key_momentum: float = 0.99  # supcon with a queue: how slowly the key encoder follows
    verbose: int | str = "auto"

    @classmethod
    def from_profile(cls, profile="smoke", method="supcon", **overrides):
        """The profile's settings for ``method``, with ``overrides`` (``None`` values ignored)."""
        if profile not in _PROFILE_SETTINGS:
            raise ValueError(f"unknown profile {profile!r}; expected one of {list(PROFILES)}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
        settings = {**_PROFILE_SETTINGS[profile]["common"], **_PROFILE_SETTINGS[profile][method]}
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if profile == "cpu" and settings.get("dataset") == "cifar10" and settings.get("data_dir") is None \
                and not os.environ.get(data.CIFAR10_ENV_VAR):
            # In a development checkout the 12,000-image subset next to it is the cpu profile's data.
            shared = paths.shared_cifar10_dir()
            settings["data_dir"] = str(shared) if shared is not None else None
        config = cls(method=method, profile=profile, **settings)
        config.validate()
        return config

    # -- derived values --------------------------------------------------------------------
    @property
    def augmentation_kind(self):
        return self.augmentation or ("supcon" if self.method == "supcon" else "baseline")

    @property
    def base_learning_rate(self):
        if self.learning_rate is not None:
            return self.learning_rate
        base = _BASE_LEARNING_RATE[(self.optimizer, self.method)]
        return base * self.batch_size / 256 if self.optimizer == "sgd" else base

    @property
    def decay(self):
        if self.weight_decay is not None:
            return self.weight_decay
        return _WEIGHT_DECAY[self.method] if self.optimizer == "sgd" else 0.0

    def validate(self):
        """Raise ValueError naming the first setting that is out of range."""
        def need(condition, message):
            if not condition:
                raise ValueError(message)

        need(self.method in METHODS, f"method must be one of {list(METHODS)}, found {self.method!r}")
        need(self.dataset in ("cifar10", "digits"), f"dataset must be 'cifar10' or 'digits', found {self.dataset!r}")
        need(self.encoder in models.ENCODERS, f"encoder must be one of {list(models.ENCODERS)}, found {self.encoder!r}")
        for name in ("epochs", "batch_size", "views", "projection_dim", "knn_k"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a positive integer, found {value!r}")
        need(isinstance(self.probe_epochs, int) and self.probe_epochs >= 1,
             f"probe_epochs must be a positive integer, found {self.probe_epochs!r}")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, int) and value >= 10),
                 f"{name} must be an integer >= 10 (one image per class at least), found {value!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative integer, found {self.seed!r}")
        need(self.loss in LOSSES, f"loss must be one of {list(LOSSES)}, found {self.loss!r}")
        need(self.formulation in losses.FORMULATIONS,
             f"formulation must be one of {list(losses.FORMULATIONS)}, found {self.formulation!r}")
        try:  # the loss's own checks of the temperature (finite, not so small that float32 fails)
            contrastive_loss(self)
        except (ValueError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        need(self.loss != "simclr" or self.views >= 2,
             f"the simclr loss needs two views or more (one view has no positive); found views={self.views}")
        need(self.loss != "npairs" or self.views == 1,
             f"the npairs loss of the original example uses one view per image; found views={self.views}")
        need(isinstance(self.label_smoothing, (int, float)) and not isinstance(self.label_smoothing, bool)
             and 0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), found {self.label_smoothing!r}")
        need(isinstance(self.flip_average, bool), f"flip_average must be True or False, found {self.flip_average!r}")
        need(isinstance(self.supcon_weight, (int, float)) and not isinstance(self.supcon_weight, bool)
             and math.isfinite(self.supcon_weight) and self.supcon_weight >= 0,
             f"supcon_weight must be a finite number >= 0, found {self.supcon_weight!r}")
        need(isinstance(self.queue_size, int) and not isinstance(self.queue_size, bool) and self.queue_size >= 0,
             f"queue_size must be a non-negative integer, found {self.queue_size!r}")
        need(isinstance(self.key_momentum, (int, float)) and 0 <= self.key_momentum < 1,
             f"key_momentum must be in [0, 1), found {self.key_momentum!r}")
        if self.queue_size:
            need(self.method == "supcon" and self.loss == "supcon" and self.formulation == "out",
                 "queue_size > 0 (a momentum encoder and a queue) goes with method supcon, loss supcon, "
                 f"formulation out; found method {self.method!r}, loss {self.loss!r}, formulation {self.formulation!r}")
            need(self.views == 2, f"the momentum encoder uses two views (queries and keys); found views={self.views}")
            need(self.queue_size >= self.batch_size,
                 f"queue_size ({self.queue_size}) must be at least the batch size ({self.batch_size})")
            need(self.strategy in ("auto", "default"),
                 f"the queue lives on one device: strategy must be auto or default, found {self.strategy!r}")
        need(self.augmentation_kind in augment.PIPELINES,
             f"augmentation must be one of {sorted(augment.PIPELINES)}, found {self.augmentation!r}")
        need(self.projection_head in models.PROJECTION_HEADS,
             f"projection_head must be one of {list(models.PROJECTION_HEADS)}, found {self.projection_head!r}")
        need(self.classifier_head in models.CLASSIFIER_HEADS,
             f"classifier_head must be one of {list(models.CLASSIFIER_HEADS)}, found {self.classifier_head!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {list(OPTIMIZERS)}, found {self.optimizer!r}")
        need(self.learning_rate is None or self.learning_rate > 0, f"learning_rate must be > 0, found {self.learning_rate}")
        need(self.precision in ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
             f"precision must be auto, float32, mixed_float16 or mixed_bfloat16, found {self.precision!r}")
        need(self.jit_compile in ("auto", "on", "off"), f"jit_compile must be auto, on or off, found {self.jit_compile!r}")
        need(self.strategy in ("auto", "default", "mirrored", "tpu"),
             f"strategy must be auto, default, mirrored or tpu, found {self.strategy!r}")
        return self

    def to_dict(self):
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# Device choices (the only TensorFlow-specific code besides the input pipeline)
# ------------------------------------------------------------------------------------------------
def accelerator_info():
    """``(kind, capabilities)`` for the active Keras backend: ``kind`` is ``"tpu"``, ``"gpu"`` or
    ``"cpu"``; ``capabilities`` a list of floats, the compute capability of each visible GPU
    (e.g. 7.5 for a T4; empty otherwise)."""

    if keras.backend.backend() == "jax":
        import jax

        platform = jax.devices()[0].platform
        if platform == "gpu":
            capabilities = [float(getattr(d, "compute_capability", "0") or 0) for d in jax.devices()]
            return "gpu", capabilities
        return platform, []
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu", []
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = []
        for gpu in gpus:
            major_minor = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            capabilities.append(major_minor[0] + major_minor[1] / 10)
        return "gpu", capabilities
    return "cpu", []


def select_precision(requested="auto"):
    """Keras dtype policy: bfloat16 on A100/H100-class GPUs (compute capability >= 8) and TPUs,
    float16 on T4/V100-class GPUs (7.x), float32 on CPUs, where reduced precision only slows."""
    if requested != "auto":
        return requested
    kind, capabilities = accelerator_info()
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind == "gpu" and capabilities:
        return "mixed_bfloat16" if min(capabilities) >= 8 else "mixed_float16" if min(capabilities) >= 7 else "float32"
    return "float32"


def select_jit(requested="auto"):
    """Whether ``fit`` compiles its steps with XLA: always on JAX (without it, ``jax.jit`` is off
    and every operation runs on its own), and on GPUs and TPUs with TensorFlow. TensorFlow on a
    CPU runs its own graph instead: ``benchmarks/compile_modes.py`` measures both choices."""
    if requested != "auto":
        return requested == "on"
    return keras.backend.backend() == "jax" or accelerator_info()[0] in ("gpu", "tpu")


def select_strategy(requested="auto"):
    """``tf.distribute`` strategy: TPUStrategy on a Colab TPU, MirroredStrategy on several GPUs,
    the default (one device) otherwise. Other Keras backends get ``None`` (no strategy scope)."""

    if keras.backend.backend() != "tensorflow":
        if requested in ("mirrored", "tpu"):
            raise ValueError(f"strategy {requested!r} needs the TensorFlow backend")
        return None
    import tensorflow as tf

    if requested == "tpu" or (requested == "auto" and os.environ.get("COLAB_TPU_ADDR")):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "mirrored" or (requested == "auto" and len(gpus) > 1):
        # Every GPU; without GPUs, every (logical) CPU device, as the multi-device tests use.
        devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def strategy_scope(strategy):
    """``strategy.scope()`` when there is a strategy, a no-op context otherwise."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------
# Input pipeline
# ------------------------------------------------------------------------------------------------
def epoch_order(num_items, seed, epoch):
    """The shuffled order of one epoch: a function of (seed, epoch) only, so resumes retrace.

    Plain NumPy (a PCG64 stream seeded by ``[seed, epoch]``), so every backend's input pipeline
    visits the data in the same order and no TensorFlow is needed to compute it.
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(num_items))


def epoch_batches(num_items, batch_size, seed, epoch):
    """(steps, batch_size) indices of one epoch: its :func:`epoch_order` cut into full batches,
    the batches a run with this seed and batch size trains on in that epoch."""
    steps = num_items // batch_size
    return epoch_order(num_items, seed, epoch)[: steps * batch_size].reshape(steps, batch_size)


def make_dataset(inputs, labels, batch_size, seed=0, first_epoch=0, last_epoch=1, shuffle=True):
    """Batches of in-memory arrays for epochs ``first_epoch .. last_epoch - 1``, ready for ``fit``.

    With ``shuffle`` each epoch visits the items in :func:`epoch_order` and yields only full
    batches (``len(inputs) // batch_size`` of them); without, one pass in order, last batch partial.
    On the TensorFlow backend this is a ``tf.data`` pipeline (which ``tf.distribute`` can split
    between replicas); on the others a :class:`EpochBatches` (a ``keras.utils.PyDataset``).
    """
    num_items = num_rows(inputs)
    batch_size = min(batch_size, num_items)
    if keras.backend.backend() != "tensorflow":
        return EpochBatches(inputs, labels, batch_size, seed, first_epoch, last_epoch, shuffle)
    import tensorflow as tf

    if not shuffle:
        return tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    steps = num_items // batch_size
    inputs, labels = tf.nest.map_structure(tf.constant, inputs), tf.constant(labels)

    def batches_of_epoch(epoch):
        index = tf.numpy_function(lambda e: epoch_batches(num_items, batch_size, seed, e), [epoch], tf.int64,
                                  stateful=False)
        return tf.ensure_shape(index, (steps, batch_size))

    # map + unbatch (not flat_map over a batched dataset): tf.distribute's rebatching then splits
    # whole batches between replicas and never rewrites the index batches themselves.
    batches = tf.data.Dataset.range(first_epoch, last_epoch).map(batches_of_epoch).unbatch()
    return batches.map(lambda index: (tf.nest.map_structure(lambda a: tf.gather(a, index), inputs),
                                      tf.gather(labels, index)),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def num_rows(inputs):
    """The number of items in ``inputs``: an array, or a tuple of arrays of one length (a model
    with several inputs, such as the momentum encoder's (images, labels))."""
    if isinstance(inputs, tuple):
        lengths = {len(part) for part in inputs}
        if len(lengths) != 1:
            raise ValueError(f"the inputs have different lengths: {sorted(lengths)}")
        return lengths.pop()
    return len(inputs)


class EpochBatches(keras.utils.PyDataset):
    """The input pipeline of the backends without ``tf.data`` (JAX, PyTorch): like the
    ``tf.data`` one, a single stream of the batches of epochs ``first_epoch .. last_epoch - 1``,
    item ``i`` being batch ``i % steps`` of epoch ``first_epoch + i // steps`` in
    :func:`epoch_order`.

    Every item is a pure function of its index. (Counting ``on_epoch_end`` calls instead would go
    wrong: Keras also calls it after peeking at a batch to build the model.) ``fit`` must get
    ``steps_per_epoch`` (so it keeps one iterator across epochs) and ``shuffle=False`` (so it does
    not reorder the batches), as :func:`fit_epochs` does. Without ``shuffle``: one pass in order,
    the last batch partial.
    """

    def __init__(self, inputs, labels, batch_size, seed=0, first_epoch=0, last_epoch=1, shuffle=True):
        super().__init__()
        self.inputs = tuple(map(np.asarray, inputs)) if isinstance(inputs, tuple) else np.asarray(inputs)
        self.labels, self.num_items = np.asarray(labels), num_rows(inputs)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.first_epoch, self.last_epoch = int(first_epoch), int(last_epoch)
        self.steps = self.num_items // self.batch_size if shuffle else -(-self.num_items // self.batch_size)
        self._epoch, self._order = None, None  # the epoch being read and its (steps, batch_size) indices

    def __len__(self):
        return self.steps * (self.last_epoch - self.first_epoch) if self.shuffle else self.steps

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if not self.shuffle:
            items = slice(index * self.batch_size, (index + 1) * self.batch_size)
        else:
            epoch, step = self.first_epoch + index // self.steps, index % self.steps
            if epoch != self._epoch:  # fit reads in order: one permutation per epoch
                self._epoch, self._order = epoch, epoch_batches(self.num_items, self.batch_size, self.seed, epoch)
            items = self._order[step]
        if isinstance(self.inputs, tuple):
            return tuple(part[items] for part in self.inputs), self.labels[items]
        return self.inputs[items], self.labels[items]


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def learning_rate_schedule(config, steps_per_epoch, epochs, learning_rate=None, kind=None):
    """SGD: linear warm-up (10% of the epochs, at most 10) to the peak, then cosine decay to 0.
    Adam (the original example's recipe): the constant rate."""
    kind = kind or config.optimizer
    learning_rate = learning_rate if learning_rate is not None else config.base_learning_rate
    if kind == "adam":
        return float(learning_rate)
    total_steps = max(1, steps_per_epoch * epochs)
    warmup_epochs = config.warmup_epochs if config.warmup_epochs is not None else min(10, 0.1 * epochs)
    warmup_steps = min(total_steps - 1, int(round(warmup_epochs * steps_per_epoch)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warmup_steps else learning_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(config, steps_per_epoch, epochs, learning_rate=None, weight_decay=None, kind=None):
    """SGD + momentum with warm-up and cosine decay (default), or constant-rate Adam."""

    kind = kind or config.optimizer
    weight_decay = weight_decay if weight_decay is not None else config.decay
    schedule = learning_rate_schedule(config, steps_per_epoch, epochs, learning_rate, kind)
    if kind == "adam":
        optimizer = keras.optimizers.Adam(schedule, weight_decay=weight_decay or None)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay or None)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def _augmentation(config, train_images):
    return augment.build_pipeline(config.augmentation_kind, train_images=train_images, seed=config.seed)


class MergeViews(keras.layers.Layer):
    """(B, V, ...) -> (B * V, ...): all views of a batch through the encoder in one pass."""

    def call(self, views):
        return ops.reshape(views, (-1, *views.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * input_shape[1]
        return (batch, *input_shape[2:])


class SplitViews(keras.layers.Layer):
    """(B * V, D) -> (B, V, D), the inverse of :class:`MergeViews` for the projections."""

    def __init__(self, num_views, **kwargs):
        super().__init__(**kwargs)
        self.num_views = int(num_views)

    def call(self, projections):
        return ops.reshape(projections, (-1, self.num_views, projections.shape[-1]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.num_views
        return (batch, self.num_views, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_views": self.num_views}


def build_ce_model(config, train_images, num_classes):
    """images (uint8) -> augmentation -> encoder -> classifier logits; returns (model, encoder, pipeline)."""

    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    head = models.build_classifier_head(config.classifier_head, encoder.output_shape[-1], num_classes)
    inputs = keras.Input(train_images.shape[1:], name="images")
    logits = head(encoder(pipeline(inputs)))
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(inputs, logits, name="ce_classifier"), encoder, pipeline


def build_supcon_model(config, train_images):
    """images -> V views -> encoder -> projection head -> (B, V, projection_dim); returns
    (model, encoder, pipeline). With ``views=1`` (npairs) the output is (B, projection_dim)."""
    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    head = models.build_projection_head(config.projection_head, encoder.output_shape[-1], config.projection_dim)
    image_shape = tuple(train_images.shape[1:])
    inputs = keras.Input(image_shape, name="images")
    views = augment.MultiView(pipeline, config.views, name="views")(inputs)  # (B, V, H, W, C)
    flat = MergeViews(name="merge_views")(views)  # (B * V, H, W, C): one encoder pass for all views
    projections = SplitViews(config.views, name="split_views")(head(encoder(flat)))  # (B, V, P)
    if config.loss == "npairs":
        projections = keras.layers.Reshape((config.projection_dim,), name="single_view")(projections)
    projections = keras.layers.Activation("linear", dtype="float32", name="projections")(projections)
    return keras.Model(inputs, projections, name="supcon_pretraining"), encoder, pipeline


def build_hybrid_model(config, train_images, num_classes):
    """images -> V views -> encoder -> [classifier logits (B, V, C) | projections (B, V, P)],
    side by side in one output for :class:`losses.HybridLoss`; returns (model, encoder, pipeline).
    The classifier head is the layer named ``classifier_head``."""
    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    features = encoder.output_shape[-1]
    classifier = models.build_classifier_head(config.classifier_head, features, num_classes)
    head = models.build_projection_head(config.projection_head, features, config.projection_dim)
    inputs = keras.Input(train_images.shape[1:], name="images")
    views = augment.MultiView(pipeline, config.views, name="views")(inputs)
    encoded = encoder(MergeViews(name="merge_views")(views))  # (B * V, F)
    both = keras.layers.Concatenate(name="logits_and_projections")([classifier(encoded), head(encoded)])
    both = SplitViews(config.views, name="split_views")(both)  # (B, V, C + P)
    both = keras.layers.Activation("linear", dtype="float32", name="outputs")(both)
    return keras.Model(inputs, both, name="hybrid"), encoder, pipeline


def build_momentum_model(config, train_images):
    """SupCon with a momentum encoder and a label queue (:class:`momentum.MomentumSupCon`), input
    ``(images, labels)``; returns (model, encoder, pipeline)."""
    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    head = models.build_projection_head(config.projection_head, encoder.output_shape[-1], config.projection_dim)
    model = momentum.MomentumSupCon(pipeline, encoder, head, config.queue_size, config.key_momentum,
                                    config.temperature, name="supcon_momentum")
    model.build(((None, *train_images.shape[1:]), (None,)))
    return model, encoder, pipeline


def contrastive_loss(config):
    """The phase-1 loss a SupCon config asks for (``SupConLoss``, SimCLR's, or ``NPairsLoss``)."""
    if config.loss == "npairs":
        return losses.NPairsLoss(config.temperature)
    return losses.SupConLoss(config.temperature, config.formulation, use_labels=config.loss == "supcon")


def build_compiled_model(config, train_images, num_classes, steps_per_epoch, jit_compile):
    """The model of ``config.method`` compiled as :func:`run` compiles it (call it inside the
    strategy's scope, if any); returns (model, encoder, pipeline)."""
    optimizer = make_optimizer(config, steps_per_epoch, config.epochs)
    if config.method == "ce":
        model, encoder, pipeline = build_ce_model(config, train_images, num_classes)
        model.compile(optimizer=optimizer, loss=losses.SparseCrossEntropy(config.label_smoothing),
                      metrics=["accuracy"], jit_compile=jit_compile)
    elif config.method == "hybrid":
        model, encoder, pipeline = build_hybrid_model(config, train_images, num_classes)
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      loss=losses.HybridLoss(num_classes, config.supcon_weight, config.temperature,
                                             config.label_smoothing))
    elif config.queue_size:
        model, encoder, pipeline = build_momentum_model(config, train_images)
        model.compile(optimizer=optimizer, jit_compile=jit_compile)  # the model adds its loss
    else:
        model, encoder, pipeline = build_supcon_model(config, train_images)
        model.compile(optimizer=optimizer, loss=contrastive_loss(config), jit_compile=jit_compile)
    return model, encoder, pipeline


# ------------------------------------------------------------------------------------------------
# Checkpointed epochs
# ------------------------------------------------------------------------------------------------
def _atomic_write_text(path, text):
    """Write ``text`` to ``path`` whole or not at all: a temporary file, then a rename. An error
    (or Ctrl-C) on the way leaves the old file as it was and removes the temporary one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path, value):
    _atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _state_variables(model):
    """Every variable a resume needs: weights, batch-norm statistics, RNG states, optimizer slots."""
    return list(model.variables) + list(model.optimizer.variables)


class CheckpointError(ValueError):
    """A checkpoint that a run cannot resume from: damaged, incomplete, or another model's."""


def _checkpoint_keys(variables):
    """The name each variable is saved under: its ``path`` (``resnet_small/stem_conv/kernel``,
    ``sgd/iteration``, ...), made unique with ``#2``, ``#3``, ... should two share one."""
    keys, seen = [], {}
    for variable in variables:
        path = str(variable.path)
        seen[path] = seen.get(path, 0) + 1
        keys.append(path if seen[path] == 1 else f"{path}#{seen[path]}")
    return keys


def _without_numbering(key):
    """``key`` without the ``_<n>`` suffixes Keras gives automatic names (``sgd_1``, ``dense_3``,
    ``seed_generator_2``): they change each time a model is built again in one Python session."""
    import re

    return re.sub(r"_\d+(?=[/_#]|$)", "", key)


class EpochCheckpointer:
    """Saves (variables, epochs done, history) after each epoch of one phase; restores them.

    The ``.json`` file is the commit marker: it is replaced atomically after the ``.npz`` it
    names has been written completely, so a kill at any moment leaves the last complete epoch.
    The ``.npz`` holds every variable under its path (:func:`_checkpoint_keys`); a checkpoint
    whose variables are not the model's is refused (:class:`CheckpointError`) naming the first
    one that differs. Files written by earlier versions, keyed ``v0, v1, ...`` by position, are
    still read, matched by position and shape.
    """

    def __init__(self, run_dir, phase):
        self.folder = Path(run_dir) / "checkpoints"
        self.phase = phase
        self.marker = self.folder / f"{phase}.json"

    def _refuse(self, problem):
        return CheckpointError(f"{self.marker}: {problem}. The run cannot resume from it: use another output "
                               f"folder, or delete {self.folder.parent} to start this run again")

    def _state(self):
        """The marker's contents, checked (its ``.npz`` exists); None before the first epoch."""
        if not self.marker.exists():
            return None
        try:
            state = json.loads(self.marker.read_text())
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise self._refuse(f"unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict):
            raise self._refuse(f"expected a JSON object, found {type(state).__name__}")
        done, history, file = state.get("epochs_done"), state.get("history"), state.get("file")
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise self._refuse(f"epochs_done must be a non-negative integer, found {done!r}")
        if not isinstance(history, dict) or not all(
                isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                for values in history.values()):
            raise self._refuse("history must map each metric to a list of numbers")
        if not isinstance(file, str) or Path(file).name != file or not file.endswith(".npz"):
            raise self._refuse(f"file must name an .npz file in {self.folder}, found {file!r}")
        if not (self.folder / file).is_file():
            raise self._refuse(f"the variables file it names, {file}, is missing")
        return state

    def epochs_done(self):
        """The epochs this phase has completed (0 before the first); checks the checkpoint."""
        state = self._state()
        return 0 if state is None else state["epochs_done"]

    def _remove_leftovers(self, keep):
        """What a killed session may leave behind: temporaries, and an epoch's variables written
        but never committed by the marker (the next session writes that epoch again)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.glob(f"{self.phase}-epoch*.npz"):
            if path.name != keep:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(f".{self.phase}-epoch*.tmp.npz"):
            path.unlink(missing_ok=True)
        (self.folder / f".{self.marker.name}.tmp").unlink(missing_ok=True)

    def load(self, model):
        """Restore the last completed epoch into ``model``; return (epochs_done, history).

        Removes what a killed session left half-written. Raises :class:`CheckpointError` (and
        changes no variable) when the checkpoint is damaged or its variables are not the model's.
        """
        import zipfile

        state = self._state()
        if state is None:
            self._remove_leftovers(keep=None)
            return 0, {}
        try:
            with np.load(self.folder / state["file"]) as stored:
                saved = {key: stored[key] for key in stored.files}  # in the order they were written
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self._refuse(f"its variables file {state['file']} is unreadable ({type(exc).__name__}: {exc})") from None
        if not model.optimizer.built:  # its slots belong to the model's strategy (TensorFlow), if any
            with strategy_scope(getattr(model, "distribute_strategy", None)):
                model.optimizer.build(model.trainable_variables)
        variables = _state_variables(model)
        keys = _checkpoint_keys(variables)
        saved_keys = list(saved)
        if set(saved_keys) == set(keys):  # by path
            values = [saved[key] for key in keys]
        elif saved_keys == [f"v{i}" for i in range(len(saved_keys))]:  # an earlier version's file: by position
            if len(saved_keys) != len(variables):
                raise self._refuse(f"it holds {len(saved_keys)} variables (an earlier version's file, by position) "
                                   f"but the model has {len(variables)}")
            values = [saved[key] for key in saved_keys]
        else:  # the same model built again in this session: the same paths up to Keras' numbering, in order
            for index in range(max(len(keys), len(saved_keys))):
                key = keys[index] if index < len(keys) else None
                stored_key = saved_keys[index] if index < len(saved_keys) else None
                if key is None or stored_key is None or _without_numbering(key) != _without_numbering(stored_key):
                    break
            else:
                index = None
            if index is not None:
                if key is None:
                    problem = f"it holds {stored_key!r}, which the model does not have"
                elif stored_key is None:
                    problem = f"the model's variable {key!r} is not in it"
                else:
                    problem = f"the first variable that differs is {key!r} in the model, {stored_key!r} in the checkpoint"
                raise self._refuse(f"its variables are not the model's: {problem}")
            values = [saved[key] for key in saved_keys]
        for key, variable, value in zip(keys, variables, values):
            if tuple(value.shape) != tuple(variable.shape):
                raise self._refuse(f"its variables are not the model's: {key!r} has shape {tuple(value.shape)} "
                                   f"there and {tuple(variable.shape)} in the model")
        for variable, value in zip(variables, values):
            variable.assign(value)
        self._remove_leftovers(keep=state["file"])
        return state["epochs_done"], state["history"]

    def save(self, model, epochs_done, history):
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{self.phase}-epoch{epochs_done:04d}.npz"
        tmp = self.folder / f".{name}.tmp.npz"
        variables = _state_variables(model)
        arrays = {key: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                  for key, v in zip(_checkpoint_keys(variables), variables)}
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, self.folder / name)
        except BaseException:  # an error or Ctrl-C: no half-written file is left (a kill may leave one;
            tmp.unlink(missing_ok=True)  # the next load removes it)
            raise
        previous = json.loads(self.marker.read_text())["file"] if self.marker.exists() else None
        _write_json(self.marker, {"epochs_done": epochs_done, "history": history, "file": name})
        if previous and previous != name:
            (self.folder / previous).unlink(missing_ok=True)


class _CheckpointEachEpoch(keras.callbacks.Callback):
    """Records the epoch's logs and wall time, then checkpoints (the last thing an epoch does)."""

    def __init__(self, checkpointer, history):
        super().__init__()
        self.checkpointer, self.history = checkpointer, history

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.history.setdefault("seconds", []).append(time.perf_counter() - self.started)
        self.checkpointer.save(self.model, epoch + 1, self.history)


def fit_epochs(model, inputs, labels, batch_size, seed, epochs, run_dir, phase, callbacks=(), verbose="auto"):
    """Train ``model`` on (inputs, labels) up to ``epochs`` epochs, checkpointing every epoch.

    Resumes after the last completed epoch found in ``run_dir``. Returns the history
    ``{metric: [value per epoch]}`` of all epochs, earlier sessions' included. ``verbose="auto"``
    shows Keras' progress bar in a terminal and one line per epoch elsewhere (a notebook, a log).
    """
    if verbose == "auto":
        verbose = "auto" if sys.stdout.isatty() else 2
    checkpointer = EpochCheckpointer(run_dir, phase)
    done, history = checkpointer.load(model)
    if done:
        print(f"[{phase}] {done} of {epochs} epochs already done (from {checkpointer.marker})")
    if done < epochs:
        batch_size = min(batch_size, num_rows(inputs))
        model.fit(make_dataset(inputs, labels, batch_size, seed, done, epochs),
                  initial_epoch=done, epochs=epochs, steps_per_epoch=num_rows(inputs) // batch_size,
                  callbacks=[*callbacks, _CheckpointEachEpoch(checkpointer, history)], verbose=verbose,
                  shuffle=False)  # the dataset is already shuffled, per epoch
    return history


def _earlier_seconds(history, done_before):
    return float(sum(history.get("seconds", [])[:done_before]))


# ------------------------------------------------------------------------------------------------
# The recipes
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    """What a run leaves behind: its metrics, and the trained parts for further use."""

    metrics: dict
    encoder: object
    pipeline: object
    classifier: object
    run_dir: Path
    #: images -> features at inference (pipeline + encoder), one model for every call, so that
    #: ``predict`` is traced once; built from ``pipeline`` and ``encoder`` when not given.
    embedder: object = None

    def __post_init__(self):
        if self.embedder is None:
            self.embedder = inference_model(self.pipeline, self.encoder)

    def _outputs(self, model, images, batch_size):
        if self.metrics.get("flip_average"):
            return flip_averaged(model, images, batch_size)
        return evaluation.extract_embeddings(model, images, batch_size)

    def embed(self, images, batch_size=256):
        """Encoder features of ``images`` (no augmentation: the pipeline at inference; averaged
        with the mirror images' when the run was evaluated so)."""
        return self._outputs(self.embedder, images, batch_size)

    def predict(self, images, batch_size=256):
        """Predicted classes of ``images``: the classifier (CE) or the probe on the encoder (SupCon)."""
        if self.metrics["method"] != "supcon":  # ce, hybrid: images -> logits
            logits = self._outputs(self.classifier, images, batch_size)
        else:
            logits = evaluation.extract_embeddings(self.classifier, self.embed(images, batch_size), 1024)
        return np.argmax(logits, axis=1)


def _saved_settings(config):
    return {k: v for k, v in config.to_dict().items() if k != "verbose"}


def check_run_dir(run_dir, config):
    """Raise ValueError if ``run_dir`` holds a run with other settings (resuming needs the same),
    an unreadable ``config.json``, or a damaged checkpoint (:class:`CheckpointError`): all of it
    before anything is written."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir} exists and is not a folder")
    config_path = run_dir / "config.json"
    if config_path.exists():
        try:
            existing = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"{config_path}: unreadable ({type(exc).__name__}: {exc}); "
                             "use another output folder") from None
        if not isinstance(existing, dict):
            raise ValueError(f"{config_path}: not the settings of a run (a JSON object), but a "
                             f"{type(existing).__name__}; use another output folder")
        existing.pop("verbose", None)
        wanted = _saved_settings(config)
        different = sorted(k for k in set(wanted) | set(existing) if wanted.get(k) != existing.get(k))
        if different:
            raise ValueError(
                f"{run_dir} holds a run with other settings ({', '.join(different)}); "
                "use another output folder, or the same settings to resume it"
            )
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir():
        for marker in sorted(checkpoints.glob("*.json")):
            EpochCheckpointer(run_dir, marker.stem).epochs_done()  # raises CheckpointError if damaged


def _prepare_run_dir(run_dir, config):
    run_dir = Path(run_dir)
    check_run_dir(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if not config_path.exists():  # a resumed run's (checked above) stays as it is
        _write_json(config_path, _saved_settings(config))
    return run_dir


def load_data(config):
    """The train/test arrays and class names a config asks for."""
    (x_train, y_train), (x_test, y_test) = data.load_dataset(
        config.dataset, config.data_dir, config.train_size, config.test_size, seed=config.seed)
    return (x_train, y_train), (x_test, y_test), data.class_names(config.dataset, config.data_dir)


def _set_up(config):
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(select_precision(config.precision))
    return previous_policy


def run(config, run_dir, callbacks=(), arrays=None):
    """Run ``config`` (either method) into ``run_dir``; returns a :class:`RunResult`.

    ``arrays`` may pass ``((x_train, y_train), (x_test, y_test), class_names)`` already loaded.
    """

    config.validate()
    started = time.perf_counter()
    (x_train, y_train), (x_test, y_test), class_names = arrays if arrays is not None else load_data(config)
    run_dir = _prepare_run_dir(run_dir, config)
    with _RunLock(run_dir):
        return _run_locked(config, run_dir, callbacks, started, x_train, y_train, x_test, y_test, class_names)


class RunFolderBusy(RuntimeError):
    """The run folder is locked by another training process."""


class _RunLock:
    """An exclusive lock on a run folder: two processes never train into the same one.

    While a run holds the folder, ``RUN_DIR/.lock`` exists and carries an advisory ``flock``,
    which the system releases when the process ends, however it ends (a kill included): a lock
    file left behind by a killed run never blocks the next one. A run that ends removes the file
    (while it still holds the lock; whoever locked the removed file tries again on a new one).
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / ".lock"
        self.handle = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; single use is the user's job there
            return self
        while True:
            handle = open(self.path, "a")  # "a": never truncates a file another process holds
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise RunFolderBusy(f"{self.path.parent} is in use by another training process (it holds "
                                    f"{self.path.name}); wait for it to end, or use another output folder") from None
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(handle.fileno()).st_ino:
                self.handle = handle
                return self
            handle.close()  # locked a file that its holder removed when it ended: lock the new one

    def __exit__(self, *exc):
        if self.handle is not None:
            self.path.unlink(missing_ok=True)  # before the lock is released (see the class docstring)
            self.handle.close()  # closing releases the lock
            self.handle = None
        return False


def _run_locked(config, run_dir, callbacks, started, x_train, y_train, x_test, y_test, class_names):
    previous_policy = _set_up(config)
    try:
        strategy = select_strategy(config.strategy)
        jit = select_jit(config.jit_compile)
        num_classes = len(class_names)
        steps = max(1, len(x_train) // min(config.batch_size, len(x_train)))
        history = {}
        with strategy_scope(strategy):
            model, encoder, pipeline = build_compiled_model(config, x_train, num_classes, steps, jit)
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            _synchronize_batch_norm(encoder)
        phase = "pretrain" if config.method == "supcon" else "train"
        resumed = {name: EpochCheckpointer(run_dir, name).epochs_done() for name in (phase, "probe")}
        inputs = (x_train, y_train) if config.queue_size else x_train  # the queue stores labels
        history[phase] = fit_epochs(model, inputs, y_train, config.batch_size, config.seed,
                                    config.epochs, run_dir, phase, callbacks, config.verbose)

        # Replace batch norm's running averages by the statistics of the final weights.
        recalibrate_batch_norm(encoder, x_train, pipeline, config.batch_size)

        embedder = inference_model(pipeline, encoder)
        outputs = flip_averaged if config.flip_average else evaluation.extract_embeddings
        train_embeddings = outputs(embedder, x_train)
        test_embeddings = outputs(embedder, x_test)
        if config.method != "supcon":  # trained end to end: images -> logits
            classifier = model if config.method == "ce" else keras.Sequential(
                [pipeline, encoder, model.get_layer("classifier_head")], name="hybrid_classifier")
            test_logits = outputs(classifier, x_test, 256)
        else:
            classifier, history["probe"] = _train_probe(
                config, train_embeddings, y_train, num_classes, run_dir, strategy, callbacks)
            test_logits = evaluation.extract_embeddings(classifier, test_embeddings, 1024)
        test_predictions = np.argmax(test_logits, axis=1)
        _save_atomically(embedder, run_dir / "embedder.keras")
        metrics = {
            "method": config.method, "dataset": config.dataset, "encoder": config.encoder,
            "profile": config.profile,
            "loss": {"ce": "cross_entropy", "hybrid": "cross_entropy+supcon"}.get(config.method, config.loss),
            "queue_size": config.queue_size if config.method == "supcon" else None,
            "train_size": int(len(x_train)), "test_size": int(len(x_test)),
            "epochs": config.epochs, "probe_epochs": config.probe_epochs if config.method == "supcon" else None,
            "batch_size": config.batch_size, "views": config.views if config.method != "ce" else 1,
            "temperature": config.temperature if config.method != "ce" else None,
            "seed": config.seed, "flip_average": config.flip_average,
            "label_smoothing": config.label_smoothing if config.method != "supcon" else None,
            "supcon_weight": config.supcon_weight if config.method == "hybrid" else None,
            "test_accuracy": float(evaluation.accuracy(y_test, test_predictions)),
            "knn_accuracy": float(evaluation.knn_accuracy(
                train_embeddings, y_train, test_embeddings, y_test, k=min(config.knn_k, len(x_train)))),
            # Wall time of the whole run: this session, plus the epochs of earlier sessions.
            "train_seconds": time.perf_counter() - started + sum(
                _earlier_seconds(history.get(name, {}), done) for name, done in resumed.items()),
            "precision": keras.config.dtype_policy().name, "jit_compile": jit,
            "replicas": int(getattr(strategy, "num_replicas_in_sync", 1)) if strategy is not None else 1,
            "backend": keras.backend.backend(),
            "history": history,
            "class_names": list(class_names),
        }
        _write_json(run_dir / "metrics.json", metrics)
        return RunResult(metrics, encoder, pipeline, classifier, run_dir, embedder)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def flip_averaged(model, images, batch_size=256):
    """The mean of ``model``'s outputs for ``images`` and for their mirror images (left-right),
    a cheap test-time augmentation: (N, H, W, C) images -> (N, ...) float32 outputs."""
    images = np.asarray(images)
    return 0.5 * (evaluation.extract_embeddings(model, images, batch_size)
                  + evaluation.extract_embeddings(model, images[:, :, ::-1], batch_size))


def _synchronize_batch_norm(encoder):
    """Batch statistics over the global batch, not each replica's share (TensorFlow only): with
    it, a step on several devices computes what one device computes on the same global batch."""
    for layer in _all_layers(encoder):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def recalibrate_batch_norm(encoder, images, pipeline, batch_size=256, max_images=10_000):
    """Set every batch-norm layer's moving mean and variance to the average of its batch
    statistics over (up to ``max_images``) un-augmented training images ("precise BN").

    During training the moving averages trail the weights (momentum 0.9: about the last ten
    steps); in short runs the weights change faster than that and inference accuracy suffers.
    One forward pass with the final weights removes the lag; on long runs it changes little.
    """
    norms = [layer for layer in _all_layers(encoder) if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    batch_size = min(batch_size, len(images), max_images)
    try:
        for step, start in enumerate(range(0, min(len(images), max_images) - batch_size + 1, batch_size)):
            for layer in norms:  # a running mean of the per-batch statistics: weight 1/(step+1)
                layer.momentum = step / (step + 1)
            encoder(pipeline(images[start:start + batch_size], training=False), training=True)
    finally:
        for layer, saved in zip(norms, momenta):
            layer.momentum = saved


def inference_model(pipeline, encoder):
    """images -> features at inference: the pipeline (only its normalisation acts) then the encoder."""
    return keras.Sequential([pipeline, encoder], name="embedder")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _train_probe(config, train_embeddings, train_labels, num_classes, run_dir, strategy, callbacks):
    """Phase 2: a classifier on frozen-encoder features, checkpointed per epoch."""

    batch_size = int(np.clip(len(train_embeddings) // 8, 16, 256))  # at least 8 steps an epoch
    steps = max(1, len(train_embeddings) // batch_size)
    with strategy_scope(strategy):
        classifier = models.build_classifier_head(config.classifier_head, train_embeddings.shape[1], num_classes)
        schedule = keras.optimizers.schedules.CosineDecay(config.probe_learning_rate, steps * config.probe_epochs)
        classifier.compile(optimizer=keras.optimizers.Adam(schedule),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"])
    history = fit_epochs(classifier, train_embeddings, train_labels, batch_size, config.seed + 1,
                         config.probe_epochs, run_dir, "probe", callbacks,
                         0 if config.verbose == "auto" else config.verbose)
    return classifier, history


def train_ce(run_dir, profile="smoke", **settings):
    """The cross-entropy baseline: ``run(RunConfig.from_profile(profile, "ce", **settings))``."""
    return run(RunConfig.from_profile(profile, "ce", **settings), run_dir)


def train_hybrid(run_dir, profile="smoke", **settings):
    """Cross-entropy + SupCon in one stage: ``run(RunConfig.from_profile(profile, "hybrid", **settings))``."""
    return run(RunConfig.from_profile(profile, "hybrid", **settings), run_dir)


def train_supcon(run_dir, profile="smoke", **settings):
    """Two-phase SupCon: ``run(RunConfig.from_profile(profile, "supcon", **settings))``."""
    return run(RunConfig.from_profile(profile, "supcon", **settings), run_dir)


def _save_atomically(model, path):
    temporary = path.with_name(f"{path.stem}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:  # the old file stays as it was; no half-written temporary is left
        temporary.unlink(missing_ok=True)
        raise


def load_encoder(run_dir):
    """A finished run's ``(encoder, pipeline, config)`` from ``run_dir/embedder.keras``: the
    pipeline keeps its normalisation constants, so no data set has to be loaded again."""
    run_dir = Path(run_dir)
    config = RunConfig(**json.loads((run_dir / "config.json").read_text()))
    embedder = keras.saving.load_model(run_dir / "embedder.keras")
    pipeline, encoder = embedder.layers
    return encoder, pipeline, config
