"""Tests of supcon_lib.losses on one device (the several-device tests are in
test_losses_distributed.py).

The reference implementations below are written independently of the library: NumPy float64
and explicit Python loops over anchors and over positives, straight from the formulas of
Khosla et al. (2020) and of tensorflow-addons' ``npairs_loss``.

Every test here runs on the TensorFlow and on the JAX backend (gradients and compilation go
through tests/backend_utils.py), except those marked ``tensorflow_only``, which are about
TensorFlow itself.
"""

from __future__ import annotations

import ast
import math
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import BACKEND, gradient, model_gradients, to_numpy, value_and_gradient, xla_compile
from supcon_lib import losses

LOSSES_SOURCE = Path(losses.__file__)


# --------------------------------------------------------------------------------------------
# Independent references (float64, explicit loops)
# --------------------------------------------------------------------------------------------


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = []
    for row in matrix:
        norm = math.sqrt(sum(float(value) ** 2 for value in row))
        rows.append(row / norm if norm > 0 else row)
    return np.array(rows)


def reference_supcon(labels, features, temperature, formulation="out"):
    """SupCon L_out / L_in (SimCLR when labels is None), loops over anchors and positives."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim == 2:
        features = features[:, None, :]
    batch_size, num_views, _ = features.shape
    # Anchor list: (image, view), with the class (or image id for SimCLR) of each.
    vectors, classes = [], []
    for image in range(batch_size):
        for view in range(num_views):
            vectors.append(features[image, view])
            classes.append(image if labels is None else int(np.ravel(labels)[image]))
    vectors = _unit_rows(np.array(vectors))
    num_anchors = len(vectors)
    similarity = vectors @ vectors.T / temperature  # Only used entry by entry below.

    total, count = 0.0, 0
    for anchor in range(num_anchors):
        others = [a for a in range(num_anchors) if a != anchor]
        positives = [p for p in others if classes[p] == classes[anchor]]
        if not positives:
            continue
        denominator = math.fsum(math.exp(similarity[anchor, a]) for a in others)
        if formulation == "out":
            term = 0.0
            for positive in positives:
                term -= math.log(math.exp(similarity[anchor, positive]) / denominator)
            term /= len(positives)
        else:
            inner = 0.0
            for positive in positives:
                inner += math.exp(similarity[anchor, positive]) / denominator
            term = -math.log(inner / len(positives))
        total += term
        count += 1
    return total / count if count else 0.0


def reference_npairs(labels, features, temperature):
    """tensorflow-addons' npairs_loss on z z^T / temperature, diagonal kept, loops over rows."""
    labels = [int(value) for value in np.ravel(labels)]
    vectors = _unit_rows(features)
    batch_size = len(labels)
    total = 0.0
    for row in range(batch_size):
        logits = [float(vectors[row] @ vectors[col]) / temperature for col in range(batch_size)]
        log_normaliser = math.log(math.fsum(math.exp(value) for value in logits))
        same = [col for col in range(batch_size) if labels[col] == labels[row]]
        for col in same:  # Target weight 1/|same| on each same-label column, itself included.
            total -= (logits[col] - log_normaliser) / len(same)
    return total / batch_size


def reference_gradient(labels, features, temperature, formulation="out"):
    """Closed-form gradient of the batch loss w.r.t. the raw (unnormalised) features.

    Per anchor i with positives P(i) and contrast set A(i), dL_i/ds_ia = P_ia - X_ia with
    P_ia = softmax over A(i) and X_ia = 1/|P(i)| (L_out) or exp(s_ia)/sum_p exp(s_ip) (L_in)
    on positives, 0 elsewhere. So dL_i/dz_i = (1/t) sum_a (P_ia - X_ia) z_a (Khosla et al.,
    Sec. 3.2.3) and dL_i/dz_a = (1/t) (P_ia - X_ia) z_i. Then the L2-normalisation's Jacobian:
    dL/dx = (I - z z^T) dL/dz / |x|.
    """
    features = np.asarray(features, dtype=np.float64)
    batch_size, num_views, dim = features.shape
    raw = features.reshape(batch_size * num_views, dim)
    vectors = _unit_rows(raw)
    classes = [image if labels is None else int(np.ravel(labels)[image])
               for image in range(batch_size) for _ in range(num_views)]
    num_anchors = len(vectors)
    grad_z = np.zeros_like(vectors)
    count = 0
    for anchor in range(num_anchors):
        others = [a for a in range(num_anchors) if a != anchor]
        positives = [p for p in others if classes[p] == classes[anchor]]
        if not positives:
            continue
        count += 1
        logits = {a: float(vectors[anchor] @ vectors[a]) / temperature for a in others}
        denominator = math.fsum(math.exp(logits[a]) for a in others)
        positive_sum = math.fsum(math.exp(logits[p]) for p in positives)
        for a in others:
            softmax = math.exp(logits[a]) / denominator
            if a in positives:
                target = 1 / len(positives) if formulation == "out" else math.exp(logits[a]) / positive_sum
            else:
                target = 0.0
            coefficient = (softmax - target) / temperature
            grad_z[anchor] += coefficient * vectors[a]
            grad_z[a] += coefficient * vectors[anchor]
    if count:
        grad_z /= count
    grad_x = np.zeros_like(raw)
    for index in range(num_anchors):
        unit = vectors[index]
        grad_x[index] = (grad_z[index] - unit * (unit @ grad_z[index])) / np.linalg.norm(raw[index])
    return grad_x.reshape(features.shape)


# --------------------------------------------------------------------------------------------
# Seeded sweep against the references
# --------------------------------------------------------------------------------------------


