"""Tests for supcon_lib.evaluation: accuracy, embeddings, kNN voting, t-SNE, heatmap statistics."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from sklearn.neighbors import KNeighborsClassifier

from supcon_lib import evaluation


def _unit(angle_degrees: float) -> list[float]:
    angle = np.deg2rad(angle_degrees)
    return [float(np.cos(angle)), float(np.sin(angle))]


def _clusters(points_per_class: int, num_classes: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 3.0
    labels = np.repeat(np.arange(num_classes), points_per_class)
    points = centres[labels] + rng.normal(size=(len(labels), dim)) * spread
    order = rng.permutation(len(labels))
    return points[order].astype(np.float32), labels[order]


# --- accuracy and embeddings ------------------------------------------------------------------------

def test_accuracy_from_predictions_and_logits():
    labels = np.array([0, 1, 2, 1])
    assert evaluation.accuracy(labels, np.array([0, 1, 1, 1])) == 0.75
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    assert evaluation.accuracy(labels, logits) == 0.5  # argmax: 0, 1, 0, 0
    assert evaluation.accuracy(labels[:, None], logits) == 0.5  # Keras-style (N, 1) labels
    with pytest.raises(ValueError, match="different lengths"):
        evaluation.accuracy(labels, np.array([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        evaluation.accuracy(np.array([0.5, 1.0]), np.array([0, 1]))


def _dense_model(input_dim: int, output_dim: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_dim,))
    return keras.Model(inputs, keras.layers.Dense(output_dim)(inputs))


def test_extract_embeddings_batches_and_preprocess():
    model = _dense_model(6, 4)
    images = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(images * 2.0))
    embeddings = evaluation.extract_embeddings(model, images, batch_size=3, preprocess=lambda x: x * 2.0)
    assert embeddings.dtype == np.float32 and embeddings.shape == (10, 4)
    np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-5)
    # A Keras layer works as preprocess too, and so does a plain callable as the model.
    rescale = keras.layers.Rescaling(2.0)
    np.testing.assert_allclose(
        evaluation.extract_embeddings(model, images, batch_size=4, preprocess=rescale), expected, rtol=1e-5, atol=1e-5
    )
    plain = evaluation.extract_embeddings(lambda batch, training: model(batch, training=training), images * 2.0)
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-5)


def test_extract_embeddings_errors():
    model = _dense_model(6, 4)
    with pytest.raises(ValueError, match="batch_size"):
        evaluation.extract_embeddings(model, np.zeros((4, 6)), batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        evaluation.extract_embeddings(model, np.zeros((0, 6)))
    with pytest.raises(ValueError, match="preprocess"):
        evaluation.extract_embeddings(model, np.zeros((4, 6)), preprocess="normalise")


def test_test_accuracy_of_a_known_classifier():
    # A Dense layer with identity weights: the logits are the inputs themselves.
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(3, kernel_initializer="identity", bias_initializer="zeros")
    model = keras.Model(inputs, dense(inputs))
    images = np.eye(3, dtype=np.float32)[[0, 1, 2, 2, 1]]
    assert evaluation.test_accuracy(model, images, np.array([0, 1, 2, 0, 0]), batch_size=2) == 0.6
    with pytest.raises(ValueError, match="different lengths"):
        evaluation.test_accuracy(model, images, np.array([0, 1]))


# --- nearest neighbours and kNN ---------------------------------------------------------------------

def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(1)
    queries, bank = rng.normal(size=(37, 8)), rng.normal(size=(50, 8))
    indices, similarities = evaluation.nearest_neighbours(queries, bank, k=5, batch_size=7, return_similarities=True)
    cosine = evaluation.l2_normalize(queries) @ evaluation.l2_normalize(bank).T
    np.testing.assert_array_equal(indices, np.argsort(-cosine, axis=1)[:, :5])
    np.testing.assert_allclose(similarities, np.sort(cosine, axis=1)[:, ::-1][:, :5], rtol=1e-5, atol=1e-6)
    # Cosine, not Euclidean: scaling a bank vector does not change its rank.
    scaled = bank * rng.uniform(0.1, 10.0, size=(50, 1))
    np.testing.assert_array_equal(evaluation.nearest_neighbours(queries, scaled, k=5), indices)
    # k equal to the bank size returns the full ranking.
    assert evaluation.nearest_neighbours(queries, bank, k=50).shape == (37, 50)


def test_knn_majority_vote_on_hand_made_example():
    # Query along the x axis. Its 3 nearest neighbours: two of class 0 at +-84 degrees (cosine 0.10
    # each) and one of class 1 at 25 degrees (cosine 0.91). Class 2 sits behind the query.
    train = np.array([_unit(84), _unit(-84), _unit(25), _unit(180), _unit(175)])
    train_labels = np.array([0, 0, 1, 2, 2])
    query = np.array([_unit(0)])
    # Majority: two votes beat one.
    assert evaluation.knn_predict(train, train_labels, query, k=3).tolist() == [0]
    # Similarity-weighted: 0.91 beats 0.10 + 0.10.
    assert evaluation.knn_predict(train, train_labels, query, k=3, weighted=True).tolist() == [1]
    # k=1 is the single nearest neighbour.
    assert evaluation.knn_predict(train, train_labels, query, k=1).tolist() == [1]


@pytest.mark.parametrize("near_label, far_label", [(0, 1), (1, 0)])
def test_knn_vote_ties_go_to_the_larger_summed_similarity(near_label, far_label):
    # 2 votes each: the pair at +-30 degrees (cosine 0.87) beats the pair at +-60 degrees (0.5),
    # whichever label it carries; so the smaller label does not win merely for being smaller.
    train = np.array([_unit(30), _unit(-30), _unit(60), _unit(-60), _unit(180)])
    train_labels = np.array([near_label, near_label, far_label, far_label, 2])
    query = np.array([_unit(0)])
    assert evaluation.knn_predict(train, train_labels, query, k=4).tolist() == [near_label]


def test_knn_accuracy_on_clusters_and_batching():
    train, train_labels = _clusters(40, num_classes=5, dim=16, spread=0.3, seed=0)
    test, test_labels = _clusters(10, num_classes=5, dim=16, spread=0.3, seed=0)
    assert evaluation.knn_accuracy(train, train_labels, test, test_labels, k=20) == 1.0
    # Shuffled labels: chance level, far from perfect.
    shuffled = np.random.default_rng(0).permutation(train_labels)
    assert evaluation.knn_accuracy(train, shuffled, test, test_labels, k=5) < 0.6
    # Batch size does not change the answer.
    noisy, noisy_labels = _clusters(40, num_classes=5, dim=16, spread=3.0, seed=1)
    big = evaluation.knn_predict(noisy, noisy_labels, test, k=7)
    small = evaluation.knn_predict(noisy, noisy_labels, test, k=7, batch_size=3)
    np.testing.assert_array_equal(big, small)


def test_knn_errors():
    train, labels = np.ones((5, 3)), np.arange(5)
    with pytest.raises(ValueError, match="k=6 is larger than the number of train_embeddings"):
        evaluation.knn_accuracy(train, labels, np.ones((2, 3)), np.zeros(2, int), k=6)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluation.knn_predict(train, labels, np.ones((2, 3)), k=0)
    with pytest.raises(ValueError, match="train_embeddings and train_labels have different lengths"):
        evaluation.knn_predict(train, labels[:4], np.ones((2, 3)), k=2)
    with pytest.raises(ValueError, match="test_embeddings and test_labels have different lengths"):
        evaluation.knn_accuracy(train, labels, np.ones((2, 3)), np.zeros(3, int), k=2)
    with pytest.raises(ValueError, match="different dimensions"):
        evaluation.nearest_neighbours(np.ones((2, 4)), train, k=2)
    with pytest.raises(ValueError, match="2-D"):
        evaluation.nearest_neighbours(np.ones(3), train, k=2)
    with pytest.raises(ValueError, match="NaN"):
        evaluation.nearest_neighbours(np.full((2, 3), np.nan), train, k=2)


# --- confusion matrix and class similarity ----------------------------------------------------------

def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 6, 500), rng.integers(0, 6, 500)
    ours = evaluation.confusion_matrix(labels, predictions, num_classes=7)  # class 6 never occurs
    np.testing.assert_array_equal(ours, sklearn_confusion_matrix(labels, predictions, labels=range(7)))
    assert ours.dtype == np.int64 and ours.sum() == 500
    logits = np.eye(7)[predictions] * 5.0
    np.testing.assert_array_equal(evaluation.confusion_matrix(labels, logits, 7), ours)
    with pytest.raises(ValueError, match="num_classes is 6"):
        evaluation.confusion_matrix(labels, np.full(500, 6), num_classes=6)
    with pytest.raises(ValueError, match="different lengths"):
        evaluation.confusion_matrix(labels, predictions[:-1], num_classes=6)


def test_class_cosine_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 5))
    labels = rng.integers(0, 3, 60)
    labels[0] = 3  # class 3 has a single sample; class 4 has none
    result = evaluation.class_cosine_similarity(embeddings, labels, num_classes=5)
    assert result.shape == (5, 5) and result.dtype == np.float32

    cosine = evaluation.l2_normalize(embeddings) @ evaluation.l2_normalize(embeddings).T
    for first in range(4):
        for second in range(4):
            block = cosine[np.ix_(labels == first, labels == second)]
            if first == second:
                block = block[~np.eye(len(block), dtype=bool)]  # drop each sample's self-similarity
            if block.size:
                assert result[first, second] == pytest.approx(block.mean(), abs=1e-5)
    assert np.isnan(result[3, 3])
    assert np.all(np.isnan(result[4])) and np.all(np.isnan(result[:, 4]))
    np.testing.assert_allclose(result[:4, :4][~np.isnan(result[:4, :4])], result[:4, :4].T[~np.isnan(result[:4, :4])])


def test_class_cosine_similarity_hand_made():
    embeddings = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 1.0], [-1.0, 0.0], [-5.0, 0.0]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    expected = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(evaluation.class_cosine_similarity(embeddings, labels, 3), expected, atol=1e-6)


# --- t-SNE ------------------------------------------------------------------------------------------

TSNE_IMPLEMENTATIONS = ["opentsne", "sklearn"]  # openTSNE is a dependency (pyproject.toml): never skipped


@pytest.fixture(scope="module")
def tsne_clusters():
    # 4 well-separated clusters of 60 points in 64 dimensions (PCA to 20 runs first). One thread:
    # tiny problems gain nothing from two, and spinning threads suffer on a busy machine.
    return _clusters(60, num_classes=4, dim=64, spread=0.5, seed=3)


@pytest.mark.parametrize("method", TSNE_IMPLEMENTATIONS)
def test_tsne_shape_determinism_and_separation(method, tsne_clusters):
    points, labels = tsne_clusters
    first = evaluation.tsne_2d(points, seed=0, pca_dim=20, method=method, n_iter=400, n_jobs=1, return_method=True)
    assert first.method == method
    coordinates = first.coordinates
    assert coordinates.shape == (len(points), 2) and coordinates.dtype == np.float32
    assert np.all(np.isfinite(coordinates))
    again = evaluation.tsne_2d(points, seed=0, pca_dim=20, method=method, n_iter=400, n_jobs=1)
    np.testing.assert_allclose(again, coordinates, rtol=1e-5, atol=1e-4)
    # Well-separated clusters stay separated: leave-one-out 5-NN in the plane is (near) perfect.
    knn = KNeighborsClassifier(n_neighbors=6).fit(coordinates, labels)
    neighbours = knn.kneighbors(coordinates, return_distance=False)[:, 1:]  # drop the point itself
    assert np.mean(labels[neighbours] == labels[:, None]) >= 0.98


def test_tsne_auto_falls_back_to_sklearn(monkeypatch):
    points, _ = _clusters(10, num_classes=2, dim=8, spread=0.5, seed=0)
    monkeypatch.setattr(evaluation, "opentsne_available", lambda: False)
    result = evaluation.tsne_2d(points, n_iter=260, n_jobs=1, return_method=True)
    assert result.method == "sklearn" and result.coordinates.shape == (20, 2)
    coordinates, method = result  # the result also unpacks like a tuple
    assert method == "sklearn"
    with pytest.raises(ValueError, match="openTSNE is not installed"):
        evaluation.tsne_2d(points, method="opentsne")


def test_tsne_errors():
    points = np.random.default_rng(0).normal(size=(20, 5))
    with pytest.raises(ValueError, match="unknown t-SNE method 'umap'"):
        evaluation.tsne_2d(points, method="umap")
    with pytest.raises(ValueError, match="n_iter"):
        evaluation.tsne_2d(points, n_iter=250)
    with pytest.raises(ValueError, match="at least 4 points"):
        evaluation.tsne_2d(points[:3])
    with pytest.raises(ValueError, match="2-D"):
        evaluation.tsne_2d(points[0])
    with pytest.raises(ValueError, match="perplexity"):
        evaluation.tsne_2d(points, perplexity=0)
    with pytest.raises(ValueError, match="seed"):
        evaluation.tsne_2d(points, seed=-1)
