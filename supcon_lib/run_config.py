"""The settings of a run: :class:`RunConfig`, the profiles' defaults, and their validation.

A run is described by one :class:`RunConfig`. :meth:`RunConfig.from_profile` fills it from a
profile (:data:`PROFILES`: ``smoke``, ``cpu``, ``gpu``, ``full``) and the method (:data:`METHODS`),
then explicit settings override the profile's. :meth:`RunConfig.validate` refuses a setting out
of range with a ``ValueError`` naming it, before anything is loaded or written: ``training.run``
calls it first, and the command line turns its message into exit status 2.

The learning rate and the weight decay have defaults per optimizer and method
(:attr:`RunConfig.base_learning_rate`, :attr:`RunConfig.decay`); ``optim`` builds the optimizer
from them.
"""

from __future__ import annotations

import dataclasses
import math
import os

from supcon_lib import data, paths

__all__ = [
    "LOSSES",
    "METHODS",
    "OPTIMIZERS",
    "PROFILES",
    "RunConfig",
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
    # Real CIFAR-10 images on 2 CPU cores in at most 5 minutes per method (measured 2026-11-29:
    # 288-293 s a command; the README's results). The recipe from benchmarks/recipe_study.py, at
    # batch 128; cross-entropy takes batch 64, twice the steps in about the same time (0.749
    # against 0.736 in the tuning runs). The hybrid keeps 128: as accurate over five seeds as at
    # 64 (0.740 against 0.739 on four), 10% faster an epoch, and twice the positives per anchor
    # for its SupCon term. Evaluation averages each image with its mirror image.
    "cpu": {
        "common": dict(dataset="cifar10", encoder="resnet_small", batch_size=128, train_size=10_000, test_size=2_000,
                       flip_average=True),
        "ce": dict(epochs=27, batch_size=64, label_smoothing=0.1),
        "supcon": dict(epochs=12, probe_epochs=30),
        "hybrid": dict(epochs=27, views=1, label_smoothing=0.1),
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
    # Alignment and uniformity of this many held-out images recorded after every epoch
    # (callbacks.GeometryMonitor; 0: off). It only reads the model, so it is not compared when a
    # run is resumed (like verbose).
    monitor_geometry: int = 256
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
        """The augmentation pipeline's name: ``augmentation``, else ``"supcon"`` for SupCon and
        ``"baseline"`` for the others."""
        return self.augmentation or ("supcon" if self.method == "supcon" else "baseline")

    @property
    def base_learning_rate(self):
        """The peak learning rate: ``learning_rate``, else the method's rate per 256 images scaled
        to the batch (SGD), or the constant rate (Adam)."""
        if self.learning_rate is not None:
            return self.learning_rate
        base = _BASE_LEARNING_RATE[(self.optimizer, self.method)]
        return base * self.batch_size / 256 if self.optimizer == "sgd" else base

    @property
    def decay(self):
        """The (decoupled) weight decay: ``weight_decay``, else the method's (SGD) or 0 (Adam)."""
        if self.weight_decay is not None:
            return self.weight_decay
        return _WEIGHT_DECAY[self.method] if self.optimizer == "sgd" else 0.0

    def validate(self):
        """Raise ValueError naming the first setting that is out of range."""
        # Imported here, not at the top: the names of this module (PROFILES, METHODS...) can be
        # read without Keras (tools/run_notebooks.py does).
        import keras

        from supcon_lib import augment, losses, models, recipe_models

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
        need(isinstance(self.monitor_geometry, int) and not isinstance(self.monitor_geometry, bool)
             and (self.monitor_geometry == 0 or self.monitor_geometry >= 2),
             f"monitor_geometry must be 0 (off) or a number of images >= 2, found {self.monitor_geometry!r}")
        need(self.loss in LOSSES, f"loss must be one of {list(LOSSES)}, found {self.loss!r}")
        need(self.formulation in losses.FORMULATIONS,
             f"formulation must be one of {list(losses.FORMULATIONS)}, found {self.formulation!r}")
        try:  # the loss's own checks of the temperature (finite, not so small that float32 fails)
            recipe_models.contrastive_loss(self)
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
        # Rates and decays: finite numbers (an infinite or NaN one turns every weight into NaN).
        for name, optional, low, strict in (("learning_rate", True, 0, True), ("probe_learning_rate", False, 0, True),
                                            ("weight_decay", True, 0, False), ("warmup_epochs", True, 0, False)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            need(_is_number(value) and math.isfinite(value) and (value > low if strict else value >= low),
                 f"{name} must be a finite number {'>' if strict else '>='} {low}"
                 f"{' (or None for the default)' if optional else ''}, found {value!r}")
        need(self.precision in ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
             f"precision must be auto, float32, mixed_float16 or mixed_bfloat16, found {self.precision!r}")
        need(self.jit_compile in ("auto", "on", "off"), f"jit_compile must be auto, on or off, found {self.jit_compile!r}")
        need(self.strategy in ("auto", "default", "mirrored", "tpu"),
             f"strategy must be auto, default, mirrored or tpu, found {self.strategy!r}")
        # tf.distribute strategies exist on TensorFlow only: refused here, before a run writes anything.
        need(self.strategy not in ("mirrored", "tpu") or keras.backend.backend() == "tensorflow",
             f"strategy {self.strategy!r} needs the TensorFlow backend (Keras runs on "
             f"{keras.backend.backend()!r}); use strategy auto or default")
        return self

    def to_dict(self):
        """Every setting as a dict (what ``config.json`` holds, with ``verbose``)."""
        return dataclasses.asdict(self)


def _is_number(value):
    """A real number that is not a bool (``True`` is an int to Python, not a setting's value)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)