def _make_labels(kind: str, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":  # A few classes, random sizes (a class may be a singleton).
        return rng.integers(0, max(1, batch_size // 3), size=batch_size)
    if kind == "singletons":
        return rng.permutation(batch_size) + 7
    if kind == "single":
        return np.full(batch_size, 3)
    if kind == "mixed":  # Half in two big classes, the rest singleton classes.
        labels = np.arange(batch_size) + 10
        labels[: batch_size // 2] = rng.integers(0, 2, size=batch_size // 2)
        return rng.permutation(labels)
    raise ValueError(kind)


def _make_features(labels, num_views, dim, rng, clustered):
    noise = rng.normal(size=(len(labels), num_views, dim))
    if clustered:  # Views of a class near a class centre, so positives are really similar.
        centres = rng.normal(size=(int(np.max(labels)) + 1, dim))
        noise = 2.0 * centres[labels][:, None, :] + noise
    return noise.astype(np.float32)


# (batch_size, num_views, dim, temperature, label kind, clustered)
SWEEP = [
    (1, 1, 3, 0.1, "single", False),
    (1, 2, 4, 0.5, "single", False),
    (1, 4, 2, 0.01, "singletons", True),
    (2, 1, 2, 1.0, "single", False),
    (2, 1, 5, 0.2, "singletons", False),
    (3, 3, 5, 0.01, "random", True),
    (4, 2, 3, 0.07, "mixed", False),
    (5, 4, 16, 0.05, "mixed", True),
    (7, 1, 8, 0.3, "random", True),
    (8, 2, 128, 0.07, "random", False),
    (12, 3, 6, 0.01, "single", True),
    (16, 1, 8, 0.2, "mixed", False),
    (17, 3, 32, 0.01, "singletons", False),
    (24, 2, 2, 0.5, "random", True),
    (32, 2, 64, 0.1, "single", False),
    (33, 4, 7, 0.3, "random", False),
    (40, 1, 16, 0.01, "mixed", True),
    (48, 3, 128, 1.0, "mixed", False),
    (64, 1, 128, 0.05, "random", True),
    (64, 2, 16, 0.1, "singletons", True),
    (64, 4, 32, 0.01, "random", True),
]


def _assert_close(actual, expected, temperature):
    # float32 logits are up to 1/temperature in size: allow their rounding error.
    tolerance = 1e-6 * (1.0 + abs(expected)) + 2e-7 / temperature
    assert np.isfinite(float(actual))
    assert abs(float(actual) - expected) <= tolerance, (float(actual), expected, tolerance)


def _sweep_losses(labels, features, temperature):
    """L_out, L_in, SimCLR and npairs (on the first view) of one sweep configuration.

    Eager on TensorFlow. Eager JAX compiles every primitive anew for every new shape (2-4 s per
    configuration on a CPU, 21 shapes here), so on JAX the four losses are compiled together
    by one ``jax.jit``, which is also how Keras' JAX train step runs them; the eager JAX path
    is exercised by the other tests of this module.
    """
    def compute(labels, features):
        return (
            losses.supcon_loss(labels, features, temperature, formulation="out"),
            losses.supcon_loss(labels, features, temperature, formulation="in"),
            losses.supcon_loss(None, features, temperature),
            losses.npairs_loss(labels, features[:, 0, :], temperature),
        )

    if BACKEND == "jax":
        compute = xla_compile(compute)
    return compute(labels, features)


@pytest.mark.parametrize("config", SWEEP, ids=lambda c: "B{}-V{}-D{}-t{}-{}-{}".format(*c))
def test_matches_float64_reference(config):
    batch_size, num_views, dim, temperature, label_kind, clustered = config
    rng = np.random.default_rng(zlib.crc32(repr(config).encode()))  # Same seed every run.
    labels = _make_labels(label_kind, batch_size, rng)
    features = _make_features(labels, num_views, dim, rng, clustered)

    out, inside, simclr, npairs = _sweep_losses(labels, features, temperature)
    for formulation, value in (("out", out), ("in", inside)):
        assert tuple(value.shape) == ()
        _assert_close(value, reference_supcon(labels, features, temperature, formulation),
                      temperature)
    _assert_close(simclr, reference_supcon(None, features, temperature), temperature)

    single_view = features[:, 0, :]
    _assert_close(npairs, reference_npairs(labels, single_view, temperature), temperature)


@pytest.mark.backend_independent
def test_sweep_exercises_every_corner():
    """The sweep really covers what the spec asks (guards against someone trimming it)."""
    sizes = {config[0] for config in SWEEP}
    assert min(sizes) == 1 and max(sizes) == 64
    assert {config[1] for config in SWEEP} == {1, 2, 3, 4}
    temperatures = {config[3] for config in SWEEP}
    assert min(temperatures) == 0.01 and max(temperatures) == 1.0
    assert {"singletons", "single", "mixed", "random"} <= {config[4] for config in SWEEP}


def test_label_and_feature_shapes_are_equivalent():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=10)
    features = rng.normal(size=(10, 6)).astype(np.float32)
    base = float(losses.supcon_loss(labels, features, 0.2))
    assert float(losses.supcon_loss(labels[:, None], features, 0.2)) == pytest.approx(base, abs=1e-6)
    assert float(losses.supcon_loss(labels, features[:, None, :], 0.2)) == pytest.approx(base, abs=1e-6)
    assert float(losses.supcon_loss(ops.convert_to_tensor(labels, "int32"), ops.convert_to_tensor(features),
                                    0.2)) == pytest.approx(base, abs=1e-6)
    npairs = float(losses.npairs_loss(labels, features))
    assert float(losses.npairs_loss(labels[:, None], features[:, None, :])) == pytest.approx(npairs, abs=1e-6)


def test_default_formulation_is_out_and_in_is_below_out():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=20)
    features = rng.normal(size=(20, 2, 8)).astype(np.float32)
    default = float(losses.supcon_loss(labels, features))
    assert default == pytest.approx(float(losses.supcon_loss(labels, features, 0.1, "out")), abs=0)
    assert default == pytest.approx(reference_supcon(labels, features, 0.1, "out"), abs=1e-4)
    # Jensen: L_in <= L_out, strictly when positives differ.
    assert float(losses.supcon_loss(labels, features, formulation="in")) < default - 1e-3


def test_npairs_matches_tensorflow_addons_transcription():
    """tfa.losses.npairs_loss(y_true, y_pred) on the example's logits, transcribed line by line
    from its TensorFlow ops into NumPy (l2_normalize, matmul, softmax_cross_entropy_with_logits),
    so that it holds on every backend."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, size=24)
    features = rng.normal(size=(24, 16)).astype(np.float32)
    temperature = 0.05
    # tf.math.l2_normalize: x / sqrt(max(sum(x^2), 1e-12)).
    normalized = features / np.sqrt(np.maximum(np.sum(features ** 2, axis=1, keepdims=True), 1e-12))
    logits = normalized @ normalized.T / temperature
    y_true = np.expand_dims(labels.astype(np.float32), -1)
    y_true = (y_true == y_true.T).astype(np.float32)
    y_true /= np.sum(y_true, 1, keepdims=True)
    # tf.nn.softmax_cross_entropy_with_logits: -sum(labels * log_softmax(logits)) per row.
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    expected = np.mean(-np.sum(y_true * log_softmax, axis=1))
    assert float(losses.npairs_loss(labels, features, temperature)) == pytest.approx(
        float(expected), abs=1e-4
    )


def test_npairs_keeps_the_diagonal_unlike_supcon():
    """Every image is its own positive in npairs: with orthogonal singleton classes it is ~0
    (the self-similarity 1/temperature dominates), where SupCon has no positive at all (0)."""
    features = np.eye(6, 8, dtype=np.float32)
    labels = np.arange(6)
    for temperature in (0.1, 0.2, 0.5):
        expected = math.log(1 + 5 * math.exp(-1 / temperature))  # -log softmax of the diagonal.
        value = float(losses.npairs_loss(labels, features, temperature))
        # Relative: 2.3e-4 at 0.1, 0.033 at 0.2, 0.5 at 0.5. float32 rounds the softmax's sum
        # 1 + 5 exp(-1/t) to within 1.2e-7 (its resolution at 1), an error of 1.2e-7 / expected
        # relative to the value (5e-4 at 0.1, 1e-6 at 0.5).
        assert value == pytest.approx(expected, rel=1e-6 + 1.2e-7 / expected)
        assert float(losses.supcon_loss(labels, features, temperature)) == 0.0
    # At 0.05 the exact value, 5 exp(-20) = 1.0e-8, is below that resolution: float32 gives 0 up
    # to one rounding step.
    assert 0.0 <= float(losses.npairs_loss(labels, features, 0.05)) <= 1.2e-7
    temperature = 0.05
    # A shared class: npairs spreads the target over itself and the other member.
    paired = np.array([0, 0, 1, 2, 3, 4])
    assert float(losses.npairs_loss(paired, features, temperature)) == pytest.approx(
        reference_npairs(paired, features, temperature), abs=1e-4
    )


def test_anchors_without_positive_do_not_dilute_the_mean():
    features = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 0, 1])  # Anchor 2 is a singleton: no positive.
    temperature = 0.5
    similarity = features @ features.T / temperature
    term0 = -similarity[0, 1] + math.log(math.exp(similarity[0, 1]) + math.exp(similarity[0, 2]))
    term1 = -similarity[1, 0] + math.log(math.exp(similarity[1, 0]) + math.exp(similarity[1, 2]))
    expected = (term0 + term1) / 2  # Not / 3.
    for formulation in ("out", "in"):  # One positive each: both formulations coincide.
        assert float(losses.supcon_loss(labels, features, temperature, formulation)) == \
            pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------------------------
# Low precision
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_low_precision_inputs_are_computed_in_float32(dtype, scale):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=32)
    raw = (scale * rng.normal(size=(32, 2, 64))).astype(np.float32)
    quantised = ops.cast(raw, dtype)  # scale 300: sum of squares overflows float16.
    same_values = ops.cast(quantised, "float32")
    temperature = 0.05
    for formulation in ("out", "in"):
        low = losses.supcon_loss(labels, quantised, temperature, formulation)
        high = losses.supcon_loss(labels, same_values, temperature, formulation)
        assert keras.backend.standardize_dtype(low.dtype) == "float32"
        assert np.isfinite(float(low))
        assert float(low) == pytest.approx(float(high), rel=1e-6, abs=1e-6)
    simclr = losses.supcon_loss(None, quantised, temperature)
    assert float(simclr) == pytest.approx(float(losses.supcon_loss(None, same_values, temperature)),
                                          rel=1e-6, abs=1e-6)
    npairs = losses.npairs_loss(labels, quantised[:, 0], temperature)
    assert float(npairs) == pytest.approx(
        float(losses.npairs_loss(labels, same_values[:, 0], temperature)), rel=1e-6, abs=1e-6
    )
    low_gradient = gradient(lambda x: losses.supcon_loss(labels, x, temperature), quantised)
    assert keras.backend.standardize_dtype(low_gradient.dtype) == dtype
    assert np.all(np.isfinite(low_gradient.astype(np.float32)))
    # The loss runs in float32 on the same values, so the gradient is float32's, rounded to the
    # input's dtype on the way back through the cast: within one step of its mantissa (10 bits
    # for float16, 7 for bfloat16) of the largest entry.
    high_gradient = gradient(lambda x: losses.supcon_loss(labels, x, temperature), same_values)
    step = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}[dtype]
    np.testing.assert_allclose(low_gradient.astype(np.float32), high_gradient, rtol=step,
                               atol=step * np.abs(high_gradient).max())


# --------------------------------------------------------------------------------------------
# Analytic anchors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_views", [1, 2, 3])
@pytest.mark.parametrize("formulation", ["out", "in"])
def test_perfect_class_collapse_reaches_the_floor(num_views, formulation):
    """All views of class c equal e_c (classes orthogonal): every positive has logit 1/t and
    every negative 0, so L_i = log(|P(i)| + |N(i)| exp(-1/t)) -> log |P(i)| as t -> 0."""
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])  # Class 2 and 4: singletons.
    features = np.repeat(np.eye(5, 6, dtype=np.float32)[labels][:, None, :], num_views, axis=1)
    class_sizes = np.bincount(labels)
    num_anchors = len(labels) * num_views
    for temperature in (0.5, 0.1, 0.01):
        exact, floor = [], []
        for label in labels:
            for _ in range(num_views):
                positives = class_sizes[label] * num_views - 1
                if positives == 0:
                    continue
                negatives = num_anchors - 1 - positives
                exact.append(math.log(positives + negatives * math.exp(-1 / temperature)))
                floor.append(math.log(positives))
        value = float(losses.supcon_loss(labels, features, temperature, formulation))
        assert value == pytest.approx(np.mean(exact), abs=2e-5)
        if temperature == 0.01:
            assert value == pytest.approx(np.mean(floor), abs=2e-5)
        assert value >= np.mean(floor) - 1e-5  # float32 rounding only.
    start, library_floor = losses.start_and_floor(labels, num_views)
    assert library_floor == pytest.approx(np.mean(floor), rel=1e-12)
    assert start == pytest.approx(math.log(num_anchors - 1), rel=1e-12)


def test_start_and_floor_arguments():
    assert losses.start_and_floor(np.arange(4), 2) == pytest.approx((math.log(7), 0.0))  # SimCLR: one positive
    assert losses.start_and_floor([5], 1) == (0.0, 0.0)  # one anchor, no positive
    for labels, views, message in ((None, 2, "labels is None"), ([], 2, "empty"), ([0, 1], 0, "num_views")):
        with pytest.raises(ValueError, match=message):
            losses.start_and_floor(labels, views)


@pytest.mark.parametrize("formulation", ["out", "in", "simclr"])
@pytest.mark.parametrize("geometry", ["identical", "simplex"])
def test_equal_pairwise_cosines_give_log_of_anchors_minus_one(formulation, geometry):
    """If every pair of anchors has the same cosine, every softmax over the A - 1 others is
    uniform: every anchor's loss is log(A - 1), whatever the labels."""
    batch_size, num_views = 5, 2
    num_anchors = batch_size * num_views
    if geometry == "identical":
        vectors = np.tile(np.array([[0.3, -1.2, 0.5, 2.0]], np.float32), (num_anchors, 1))
    else:  # Regular simplex: e_i - mean, all pairwise cosines -1/(A - 1).
        vectors = (np.eye(num_anchors) - 1.0 / num_anchors).astype(np.float32)
    features = vectors.reshape(batch_size, num_views, -1)
    labels = None if formulation == "simclr" else np.array([0, 1, 0, 2, 1])
    for temperature in (0.05, 1.0):
        value = losses.supcon_loss(
            labels, features, temperature, "out" if formulation == "simclr" else formulation
        )
        assert float(value) == pytest.approx(math.log(num_anchors - 1), abs=2e-5)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


def _closed_form_anchor_gradient(vectors, classes, anchor, temperature, formulation):
    """Khosla et al. Sec. 3.2.3: dL_i/dz_i = (1/t)[sum_p z_p (P_ip - X_ip) + sum_n z_n P_in]."""
    others = [a for a in range(len(vectors)) if a != anchor]
    logits = {a: float(vectors[anchor] @ vectors[a]) / temperature for a in others}
    denominator = math.fsum(math.exp(logits[a]) for a in others)
    softmax = {a: math.exp(logits[a]) / denominator for a in others}
    positives = [a for a in others if classes[a] == classes[anchor]]
    negatives = [a for a in others if classes[a] != classes[anchor]]
    positive_sum = math.fsum(math.exp(logits[p]) for p in positives)
    gradient = np.zeros(vectors.shape[1])
    for positive in positives:
        if formulation == "out":
            target = 1.0 / len(positives)
        else:
            target = math.exp(logits[positive]) / positive_sum
        gradient += vectors[positive] * (softmax[positive] - target)
    for negative in negatives:
        gradient += vectors[negative] * softmax[negative]
    return gradient / temperature


@pytest.mark.parametrize("formulation", ["out", "in"])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_anchor_gradient_matches_the_papers_closed_form(formulation, temperature):
    """Gradient of each anchor's term w.r.t. its own normalised vector, others held fixed.

    The anchors are passed apart from the contrast set (which is held constant), so anchor i's
    vector enters only term i: row i of the gradient of the sum of the terms w.r.t. the anchors
    is d term_i / d z_i, for every anchor at once.
    """
    rng = np.random.default_rng(4)
    classes = np.array([0, 0, 1, 1, 1, 2, 0, 2, 3, 1])
    vectors = _unit_rows(rng.normal(size=(10, 6))).astype(np.float32)
    contrast = ops.convert_to_tensor(vectors)
    class_tensor = ops.convert_to_tensor(classes, "int32")
    positions = ops.arange(len(vectors), dtype="int32")

    def terms_of(anchors):
        return losses._supcon_terms(anchors, contrast, class_tensor, class_tensor, positions,
                                    temperature, formulation)

    terms, has_positive = (to_numpy(t) for t in terms_of(vectors))
    autodiff_rows = gradient(lambda anchors: ops.sum(terms_of(anchors)[0]), vectors)
    for anchor in range(len(vectors)):
        term, autodiff = float(terms[anchor]), autodiff_rows[anchor]
        if not bool(has_positive[anchor]):  # Class 3 is a singleton: no term, no gradient.
            assert anchor == 8 and term == 0.0 and np.all(autodiff == 0)
            continue
        expected = _closed_form_anchor_gradient(vectors.astype(np.float64), classes, anchor,
                                                temperature, formulation)
        np.testing.assert_allclose(autodiff, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["out", "in", "simclr"])
def test_batch_gradient_through_the_normalisation_matches_closed_form(mode):
    rng = np.random.default_rng(5)
    labels = np.array([0, 1, 0, 2, 1, 3])
    features = (rng.normal(size=(6, 2, 5)) * rng.uniform(0.5, 3.0, size=(6, 2, 1))).astype(np.float32)
    temperature = 0.2
    label_arg = None if mode == "simclr" else labels
    formulation = "out" if mode == "simclr" else mode
    autodiff = gradient(lambda x: losses.supcon_loss(label_arg, x, temperature, formulation),
                        features)
    expected = reference_gradient(label_arg, features, temperature, formulation)
    np.testing.assert_allclose(autodiff, expected, rtol=1e-4, atol=1e-6)
    # Scale invariance: the gradient is orthogonal to each input vector.
    radial = np.sum(autodiff * features, axis=-1)
    np.testing.assert_allclose(radial, 0.0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Degenerate batches: finite, no NaN
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, shape",
    [
        (np.arange(6), (6, 4)),  # V = 1, all singletons.
        (np.arange(6), (6, 1, 4)),
        (None, (6, 1, 4)),  # SimCLR with one view: no positive.
        (np.array([0]), (1, 4)),  # A single anchor.
    ],
)
def test_no_positive_anywhere_gives_zero_and_zero_gradient(labels, shape):
    features = np.random.default_rng(6).normal(size=shape).astype(np.float32)
    for formulation in ("out", "in"):
        value, autodiff = value_and_gradient(
            lambda x: losses.supcon_loss(labels, x, 0.1, formulation), features
        )
        assert float(losses.supcon_loss(labels, features, 0.1, formulation)) == 0.0  # Eager.
        assert float(value) == 0.0
        assert np.all(autodiff == 0.0)


@pytest.mark.parametrize("case", ["zero_vectors", "identical", "min_temperature", "huge", "opposite"])
def test_no_nan_in_values_or_gradients(case):
    rng = np.random.default_rng(7)
    labels = np.array([0, 0, 1, 1, 2])
    features = rng.normal(size=(5, 2, 3)).astype(np.float32)
    temperature = 0.1
    if case == "zero_vectors":
        features[1] = 0.0
        features[3, 0] = 0.0
    elif case == "identical":
        features[:] = features[0, 0]
    elif case == "min_temperature":
        temperature = 1e-4
    elif case == "huge":
        features *= 1e18
    elif case == "opposite":  # Positives at cosine -1, negatives at +1, tiny temperature.
        features = np.zeros((5, 2, 3), np.float32)
        features[:, 0, 0] = 1.0
        features[:, 1, 0] = -1.0
        temperature = 0.01  # Positives at logit -100, negatives at +100.
    for labels_arg, formulation in ((labels, "out"), (labels, "in"), (None, "out"), (None, "in")):
        value, autodiff = value_and_gradient(
            lambda x: losses.supcon_loss(labels_arg, x, temperature, formulation), features
        )
        assert np.isfinite(float(value)) and float(value) >= -1e-5
        assert np.all(np.isfinite(autodiff))
        eager = float(losses.supcon_loss(labels_arg, features, temperature, formulation))
        assert eager == pytest.approx(float(value), rel=1e-5, abs=1e-5)
        if case in ("min_temperature", "huge"):  # finite, and right: the float64 log-sum-exp reference
            expected = logsumexp_reference_supcon(labels_arg, features, temperature)[formulation]
            # float32 logits of size up to 1/temperature carry rounding errors of ~1e-7 / temperature.
            assert abs(eager - expected) <= 1e-6 * (1 + abs(expected)) + 1e-6 / temperature, (eager, expected)
        if case == "huge":  # and the gradient (of size 1e-18: 1 / the norm) is the closed form's
            expected_gradient = reference_gradient(labels_arg, features, temperature, formulation)
            # Its part along each input vector, which the closed form projects out, is not exactly
            # 0 at this scale: the normalisation's term x (x . g) / |x|^3 underflows in float32
            # (|x|^3 = 1e54). It only changes norms, to which the loss is blind: compare the rest.
            unit = features / np.linalg.norm(features.astype(np.float64), axis=-1, keepdims=True)
            tangential = autodiff - unit * np.sum(unit * autodiff, axis=-1, keepdims=True)
            np.testing.assert_allclose(tangential, expected_gradient, rtol=1e-4,
                                       atol=1e-5 * np.abs(expected_gradient).max())
    value, autodiff = value_and_gradient(
        lambda x: losses.npairs_loss(labels, x[:, 0], temperature), features
    )
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(autodiff))
    if case == "opposite":  # L_in must not underflow to log(0) = inf either.
        value = float(losses.supcon_loss(labels, features, temperature, "in"))
        expected = reference_supcon(labels, features.astype(np.float64), temperature, "in")
        assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_features_are_refused_in_eager_calls(bad):
    features = np.random.default_rng(12).normal(size=(4, 2, 3)).astype(np.float32)
    features[2, 1, 0] = bad
    labels = np.array([0, 1, 1, 0])
    where = r"features contain NaN or infinite values \(the first: {} at index {}\)"
    for call, name, index in (
            (lambda: losses.supcon_loss(labels, features), "supcon_loss", r"\(2, 1, 0\)"),
            (lambda: losses.supcon_loss(None, ops.convert_to_tensor(features, "float16")), "supcon_loss", r"\(2, 1, 0\)"),
            (lambda: losses.SupConLoss()(labels, features), "supcon_loss", r"\(2, 1, 0\)"),
            (lambda: losses.npairs_loss(labels, features[:, 1]), "npairs_loss", r"\(2, 0\)"),
            (lambda: losses.supcon_queue_loss(labels, features[:, 0], features[:, 0], features[:, 1], labels),
             "supcon_queue_loss", r"\(2, 0\)"),
    ):
        with pytest.raises(ValueError, match=f"{name}: " + where.format(r"-?(nan|inf)", index)):
            call()


def test_nan_features_in_a_traced_call_give_a_nan_loss():
    """While the loss is traced (a compiled fit, tf.function, jax.jit) the values are not known:
    no error can be raised, and, as documented, the loss of such a batch is NaN."""
    features = np.random.default_rng(12).normal(size=(4, 2, 3)).astype(np.float32)
    features[2, 1, 0] = np.nan
    compiled = xla_compile(lambda y, x: losses.supcon_loss(y, x, 0.1))
    assert np.isnan(float(compiled(np.array([0, 1, 1, 0]), features)))
    features[2, 1, 0] = 1.0
    assert np.isfinite(float(compiled(np.array([0, 1, 1, 0]), features)))


def test_xla_compiled_functions_agree_with_eager():
    """tf.function(jit_compile=True) (TPU-style) on TensorFlow, jax.jit on JAX."""
    rng = np.random.default_rng(8)
    labels = ops.convert_to_tensor(rng.integers(0, 3, size=9))
    features = ops.convert_to_tensor(rng.normal(size=(9, 2, 4)).astype(np.float32))
    eager = float(losses.supcon_loss(labels, features, 0.1))
    xla = xla_compile(lambda y, x: losses.supcon_loss(y, x, 0.1))
    assert float(xla(labels, features)) == pytest.approx(eager, abs=1e-5)
    simclr = xla_compile(lambda x: losses.supcon_loss(None, x, 0.1, "in"))
    assert float(simclr(features)) == pytest.approx(
        float(losses.supcon_loss(None, features, 0.1, "in")), abs=1e-5
    )


@pytest.mark.tensorflow_only
def test_traced_function_with_unknown_batch_size_agrees_with_eager():
    """A tf.function traced with an unknown batch size (JAX always traces concrete shapes)."""
    import tensorflow as tf

    rng = np.random.default_rng(8)
    labels = tf.constant(rng.integers(0, 3, size=9))
    features = tf.constant(rng.normal(size=(9, 2, 4)).astype(np.float32))
    dynamic = tf.function(
        lambda y, x: losses.supcon_loss(y, x, 0.1, "in"),
        input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 2, 4], tf.float32)],
    )
    assert float(dynamic(labels, features)) == pytest.approx(
        float(losses.supcon_loss(labels, features, 0.1, "in")), abs=1e-5
    )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_LABELS = np.array([0, 1, 1, 0])
