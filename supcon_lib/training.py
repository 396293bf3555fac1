"""The training recipes: cross-entropy, two-phase SupCon and the hybrid, from settings to metrics.

* **Cross-entropy baseline** (:func:`train_ce`): encoder + classifier trained end to end with the
  baseline augmentation (pad-4 crop, flip) and softmax cross-entropy.
* **SupCon, two phases** (:func:`train_supcon`): phase 1 trains encoder + projection head on
  ``views`` augmented views of every image with ``SupConLoss``; phase 2 freezes the encoder and
  trains a classifier on its features (the linear probe by default, the original example's
  dropout MLP as an option). Phase 2 runs on features computed once from the un-augmented
  training images, which makes the probe tens of times cheaper than re-encoding augmented images
  every epoch (the paper's linear evaluation augments; on a frozen encoder the difference is small).
* **Hybrid** (:func:`train_hybrid`): cross-entropy and SupCon on the same views, one stage.

:func:`run` does any of them for a ``run_config.RunConfig`` into a run folder (the layout is in
``checkpoint``): it builds the model (``recipe_models``) on the device's strategy and precision
(``runtime``), trains it epoch by epoch with a checkpoint after each (:func:`fit_epochs`),
recalibrates batch norm on the final weights (:func:`recalibrate_batch_norm`), evaluates, and
writes ``embedder.keras`` and ``metrics.json``. A run interrupted at any point continues, when
started again with the same ``RUN_DIR``, from its last completed epoch: every epoch is
checkpointed (model *and* optimizer state, including the augmentation's random-number state) and
each epoch's data order depends only on (seed, epoch) (``input_pipeline``), so a resumed run
retraces an uninterrupted one. :func:`load_encoder` reads a finished run's encoder back.

Batch-norm recalibration stays here, with the recipes, rather than in ``evaluation``: it changes
the trained model's state as the last step of every recipe, before anything is evaluated, while
``evaluation`` only reads models and arrays.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from supcon_lib import callbacks as callbacks_module, checkpoint, data, evaluation, models
from supcon_lib.checkpoint import EpochCheckpointer
from supcon_lib.input_pipeline import make_dataset, num_rows
from supcon_lib.recipe_models import accuracy_metric, build_compiled_model, inference_model
from supcon_lib.run_config import RunConfig
from supcon_lib.runtime import select_jit, select_precision, select_strategy, strategy_scope

__all__ = [
    "RunResult",
    "fit_epochs",
    "load_data",
    "load_encoder",
    "recalibrate_batch_norm",
    "run",
    "train_ce",
    "train_hybrid",
    "train_supcon",
]


def train_ce(run_dir, profile="smoke", **settings):
    """The cross-entropy baseline: ``run(RunConfig.from_profile(profile, "ce", **settings))``."""
    return run(RunConfig.from_profile(profile, "ce", **settings), run_dir)


def train_hybrid(run_dir, profile="smoke", **settings):
    """Cross-entropy + SupCon in one stage: ``run(RunConfig.from_profile(profile, "hybrid", **settings))``."""
    return run(RunConfig.from_profile(profile, "hybrid", **settings), run_dir)


def train_supcon(run_dir, profile="smoke", **settings):
    """Two-phase SupCon: ``run(RunConfig.from_profile(profile, "supcon", **settings))``."""
    return run(RunConfig.from_profile(profile, "supcon", **settings), run_dir)


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
    run_dir = checkpoint.prepare_run_dir(run_dir, config)
    with checkpoint.RunLock(run_dir):
        return _run_locked(config, run_dir, callbacks, started, x_train, y_train, x_test, y_test, class_names)


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
        head = _projection_head(model)
        monitors = [callbacks_module.GeometryMonitor(
            x_test, y_test, encoder, pipeline, head, max_images=min(config.monitor_geometry, len(x_test)),
            seed=config.seed)] if config.monitor_geometry and len(x_test) >= 2 else []
        history[phase] = fit_epochs(model, inputs, y_train, config.batch_size, config.seed,
                                    config.epochs, run_dir, phase, [*monitors, *callbacks], config.verbose)

        # Replace batch norm's running averages by the statistics of the final weights.
        recalibrate_batch_norm(encoder, x_train, pipeline)

        embedder = inference_model(pipeline, encoder)
        outputs = evaluation.flip_averaged if config.flip_average else evaluation.extract_embeddings
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
        checkpoint.save_model_atomically(embedder, run_dir / "embedder.keras")
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
        checkpoint.write_json(run_dir / "metrics.json", metrics)
        return RunResult(metrics, encoder, pipeline, classifier, run_dir, embedder, head)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _projection_head(model):
    """The projection head of a SupCon or hybrid model (the layer named ``projection_head``, or a
    momentum model's ``head``); None for cross-entropy."""
    if getattr(model, "head", None) is not None:
        return model.head
    try:
        return model.get_layer("projection_head")
    except ValueError:
        return None


def _train_probe(config, train_embeddings, train_labels, num_classes, run_dir, strategy, callbacks):
    """Phase 2: a classifier on frozen-encoder features, checkpointed per epoch."""

    batch_size = int(np.clip(len(train_embeddings) // 8, 16, 256))  # at least 8 steps an epoch
    steps = max(1, len(train_embeddings) // batch_size)
    with strategy_scope(strategy):
        classifier = models.build_classifier_head(config.classifier_head, train_embeddings.shape[1], num_classes)
        schedule = keras.optimizers.schedules.CosineDecay(config.probe_learning_rate, steps * config.probe_epochs)
        classifier.compile(optimizer=keras.optimizers.Adam(schedule),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=[accuracy_metric()])
    history = fit_epochs(classifier, train_embeddings, train_labels, batch_size, config.seed + 1,
                         config.probe_epochs, run_dir, "probe", callbacks,
                         0 if config.verbose == "auto" else config.verbose)
    return classifier, history


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


def _synchronize_batch_norm(encoder):
    """Batch statistics over the global batch, not each replica's share (TensorFlow only): with
    it, a step on several devices computes what one device computes on the same global batch."""
    for layer in _all_layers(encoder):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def recalibrate_batch_norm(encoder, images, pipeline, batch_size=512, max_images=10_000):
    """Set every batch-norm layer's moving mean and variance to the average of its batch
    statistics over (up to ``max_images``) un-augmented training images ("precise BN").

    During training the moving averages trail the weights (momentum 0.9: about the last ten
    steps); in short runs the weights change faster than that and inference accuracy suffers.
    One forward pass with the final weights removes the lag; on long runs it changes little.
    Only full batches are used. The pass runs eagerly (the momentum changes every batch), so
    large batches keep it fast: on 2 CPU cores 10,000 images took 5.0 s in batches of 512
    against 12.6 s in batches of 64; a batch's variance is also biased low by only 1/512.
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


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


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
    #: SupCon and hybrid: the projection head (features -> projections); None for cross-entropy.
    projection_head: object = None

    def __post_init__(self):
        if self.embedder is None:
            self.embedder = inference_model(self.pipeline, self.encoder)

    def _outputs(self, model, images, batch_size):
        if self.metrics.get("flip_average"):
            return evaluation.flip_averaged(model, images, batch_size)
        return evaluation.extract_embeddings(model, images, batch_size)

    def embed(self, images, batch_size=256):
        """Encoder features of ``images`` (no augmentation: the pipeline at inference; averaged
        with the mirror images' when the run was evaluated so)."""
        return self._outputs(self.embedder, images, batch_size)

    def logits(self, images, batch_size=256):
        """Class logits ``(N, num_classes)`` of ``images``: the classifier (cross-entropy, hybrid)
        or the probe on the encoder's features (SupCon), as the run was evaluated."""
        if self.metrics["method"] != "supcon":  # ce, hybrid: images -> logits
            return self._outputs(self.classifier, images, batch_size)
        return evaluation.extract_embeddings(self.classifier, self.embed(images, batch_size), 1024)

    def predict(self, images, batch_size=256):
        """Predicted classes of ``images``: the argmax of :meth:`logits`."""
        return np.argmax(self.logits(images, batch_size), axis=1)

    def project(self, images, batch_size=256):
        """The projection head's outputs for :meth:`embed`'s features of ``images`` (what the
        SupCon loss saw, un-normalised). Raises ValueError for a run without a projection head."""
        if self.projection_head is None:
            raise ValueError(f"a {self.metrics['method']!r} run has no projection head")
        return evaluation.extract_embeddings(self.projection_head, self.embed(images, batch_size), 1024)


def load_encoder(run_dir):
    """A finished run's ``(encoder, pipeline, config)`` from ``run_dir/embedder.keras``: the
    pipeline keeps its normalisation constants, so no data set has to be loaded again."""
    run_dir = Path(run_dir)
    config = RunConfig(**json.loads((run_dir / "config.json").read_text()))
    embedder = keras.saving.load_model(run_dir / "embedder.keras")
    pipeline, encoder = embedder.layers
    return encoder, pipeline, config
