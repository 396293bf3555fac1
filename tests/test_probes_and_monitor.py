"""Label efficiency (supcon_lib.probes), the geometry monitor (supcon_lib.callbacks) and a classifier
under corruptions (robustness.evaluate_under_corruptions), each against a direct computation."""

import keras
import numpy as np
import pytest

from supcon_lib import callbacks, evaluation, geometry, probes, robustness


# ---------------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------------
def test_stratified_subset_takes_the_fraction_of_every_class_nested_and_seeded():
    labels = np.repeat(np.arange(4), [100, 50, 10, 3])
    small, large = probes.stratified_subset(labels, 0.1, seed=3), probes.stratified_subset(labels, 0.5, seed=3)
    assert [int(np.sum(labels[small] == c)) for c in range(4)] == [10, 5, 1, 1]  # at least one per class
    assert [int(np.sum(labels[large] == c)) for c in range(4)] == [50, 25, 5, 2]
    assert set(small) <= set(large)  # nested: more labels, same images plus others
    assert np.array_equal(small, probes.stratified_subset(labels, 0.1, seed=3))
    assert not np.array_equal(small, probes.stratified_subset(labels, 0.1, seed=4))
    assert np.array_equal(probes.stratified_subset(labels, 1.0), np.arange(len(labels)))
    assert np.all(np.diff(small) > 0)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan"), True, "half"])
def test_stratified_subset_refuses_bad_fractions(fraction):
    with pytest.raises(ValueError, match="fraction"):
        probes.stratified_subset(np.arange(10) % 2, fraction)


def test_stratified_subset_refuses_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        probes.stratified_subset(np.zeros((3, 2), int), 0.5)
    with pytest.raises(ValueError, match="labels"):
        probes.stratified_subset(np.array([0.5, 1.5]), 0.5)


def _clusters(rng, per_class, classes=3, dim=3, spread=0.1):
    centres = np.eye(classes, dim) * 5
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_label_efficiency_on_separable_clusters_and_against_direct_calls():
    rng = np.random.default_rng(0)
    train, train_labels = _clusters(rng, 100)
    test, test_labels = _clusters(rng, 30)
    rows = probes.label_efficiency(train, train_labels, test, test_labels, fractions=(0.01, 0.1, 1.0), k=5)
    assert [r["labels"] for r in rows] == [3, 30, 300]
    assert [r["k"] for r in rows] == [1, 5, 5]  # never more neighbours than a class has labels
    assert all(r["linear_accuracy"] == 1.0 and r["knn_accuracy"] == 1.0 for r in rows)
    # A harder case: kNN at 100 % equals the direct call; the probe equals a StandardScaler +
    # LogisticRegression fitted here.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train, test = train + rng.normal(scale=4, size=train.shape), test + rng.normal(scale=4, size=test.shape)
    rows = probes.label_efficiency(train, train_labels, test, test_labels, fractions=(0.1, 1.0), k=7)
    assert rows[1]["knn_accuracy"] == evaluation.knn_accuracy(train, train_labels, test, test_labels, k=7)
    chosen = probes.stratified_subset(train_labels, 0.1)
    assert rows[0]["knn_accuracy"] == evaluation.knn_accuracy(train[chosen], train_labels[chosen], test, test_labels, k=7)
    scaler = StandardScaler().fit(train)
    reference = LogisticRegression(max_iter=1000).fit(scaler.transform(train), train_labels)
    assert rows[1]["linear_accuracy"] == pytest.approx(np.mean(reference.predict(scaler.transform(test)) == test_labels))
    assert 0.4 < rows[1]["linear_accuracy"] < 1.0  # noisy enough that the probe is not trivially right


def test_linear_probe_with_one_labelled_class_predicts_that_class():
    features = np.arange(12, dtype=float).reshape(6, 2)
    assert probes.linear_probe_accuracy(features[:2], [1, 1], features, [1, 1, 0, 0, 1, 2]) == 0.5


@pytest.mark.parametrize("case", ["nan", "widths", "lengths", "regularization"])
def test_linear_probe_refuses_bad_input(case):
    features, labels = np.ones((4, 3)), np.array([0, 1, 0, 1])
    args = dict(train_features=features, train_labels=labels, test_features=features, test_labels=labels)
    if case == "nan":
        args["train_features"] = np.full((4, 3), np.nan)
    elif case == "widths":
        args["test_features"] = np.ones((4, 2))
    elif case == "lengths":
        args["train_labels"] = labels[:3]
    else:
        args["regularization"] = 0
    with pytest.raises(ValueError):
        probes.linear_probe_accuracy(**args)


# ---------------------------------------------------------------------------------------------
# callbacks.GeometryMonitor
# ---------------------------------------------------------------------------------------------
def _tiny_models(seed=0):
    keras.utils.set_random_seed(seed)
    # Batch norm: a monitor that ran the encoder in training mode would move its running averages.
    encoder = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(6),
                                keras.layers.BatchNormalization(), keras.layers.ReLU()])
    head = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    scale = keras.layers.Rescaling(1 / 255)
    return encoder, head, scale