_FEATURES = np.zeros((4, 2, 3), np.float32) + 1.0


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature=0.0), ValueError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature=-0.1), ValueError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature=float("nan")), ValueError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature=float("inf")), ValueError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature=1e-9), ValueError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature="0.1"), TypeError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, temperature=True), TypeError, "temperature"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, formulation="mean"), ValueError, "formulation"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, formulation="OUT"), ValueError, "formulation"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES, formulation=None), TypeError, "formulation"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES[:, 0, 0]), ValueError, "rank 1"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES[..., None]), ValueError, "rank 4"),
        (lambda: losses.supcon_loss(_LABELS[:, None, None], _FEATURES), ValueError, "labels must have shape"),
        (lambda: losses.supcon_loss(np.stack([_LABELS, _LABELS], 1), _FEATURES), ValueError, "labels must have shape"),
        (lambda: losses.supcon_loss(np.int64(1), _FEATURES), ValueError, "labels must have shape"),
        (lambda: losses.supcon_loss(_LABELS[:3], _FEATURES), ValueError, "batch sizes"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES[:2]), ValueError, "batch sizes"),
        (lambda: losses.supcon_loss(_LABELS.astype(np.float32), _FEATURES), TypeError, "integers"),
        (lambda: losses.supcon_loss([0.0, 1.0, 1.0, 0.0], _FEATURES), TypeError, "integers"),
        (lambda: losses.supcon_loss(_LABELS.astype(bool), _FEATURES), TypeError, "integers"),
        (lambda: losses.supcon_loss(_LABELS, _FEATURES.astype(np.int32)), TypeError, "floating"),
        (lambda: losses.supcon_loss(_LABELS, np.zeros((4, 2, 0), np.float32)), ValueError, "D = 0"),
        (lambda: losses.npairs_loss(_LABELS, _FEATURES), ValueError, r"\(B, D\)"),
        (lambda: losses.npairs_loss(None, _FEATURES[:, 0]), ValueError, "labels are required"),
        (lambda: losses.npairs_loss(_LABELS.astype(np.float64), _FEATURES[:, 0]), TypeError, "integers"),
        (lambda: losses.npairs_loss(_LABELS[:2], _FEATURES[:, 0]), ValueError, "batch sizes"),
        (lambda: losses.npairs_loss(_LABELS, _FEATURES[:, 0], temperature=0), ValueError, "temperature"),
        (lambda: losses.SupConLoss(temperature=-1.0), ValueError, "temperature"),
        (lambda: losses.SupConLoss(formulation="both"), ValueError, "formulation"),
    ],
)
def test_errors_name_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_supconloss_refuses_sample_weights():
    with pytest.raises(ValueError, match="sample_weight"):
        losses.SupConLoss()(_LABELS, _FEATURES, sample_weight=np.ones(4, np.float32))


