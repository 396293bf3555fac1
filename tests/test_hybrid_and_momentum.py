"""The hybrid loss (cross-entropy + SupCon) and SupCon with a momentum encoder and a label queue.

The references are written independently of the library: float64 NumPy with explicit loops over
anchors and contrast entries, from the formulas in the docstrings of supcon_lib.losses. Runs on
TensorFlow and on JAX (make test runs this file in both passes).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from backend_utils import (BACKEND, BFLOAT16_XLA, FLOAT16_XLA, assert_trained_with, gradient, to_numpy,
                           variables_created_while_tracing)
from supcon_lib import losses, momentum, models, run_config, training


def _unit(vector):
    vector = np.asarray(vector, np.float64)
    norm = math.sqrt(float(vector @ vector))
    return vector / norm if norm > 0 else vector


def reference_queue_loss(labels, queries, keys, queue, queue_labels, temperature):
    """For every query: L_out over the contrast set [batch keys, queue entries with label >= 0]."""
    contrast = [(_unit(k), int(c)) for k, c in zip(keys, labels)]
    contrast += [(_unit(k), int(c)) for k, c in zip(queue, queue_labels) if c >= 0]
    total = 0.0
    for query, label in zip(queries, labels):
        q = _unit(query)
        logits = [float(q @ k) / temperature for k, _ in contrast]
        log_denominator = math.log(math.fsum(math.exp(s) for s in logits))
        positives = [s for s, (_, c) in zip(logits, contrast) if c == label]
        total += math.fsum(log_denominator - s for s in positives) / len(positives)
    return total / len(labels)


def reference_cross_entropy(labels, logits):
    logits = np.asarray(logits, np.float64)
    if logits.ndim == 2:
        logits = logits[:, None, :]
    terms = []
    for image, label in enumerate(labels):
        for view in logits[image]:
            terms.append(math.log(math.fsum(math.exp(v) for v in view)) - view[int(label)])
    return math.fsum(terms) / len(terms)


def reference_supcon_out(labels, features, temperature):
    """L_out over all views, every anchor against all the others (loops)."""
    features = np.asarray(features, np.float64)
    if features.ndim == 2:
        features = features[:, None, :]
    vectors = [_unit(v) for image in features for v in image]
    classes = [int(c) for c in labels for _ in range(features.shape[1])]
    total, count = 0.0, 0
    for i, z in enumerate(vectors):
        others = [a for a in range(len(vectors)) if a != i]
        positives = [p for p in others if classes[p] == classes[i]]
        if not positives:
            continue
        log_denominator = math.log(math.fsum(math.exp(z @ vectors[a] / temperature) for a in others))
        total += math.fsum(log_denominator - z @ vectors[p] / temperature for p in positives) / len(positives)
        count += 1
    return total / count if count else 0.0


@pytest.mark.parametrize("case", range(6))
def test_queue_loss_matches_the_reference(case):
    rng = np.random.default_rng(case)
    batch, size, dim = [(8, 0, 4), (8, 16, 4), (5, 7, 3), (16, 32, 8), (1, 4, 2), (12, 12, 6)][case]
    temperature = [0.1, 0.07, 0.5, 0.2, 1.0, 0.05][case]
    labels = rng.integers(0, 4, batch)
    queries, keys = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    queue = rng.normal(size=(size, dim))
    queue_labels = rng.integers(-1, 4, size)  # about a fifth of the slots empty
    value = losses.supcon_queue_loss(labels, queries.astype("float32"), keys.astype("float32"),
                                     queue.astype("float32"), queue_labels, temperature)
    expected = reference_queue_loss(labels, queries, keys, queue, queue_labels, temperature)
    assert float(to_numpy(value)) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_queue_loss_empty_slots_take_no_part():
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 0, 2])
    queries, keys = rng.normal(size=(4, 5)).astype("float32"), rng.normal(size=(4, 5)).astype("float32")
    queue = rng.normal(size=(6, 5)).astype("float32")
    empty = np.full(6, -1)
    without_queue = losses.supcon_queue_loss(labels, queries, keys, queue[:0], empty[:0], 0.1)
    with_empty_queue = losses.supcon_queue_loss(labels, queries, keys, queue * 100, empty, 0.1)
    assert float(to_numpy(with_empty_queue)) == pytest.approx(float(to_numpy(without_queue)), abs=1e-6)
    # ...while one filled slot with a label changes the loss
    one = empty.copy()
    one[0] = 1
    assert abs(float(to_numpy(losses.supcon_queue_loss(labels, queries, keys, queue, one, 0.1)))
               - float(to_numpy(without_queue))) > 1e-3


def test_queue_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    labels = np.array([0, 1, 1, 2, 0])
    queries = rng.normal(size=(5, 3))
    keys, queue, queue_labels = rng.normal(size=(5, 3)), rng.normal(size=(7, 3)), rng.integers(-1, 3, 7)
    grad = to_numpy(gradient(lambda q: losses.supcon_queue_loss(
        labels, q, keys.astype("float32"), queue.astype("float32"), queue_labels, 0.5), queries.astype("float32")))
    step, numeric = 1e-5, np.zeros_like(queries)
    for index in np.ndindex(*queries.shape):
        up, down = queries.copy(), queries.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (reference_queue_loss(labels, up, keys, queue, queue_labels, 0.5)
                          - reference_queue_loss(labels, down, keys, queue, queue_labels, 0.5)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, atol=2e-4)


@pytest.mark.backend_independent
def test_queue_loss_refuses_bad_input():
    x = np.ones((4, 3), "float32")
    with pytest.raises(ValueError, match="4 queries but 3 keys"):
        losses.supcon_queue_loss(np.zeros(4, "int32"), x, x[:3], x, np.zeros(4, "int32"))
    with pytest.raises(ValueError, match="one embedding size"):
        losses.supcon_queue_loss(np.zeros(4, "int32"), x, x, np.ones((4, 2), "float32"), np.zeros(4, "int32"))
    with pytest.raises(TypeError, match="labels must be integers"):
        losses.supcon_queue_loss(np.zeros(4, "float32"), x, x, x, np.zeros(4, "int32"))
    with pytest.raises(ValueError, match="temperature"):
        losses.supcon_queue_loss(np.zeros(4, "int32"), x, x, x, np.zeros(4, "int32"), temperature=0)


@pytest.mark.parametrize("views", [1, 2])
def test_hybrid_loss_matches_the_reference(views):
    rng = np.random.default_rng(views)
    labels = rng.integers(0, 3, 10)
    logits = rng.normal(size=(10, views, 3)) * 2
    features = rng.normal(size=(10, views, 6))
    for weight in (0.0, 0.5, 2.0):
        value = losses.hybrid_loss(labels, logits.astype("float32"), features.astype("float32"), weight, 0.2)
        expected = reference_cross_entropy(labels, logits) + weight * reference_supcon_out(labels, features, 0.2)
        assert float(to_numpy(value)) == pytest.approx(expected, rel=1e-5)
    # HybridLoss reads [logits | projections] from one output
    packed = np.concatenate([logits, features], axis=-1).astype("float32")
    value = losses.HybridLoss(num_classes=3, supcon_weight=0.5, temperature=0.2)(labels, packed)
    expected = reference_cross_entropy(labels, logits) + 0.5 * reference_supcon_out(labels, features, 0.2)
    assert float(to_numpy(value)) == pytest.approx(expected, rel=1e-5)
    assert losses.HybridLoss.from_config(losses.HybridLoss(3, 0.5, 0.2).get_config()).supcon_weight == 0.5


@pytest.mark.backend_independent
def test_hybrid_loss_refuses_bad_settings():
    for weight in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="supcon_weight"):
            losses.HybridLoss(3, supcon_weight=weight)
    with pytest.raises(ValueError, match="num_classes"):
        losses.HybridLoss(1)
    with pytest.raises(ValueError, match="must hold logits and projections"):
        losses.HybridLoss(3)(np.zeros(2, "int32"), np.zeros((2, 3), "float32"))


# ------------------------------------------------------------------------------------------------
# The momentum model: what one training call does to its state
# ------------------------------------------------------------------------------------------------
def _small_momentum_model(queue_size=8, key_momentum=0.5):
    pipeline = keras.Sequential([keras.layers.Rescaling(1 / 255)])
    # Any encoder will do for the update rule; a small one halves the test on eager JAX, which
    # compiles every operation at its first use (15 s with resnet_small).
    encoder = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
                                keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D()], name="encoder")
    head = models.build_projection_head("linear", 8, 4)
    model = momentum.MomentumSupCon(pipeline, encoder, head, queue_size, key_momentum, 0.1)
    model.build(((None, 8, 8, 3), (None,)))
    return model


def test_momentum_step_follows_copies_and_enqueues():
    keras.utils.set_random_seed(0)
    model = _small_momentum_model()
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype("uint8")
    labels = np.array([4, 5, 6])
    online = [to_numpy(v) for v in model.encoder.variables]
    assert not all(np.allclose(k, o) for k, o in zip(map(to_numpy, model.key_encoder.variables), online))
    model((images, labels), training=True)  # first step: the key branch becomes a copy
    kernels = [(k, o) for k, o in model.pairs if "kernel" in k.path]
    for key, value in zip(model.key_encoder.variables, online):
        if "kernel" in key.path:
            np.testing.assert_allclose(to_numpy(key), value, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(model.queue_labels), [4, 5, 6, -1, -1, -1, -1, -1])
    norms = np.linalg.norm(to_numpy(model.queue)[:3], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert len(model.losses) == 1
    # later steps: key = 0.5 key + 0.5 online, newest keys first, the oldest pushed out
    key_before = to_numpy(kernels[0][0])
    kernels[0][1].assign(kernels[0][1] + 1.0)  # move the online branch
    online_now = to_numpy(kernels[0][1])
    model((images[:2], labels[:2]), training=True)
    np.testing.assert_allclose(to_numpy(kernels[0][0]), 0.5 * key_before + 0.5 * online_now, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(model.queue_labels), [4, 5, 4, 5, 6, -1, -1, -1])
    for _ in range(3):
        model((images, labels), training=True)
    assert to_numpy(model.queue_labels).tolist() == [4, 5, 6] * 2 + [4, 5]
    assert int(to_numpy(model.steps_done)) == 5


@pytest.mark.backend_independent
def test_momentum_model_refuses_bad_settings():
    pipeline, encoder = keras.layers.Identity(), models.build_encoder("resnet_small", (8, 8, 3))
    head = models.build_projection_head("linear", 128, 4)
    with pytest.raises(ValueError, match="queue_size"):
        momentum.MomentumSupCon(pipeline, encoder, head, queue_size=0)
    with pytest.raises(ValueError, match="momentum"):
        momentum.MomentumSupCon(pipeline, encoder, head, momentum=1.0)


# ------------------------------------------------------------------------------------------------
# Both as recipes of training.run
# ------------------------------------------------------------------------------------------------
TINY = dict(train_size=300, test_size=100, batch_size=50, encoder="resnet_small", seed=0, verbose=0,
            precision="float32")


@pytest.fixture(scope="module")
def digits_arrays():
    return training.load_data(run_config.RunConfig.from_profile("smoke", "ce", **TINY))


# On TensorFlow the hybrid learns with what a GPU reader gets, forced on the CPU: XLA and float16
# (on JAX, float32: float16 on JAX is test_training.py's cross-entropy run).
HYBRID_SETTINGS = FLOAT16_XLA if BACKEND == "tensorflow" else {}


def test_hybrid_recipe_learns_and_resumes(tmp_path, digits_arrays):
    config = run_config.RunConfig.from_profile("smoke", "hybrid", epochs=5, **dict(TINY, **HYBRID_SETTINGS))
    assert config.views == 1 and config.augmentation_kind == "baseline"  # one change against ce: the loss
    with variables_created_while_tracing() as created:
        result = training.run(config, tmp_path / "hybrid", arrays=digits_arrays)
    assert created == []  # the step traced once (TensorFlow)
    metrics = result.metrics
    assert_trained_with(metrics, HYBRID_SETTINGS)
    loss = metrics["history"]["train"]["loss"]
    assert len(loss) == 5 and np.all(np.isfinite(loss)) and loss[-1] < loss[0] - 0.5
    assert metrics["loss"] == "cross_entropy+supcon" and metrics["views"] == 1
    assert metrics["test_accuracy"] > 0.6 and metrics["knn_accuracy"] > 0.6  # chance is 0.1
    predictions = result.predict(digits_arrays[1][0])
    assert np.mean(predictions == digits_arrays[1][1]) == pytest.approx(metrics["test_accuracy"])
    # the same folder and settings: nothing left to train, the same accuracy
    again = training.run(config, tmp_path / "hybrid", arrays=digits_arrays).metrics
    assert again["history"]["train"]["loss"] == loss
    assert again["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)


def test_momentum_recipe_learns_and_resumes_exactly(tmp_path, digits_arrays):
    settings = dict(TINY, queue_size=100, epochs=2, probe_epochs=20)
    config = run_config.RunConfig.from_profile("smoke", "supcon", **settings)
    with variables_created_while_tracing() as created:
        straight = training.run(config, tmp_path / "straight", arrays=digits_arrays).metrics
    assert created == []  # both phases' steps traced once (TensorFlow)
    loss = straight["history"]["pretrain"]["loss"]
    assert len(loss) == 2 and straight["queue_size"] == 100
    assert straight["knn_accuracy"] > 0.5 and straight["test_accuracy"] > 0.5

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.run(config, tmp_path / "resumed", arrays=digits_arrays, callbacks=[StopAfterFirstEpoch()])
    resumed = training.run(config, tmp_path / "resumed", arrays=digits_arrays).metrics
    # the queue, its labels and the key branch are in the checkpoint: the resumed run retraces
    np.testing.assert_allclose(resumed["history"]["pretrain"]["loss"], loss, rtol=1e-4)
    assert resumed["knn_accuracy"] == pytest.approx(straight["knn_accuracy"], abs=0.02)


@pytest.mark.backend_independent
@pytest.mark.parametrize("settings, message", [
    (dict(method="supcon", queue_size=10, batch_size=50), "at least the batch size"),
    (dict(method="supcon", queue_size=100, views=1), "two views"),
    (dict(method="ce", queue_size=100), "goes with method supcon"),
    (dict(method="supcon", queue_size=100, loss="simclr"), "goes with method supcon"),
    (dict(method="supcon", queue_size=-1), "queue_size must be"),
    (dict(method="supcon", key_momentum=1.0), "key_momentum"),
    (dict(method="hybrid", supcon_weight=-0.5), "supcon_weight"),
    (dict(method="hybrid", supcon_weight=float("inf")), "supcon_weight"),
])
def test_settings_of_the_new_recipes_are_checked(settings, message):
    settings = dict(settings)
    method = settings.pop("method")
    with pytest.raises(ValueError, match=message):
        run_config.RunConfig.from_profile("smoke", method, **settings)


@pytest.mark.jax_redundant("the momentum recipe on JAX: test_momentum_recipe_learns_and_resumes_exactly; bfloat16 "
                            "on JAX: test_training.py::test_supcon_two_phase_learns")
def test_gpu_settings_train_the_momentum_recipe_on_the_cpu(tmp_path, digits_arrays):
    """What a GPU reader gets: the step compiled with XLA and mixed precision, forced on the CPU
    (the hybrid's learning run above uses them on TensorFlow too)."""
    settings = dict(TINY, epochs=2, probe_epochs=2, queue_size=100, **BFLOAT16_XLA)
    metrics = training.run(run_config.RunConfig.from_profile("smoke", "supcon", **settings), tmp_path / "momentum",
                           arrays=digits_arrays).metrics
    assert_trained_with(metrics, settings)
    assert all(np.isfinite(metrics["history"]["pretrain"]["loss"]))
    # (the queue's loss rises while the queue fills with negatives, so learning is read from kNN)
    assert metrics["knn_accuracy"] > 0.3  # chance is 0.1