def test_geometry_monitor_measures_what_geometry_computes_on_the_same_embeddings():
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8), np.arange(40) % 4
    encoder, head, scale = _tiny_models()
    monitor = callbacks.GeometryMonitor(images, labels, encoder, scale, head, max_images=30, seed=2)
    before = [keras.ops.convert_to_numpy(v) for v in encoder.variables]
    values = monitor.measure()
    for old, new in zip(before, encoder.variables):  # batch norm's running averages included
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))
    assert set(values) == set(callbacks.GEOMETRY_KEYS)
    chosen = np.sort(np.random.default_rng(2).permutation(40)[:30])
    features = keras.ops.convert_to_numpy(encoder(images[chosen] / 255.0, training=False)).astype(np.float64)
    projections = keras.ops.convert_to_numpy(head(features)).astype(np.float64)
    assert values["feature_alignment"] == pytest.approx(geometry.alignment(features, labels[chosen]), rel=1e-5)
    assert values["feature_uniformity"] == pytest.approx(geometry.uniformity(features), rel=1e-5)
    assert values["projection_alignment"] == pytest.approx(geometry.alignment(projections, labels[chosen]), rel=1e-5)
    assert values["projection_uniformity"] == pytest.approx(geometry.uniformity(projections), rel=1e-5)
    without_head = callbacks.GeometryMonitor(images, labels, encoder, scale, max_images=30, seed=2).measure()
    assert set(without_head) == {"feature_alignment", "feature_uniformity"}


def test_geometry_monitor_fills_the_history_and_leaves_training_unchanged():
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (64, 4, 4, 3), dtype=np.uint8), np.arange(64) % 4

    def train(with_monitor):
        encoder, head, scale = _tiny_models(seed=5)
        inputs = keras.Input((4, 4, 3))
        model = keras.Model(inputs, keras.layers.Dense(4)(encoder(scale(inputs))))
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        extra = [callbacks.GeometryMonitor(images[:20], labels[:20], encoder, scale, max_images=20)] if with_monitor else []
        history = model.fit(images, labels, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=extra)
        return history.history, [w.copy() for w in model.get_weights()]

    monitored, weights = train(True)
    plain, plain_weights = train(False)
    assert len(monitored["feature_alignment"]) == len(monitored["feature_uniformity"]) == 3
    assert all(0 <= a <= 4 for a in monitored["feature_alignment"])
    assert all(-8 <= u <= 0 for u in monitored["feature_uniformity"])
    assert "feature_alignment" not in plain
    assert monitored["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    for a, b in zip(weights, plain_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_geometry_monitor_refuses_bad_input():
    images, labels = np.zeros((5, 4, 4, 3), np.uint8), np.arange(5)
    encoder, _, _ = _tiny_models()
    with pytest.raises(ValueError, match="same length"):
        callbacks.GeometryMonitor(images, labels[:4], encoder)
    with pytest.raises(ValueError, match="max_images"):
        callbacks.GeometryMonitor(images, labels, encoder, max_images=1)
    with pytest.raises(ValueError, match="batch_size"):
        callbacks.GeometryMonitor(images, labels, encoder, batch_size=0)
    with pytest.raises(ValueError, match="at least 2 images"):
        callbacks.GeometryMonitor(images[:1], labels[:1], encoder)
    with pytest.raises(ValueError, match="encoder"):
        callbacks.GeometryMonitor(images, labels, None)


# ---------------------------------------------------------------------------------------------
# robustness.evaluate_under_corruptions
# ---------------------------------------------------------------------------------------------
def _brightness_classifier(images):
    """Logits of a toy classifier: class 1 when the mean pixel value is above 128."""
    mean = images.reshape(len(images), -1).mean(axis=1) / 255.0
    return np.stack([(0.5 - mean) * 8, (mean - 0.5) * 8], axis=1)


def test_evaluate_under_corruptions_equals_the_direct_computation():
    rng = np.random.default_rng(3)
    labels = np.arange(40) % 2
    base = np.where(labels[:, None, None, None] == 1, 150, 100)
    images = np.clip(base + rng.integers(-40, 40, (40, 8, 8, 3)), 0, 255).astype(np.uint8)
    rows = robustness.evaluate_under_corruptions(_brightness_classifier, images, labels,
                                                 corruptions=["gaussian_noise", "brightness"], severities=(1, 5))
    assert [(r["corruption"], r["severity"]) for r in rows] == [
        ("clean", 0), ("gaussian_noise", 1), ("gaussian_noise", 5), ("brightness", 1), ("brightness", 5)]
    for r in rows:
        batch = images if r["corruption"] == "clean" else robustness.corrupt(images, r["corruption"], r["severity"])
        probabilities = robustness.softmax(_brightness_classifier(batch))
        assert r["accuracy"] == np.mean(probabilities.argmax(1) == labels)
        assert r["ece"] == pytest.approx(robustness.expected_calibration_error(probabilities, labels))
        assert r["mean_confidence"] == pytest.approx(probabilities.max(1).mean())
    assert rows[0]["accuracy"] == 1.0
    assert rows[-1]["accuracy"] < 1.0  # a strong brightening pushes dark images over the threshold


def test_evaluate_under_corruptions_refuses_bad_input():
    images, labels = np.zeros((4, 8, 8, 3), np.uint8), np.arange(4) % 2
    with pytest.raises(ValueError, match="unknown corruption"):
        robustness.evaluate_under_corruptions(_brightness_classifier, images, labels, corruptions=["fog"])
    with pytest.raises(ValueError, match="severity"):
        robustness.evaluate_under_corruptions(_brightness_classifier, images, labels, severities=(6,))
    with pytest.raises(ValueError, match="logits_fn"):
        robustness.evaluate_under_corruptions(lambda x: np.zeros(len(x)), images, labels)