# --------------------------------------------------------------------------------------------
# The Keras Loss
# --------------------------------------------------------------------------------------------


def _tiny_model(num_views=2, input_dim=6, embedding_dim=4, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((num_views, input_dim)), keras.layers.Dense(embedding_dim)])


@pytest.mark.parametrize("formulation", ["out", "in"])
def test_supconloss_in_compile_equals_supcon_loss(formulation):
    rng = np.random.default_rng(9)
    inputs = rng.normal(size=(10, 2, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=10)
    model = _tiny_model()
    learning_rate = 0.3
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=losses.SupConLoss(temperature=0.2, formulation=formulation))
    kernel0 = [to_numpy(weight).copy() for weight in model.trainable_weights]

    expected = float(losses.supcon_loss(labels, model(inputs), 0.2, formulation))
    evaluated = model.evaluate(inputs, labels, batch_size=10, verbose=0)
    assert evaluated == pytest.approx(expected, abs=1e-5)
    if formulation == "out":  # Labels of shape (B, 1) too (one more trace: only once).
        assert model.evaluate(inputs, labels[:, None], batch_size=10, verbose=0) == \
            pytest.approx(expected, abs=1e-5)

    gradients = model_gradients(
        model, lambda outputs: losses.supcon_loss(labels, outputs, 0.2, formulation), inputs
    )
    trained = model.train_on_batch(inputs, labels)  # The loss of the step, before the update.
    assert float(np.ravel(trained)[0]) == pytest.approx(expected, abs=1e-5)
    for weight, start, weight_gradient in zip(model.trainable_weights, kernel0, gradients):
        np.testing.assert_allclose(to_numpy(weight), start - learning_rate * weight_gradient, atol=1e-6)

    after_step = float(losses.supcon_loss(labels, model(inputs), 0.2, formulation))
    history = model.fit(inputs, labels, batch_size=10, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(after_step, abs=1e-5)


def test_supconloss_config_round_trip_and_serialization(tmp_path):
    loss = losses.SupConLoss(temperature=0.07, formulation="in", name="my_supcon")
    config = loss.get_config()
    assert config["temperature"] == 0.07 and config["formulation"] == "in"
    assert config["name"] == "my_supcon"
    clone = losses.SupConLoss.from_config(config)
    assert (clone.temperature, clone.formulation, clone.name) == (0.07, "in", "my_supcon")

    serialized = keras.saving.serialize_keras_object(loss)
    assert "supcon_lib" in str(serialized)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, losses.SupConLoss)
    assert (restored.temperature, restored.formulation) == (0.07, "in")
    assert keras.saving.get_registered_name(losses.SupConLoss) == "supcon_lib>SupConLoss"

    rng = np.random.default_rng(10)
    inputs = rng.normal(size=(6, 2, 6)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 2, 2])
    value = float(restored(labels, inputs))
    assert value == pytest.approx(float(losses.supcon_loss(labels, inputs, 0.07, "in")), abs=1e-6)

    model = _tiny_model()
    model.compile(optimizer="sgd", loss=loss)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.loss, losses.SupConLoss)
    assert (reloaded.loss.temperature, reloaded.loss.formulation) == (0.07, "in")


# --------------------------------------------------------------------------------------------
# Backend-agnostic: TensorFlow only in the cross-replica glue
# --------------------------------------------------------------------------------------------


@pytest.mark.tensorflow_only
def test_tensorflow_is_only_used_by_the_cross_replica_glue():
    tree = ast.parse(LOSSES_SOURCE.read_text())
    glue = {"_multi_replica_context", "_gather_across_replicas", "_sum_across_replicas"}
    # No module-level TensorFlow import.
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names]
            module = getattr(node, "module", None) or ""
            assert "tensorflow" not in module and not any("tensorflow" in n for n in names)
    offenders = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or function.name in glue:
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and node.id == "tf":
                offenders.append(function.name)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", "") or ""]
                if any("tensorflow" in name for name in names):
                    offenders.append(function.name)
    assert not offenders, f"TensorFlow used outside the glue in {sorted(set(offenders))}"
    source = LOSSES_SOURCE.read_text()
    assert 'keras.backend.backend() != "tensorflow"' in source


def test_keras_wrappers_for_simclr_and_npairs_match_the_functions():
    rng = np.random.default_rng(11)
    labels = np.array([0, 1, 0, 2, 1, 2], np.int32)
    views = rng.normal(size=(6, 2, 8)).astype(np.float32)
    single = views[:, 0]
    simclr = losses.SupConLoss(temperature=0.2, use_labels=False)
    np.testing.assert_allclose(float(simclr(labels, views)), float(losses.supcon_loss(None, views, 0.2)), rtol=1e-6)
    assert float(simclr(labels, views)) != pytest.approx(float(losses.supcon_loss(labels, views, 0.2)))
    npairs = losses.NPairsLoss(temperature=0.05)
    np.testing.assert_allclose(float(npairs(labels.astype(np.float32), single)),
                               float(losses.npairs_loss(labels, single, 0.05)), rtol=1e-6)
    for loss in (simclr, npairs):
        restored = type(loss).from_config(loss.get_config())
        assert restored.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="sample_weight"):
        npairs(labels, single, sample_weight=np.ones(6))


# --------------------------------------------------------------------------------------------
# Fuzz: 1,000 seeded random cases against a float64 log-sum-exp reference
# --------------------------------------------------------------------------------------------


def logsumexp_reference_supcon(labels, features, temperature):
    """``{"out": L_out, "in": L_in}`` as reference_supcon computes them, vectorised in float64
    with a log-sum-exp (fast enough for 2,048 anchors); checked against the loop reference below."""
    features = np.asarray(features, dtype=np.float64)
    batch_size, num_views, dim = features.shape
    vectors = features.reshape(-1, dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    classes = np.repeat(np.arange(batch_size) if labels is None else np.ravel(labels), num_views)
    logits = vectors @ vectors.T / temperature
    np.fill_diagonal(logits, -np.inf)  # an anchor is never its own contrast
    row_max = logits.max(axis=1, keepdims=True)
    log_probability = logits - (row_max + np.log(np.exp(logits - row_max).sum(axis=1, keepdims=True)))
    positive = (classes[:, None] == classes[None, :]) & ~np.eye(len(classes), dtype=bool)
    counts = positive.sum(axis=1)
    has_positive = counts > 0
    if not has_positive.any():
        return {"out": 0.0, "in": 0.0}
    log_probability, positive, counts = log_probability[has_positive], positive[has_positive], counts[has_positive]
    outside = -np.where(positive, log_probability, 0.0).sum(axis=1) / counts
    masked = np.where(positive, log_probability, -np.inf)
    top = masked.max(axis=1, keepdims=True)
    inside = -(top[:, 0] + np.log(np.exp(masked - top).sum(axis=1)) - np.log(counts))
    return {"out": float(outside.mean()), "in": float(inside.mean())}


def _fuzz_case(index):
    """Case ``index`` of the fuzz set: sizes, views, temperature, labels, dtype, scale (seeded)."""
    rng = np.random.default_rng([2026, index])
    batch_size = int(np.exp(rng.uniform(0, np.log(512))).round())  # log-uniform in 1..512
    num_views = int(rng.integers(1, 5))
    temperature = float(np.exp(rng.uniform(np.log(1e-3), 0.0)))  # log-uniform in 1e-3..1
    kind = ["random", "singletons", "single", "mixed"][index % 4]
    labels = _make_labels(kind, batch_size, rng)
    dtype = ["float32", "float32", "float16", "bfloat16"][index % 4 if index % 8 < 4 else 0]
    scale = float(rng.choice([1e-3, 1.0, 100.0]))
    features = _make_features(labels, num_views, int(rng.integers(2, 33)), rng, clustered=bool(index % 3 == 0))
    return labels, (scale * features).astype(np.float32), temperature, dtype


@pytest.mark.backend_independent
def test_logsumexp_reference_matches_the_loop_reference():
    for index in range(12):
        labels, features, temperature, _ = _fuzz_case(index)
        labels, features = labels[:12], features[:12]
        fast = logsumexp_reference_supcon(labels, features, temperature)
        for formulation in ("out", "in"):
            assert fast[formulation] == pytest.approx(
                reference_supcon(labels, features, temperature, formulation), rel=1e-9, abs=1e-9)


@pytest.mark.tensorflow_only  # eager JAX compiles every new shape and temperature: 1,000 compiles
def test_fuzz_against_the_float64_reference():
    checked = {"float16": 0, "bfloat16": 0, "singleton classes": 0, "large": 0}
    for index in range(1000):
        labels, features, temperature, dtype = _fuzz_case(index)
        inputs = ops.cast(features, dtype)
        exact = ops.convert_to_numpy(ops.cast(inputs, "float32"))  # what the loss really receives
        reference = logsumexp_reference_supcon(labels, exact, temperature)
        for formulation in ("out", "in"):
            value = float(losses.supcon_loss(labels, inputs, temperature, formulation))
            expected = reference[formulation]
            assert np.isfinite(value), (index, formulation)
            # float32 logits of size up to 1/temperature carry rounding error ~ 1e-7 / temperature.
            tolerance = 2e-6 * (1.0 + abs(expected)) + 5e-7 / temperature
            assert abs(value - expected) <= tolerance, (index, formulation, value, expected)
        checked[dtype] = checked.get(dtype, 0) + 1
        checked["singleton classes"] += int(np.min(np.unique(labels, return_counts=True)[1]) == 1)
        checked["large"] += int(len(labels) * features.shape[1] > 512)
    assert min(checked.values()) >= 50, checked  # every kind of case really occurs
