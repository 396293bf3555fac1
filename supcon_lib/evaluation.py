"""Evaluation: accuracy, k-nearest neighbours, t-SNE, and similarity statistics of embeddings.

A contrastive encoder is judged by how well its embeddings separate the classes. Three views:

* **Linear / test accuracy** (:func:`test_accuracy`, :func:`accuracy`): train a classifier head on
  the frozen encoder and measure top-1 accuracy on held-out images.
* **k-nearest-neighbour accuracy** (:func:`knn_accuracy`, :func:`knn_predict`): no training at all;
  each test embedding takes the label the closest training embeddings vote for. Similarity is the
  *cosine* similarity, i.e. the dot product of L2-normalised vectors, the geometry the SupCon loss
  optimises. Queries are processed in batches, so 50,000 x 10,000 comparisons need only a
  ``batch_size x 50,000`` block of memory at a time.
* **Pictures**: :func:`tsne_2d` squeezes embeddings to 2-D for a scatter plot;
  :func:`confusion_matrix` and :func:`class_cosine_similarity` give (C, C) heatmaps.

Everything returns numpy arrays; only :func:`extract_embeddings` (and :func:`flip_averaged`, the
mean over each image and its mirror image, through it) runs a Keras model. Inputs are checked:
wrong shapes, empty or non-finite embeddings, non-integer or negative labels, lengths that
disagree and out-of-range settings raise ``ValueError`` naming the argument; the counting itself
of :func:`accuracy` and :func:`confusion_matrix` is scikit-learn's (``sklearn.metrics``).

*Voting rule of the kNN classifier.* By default (``weighted=False``) each of the ``k`` nearest
training embeddings casts one vote for its label and the label with most votes wins; a tie between
labels with equally many votes goes to the label whose voters have the larger *summed* cosine
similarity to the query (a remaining exact tie goes to the smallest label). With ``weighted=True``
each neighbour's vote is its cosine similarity instead, and the largest sum wins outright.

*t-SNE.* :func:`tsne_2d` first reduces to ``pca_dim`` dimensions with PCA (cheap, removes noise,
and makes the neighbour search fast), then runs openTSNE (``pip install openTSNE``; FFT-accelerated
gradients from 10,000 points on) when it is installed, scikit-learn's Barnes-Hut t-SNE otherwise.
On 2 busy CPU cores, 10,000 points of dimension 128 took 33-46 s with openTSNE (750 iterations).
scikit-learn's default 1,000 iterations took about two minutes, so here it runs 400 by default
(47-49 s; 500 took 56-72 s); the clusters come out just as separated.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Callable, NamedTuple

import numpy as np

from supcon_lib.checks import check_positive_int

__all__ = [
    "TSNE_METHODS",
    "accuracy",
    "class_cosine_similarity",
    "confusion_matrix",
    "extract_embeddings",
    "flip_averaged",
    "knn_accuracy",
    "knn_predict",
    "l2_normalize",
    "nearest_neighbours",
    "opentsne_available",
    "test_accuracy",
    "tsne_2d",
]

#: Values accepted by ``tsne_2d(method=...)``.
TSNE_METHODS = ("auto", "opentsne", "sklearn")

# Default number of t-SNE iterations (early exaggeration included) per implementation, chosen so
# that 10,000 points fit in about a minute on 2 CPU cores. openTSNE's own default is 250 + 500.
_TSNE_DEFAULT_ITERATIONS = {"opentsne": 750, "sklearn": 400}
_EARLY_EXAGGERATION_ITERATIONS = 250
# openTSNE switches from Barnes-Hut to FFT-interpolated gradients at this many points.
_OPENTSNE_FFT_MIN_POINTS = 10_000


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------

def _as_embeddings(embeddings, argument: str) -> np.ndarray:
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise ValueError(f"{argument} must be a 2-D array (num_samples, dim), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{argument} is empty (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{argument} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} contains NaN or infinite values")
    return array


def _as_labels(labels, argument: str, num_classes: int | None = None) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:  # Keras' CIFAR-10 labels come as (N, 1)
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{argument} must be a 1-D array of integer labels, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or np.any(array != np.round(array)):
            raise ValueError(f"{argument} must hold integer class labels, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{argument} must be non-negative, found {array.min()}")
    if num_classes is not None and array.size and array.max() >= num_classes:
        raise ValueError(f"{argument} contains label {array.max()}, but num_classes is {num_classes}")
    return array


def _as_predictions(predictions_or_logits, argument: str) -> np.ndarray:
    """Integer predictions from either labels (N,) or scores/logits (N, C) (argmax)."""
    array = np.asarray(predictions_or_logits)
    if array.ndim == 2 and array.shape[1] > 1:
        return np.argmax(array, axis=1).astype(np.int64)
    return _as_labels(array, argument)


def _check_same_length(first, second, first_name: str, second_name: str) -> None:
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} and {second_name} have different lengths: {len(first)} vs {len(second)}"
        )


def l2_normalize(embeddings, epsilon: float = 1e-12) -> np.ndarray:
    """Scale every row of ``(..., D)`` embeddings to unit length (rows of zeros stay zero); float32."""
    array = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.maximum(norms, epsilon)


# --------------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------------

def extract_embeddings(
    model,
    images,
    batch_size: int = 256,
    preprocess: Callable | None = None,
) -> np.ndarray:
    """Run ``model`` in inference mode over ``images`` batch by batch; return float32 ``(N, D)``.

    Args:
        model: a ``keras.Model`` (run with ``predict``, i.e. ``training=False``) or any callable
            accepting ``(batch, training=False)``.
        images: array-like of shape ``(N, ...)``.
        batch_size: images per forward pass.
        preprocess: optional callable or Keras layer applied to every batch first, e.g. a
            ``keras.layers.Normalization`` or ``lambda x: x / 255.0``.

    Raises:
        ValueError: ``batch_size`` not a positive integer, no images, a model that is not
            callable, or outputs that are not ``(batch, dim)``.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if preprocess is not None and not callable(preprocess):
        raise ValueError(f"preprocess must be callable or None, got {type(preprocess).__name__}")
    if not callable(model) and not hasattr(model, "predict"):
        raise ValueError(f"model must be a keras.Model or a callable, got {type(model).__name__}")
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    num_images = images.shape[0]
    if num_images == 0:
        raise ValueError("images is empty")

    import keras  # imported here so that the rest of this module works without Keras

    if preprocess is None and hasattr(model, "predict"):  # one pass, batched by Keras
        # Padded to whole batches, so that predict traces one batch shape, not a second one for
        # the remainder (each trace of each model counts towards TensorFlow's retracing warning).
        remainder = -num_images % batch_size
        if remainder:
            images = np.asarray(images)
            images = np.concatenate([images, np.zeros((remainder, *images.shape[1:]), images.dtype)])
        outputs = [model.predict(images, batch_size=batch_size, verbose=0)[:num_images]]
    else:
        outputs = _embed_in_batches(model, images, batch_size, preprocess)
    embeddings = np.concatenate([np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float32) for o in outputs])
    if embeddings.ndim != 2:
        raise ValueError(f"the model must return (batch, dim) arrays, got shape {embeddings.shape[1:]} per sample")
    return embeddings


def _embed_in_batches(model, images, batch_size, preprocess):
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size]
        if preprocess is not None:
            batch = preprocess(batch)
        if hasattr(model, "predict"):
            # predict (not predict_on_batch, which returns one copy per replica under a
            # tf.distribute strategy in Keras 3.15)
            result = model.predict(batch, batch_size=len(batch), verbose=0)
        else:
            result = model(batch, training=False)
        outputs.append(result)
    return outputs


def accuracy(labels, predictions_or_logits) -> float:
    """Top-1 accuracy: the fraction of samples whose prediction equals the label.

    ``predictions_or_logits`` is either integer predictions ``(N,)`` or per-class scores ``(N, C)``
    (logits or probabilities; the argmax is the prediction). Labels may be ``(N,)`` or ``(N, 1)``.
    Returns a float in [0, 1]; raises ``ValueError`` for no samples or lengths that disagree.
    """
    labels = _as_labels(labels, "labels")
    predictions = _as_predictions(predictions_or_logits, "predictions_or_logits")
    _check_same_length(labels, predictions, "labels", "predictions_or_logits")
    if labels.size == 0:
        raise ValueError("labels is empty")
    from sklearn.metrics import accuracy_score  # imported here: this module starts without scikit-learn

    return float(accuracy_score(labels, predictions))


def test_accuracy(model, images, labels, batch_size: int = 256, preprocess: Callable | None = None) -> float:
    """Accuracy (a float) of a classifier ``model`` (images ``(N, ...)`` to logits ``(N, C)``) on
    ``(images, labels)``; ``labels`` int ``(N,)``. Raises as :func:`extract_embeddings` and
    :func:`accuracy` do."""
    labels = _as_labels(labels, "labels")
    _check_same_length(images, labels, "images", "labels")
    logits = extract_embeddings(model, images, batch_size=batch_size, preprocess=preprocess)
    return accuracy(labels, logits)


test_accuracy.__test__ = False  # not a pytest test, despite the name


def flip_averaged(model, images, batch_size=256):
    """The mean of ``model``'s outputs for ``images`` and for their mirror images (left-right),
    a cheap test-time augmentation: (N, H, W, C) images -> (N, ...) float32 outputs."""
    images = np.asarray(images)
    return 0.5 * (extract_embeddings(model, images, batch_size)
                  + extract_embeddings(model, images[:, :, ::-1], batch_size))


# --------------------------------------------------------------------------------------------------
# Nearest neighbours
# --------------------------------------------------------------------------------------------------

def _top_k_neighbours(queries: np.ndarray, bank: np.ndarray, k: int, batch_size: int):
    """Yield (start, indices, similarities) of the k most cosine-similar bank rows, best first."""
    bank = l2_normalize(bank)
    for start in range(0, len(queries), batch_size):
        similarities = l2_normalize(queries[start:start + batch_size]) @ bank.T
        if k < bank.shape[0]:
            candidates = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
        else:
            candidates = np.broadcast_to(np.arange(bank.shape[0]), similarities.shape)
        candidate_similarities = np.take_along_axis(similarities, candidates, axis=1)
        order = np.argsort(-candidate_similarities, axis=1, kind="stable")
        yield (
            start,
            np.take_along_axis(candidates, order, axis=1),
            np.take_along_axis(candidate_similarities, order, axis=1),
        )


def _check_bank_and_queries(query_embeddings, bank_embeddings, k, query_name, bank_name):
    queries = _as_embeddings(query_embeddings, query_name)
    bank = _as_embeddings(bank_embeddings, bank_name)
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"{query_name} and {bank_name} have different dimensions: {queries.shape[1]} vs {bank.shape[1]}"
        )
    k = check_positive_int(k, "k")
    if k > bank.shape[0]:
        raise ValueError(f"k={k} is larger than the number of {bank_name} ({bank.shape[0]})")
    return queries, bank, k


def nearest_neighbours(
    query_embeddings,
    bank_embeddings,
    k: int,
    batch_size: int = 1024,
    return_similarities: bool = False,
):
    """Indices ``(Q, k)`` of the ``k`` bank rows most cosine-similar to each query, best first.

    ``query_embeddings`` ``(Q, D)``, ``bank_embeddings`` ``(N, D)``. Indices are int64; with
    ``return_similarities=True`` returns ``(indices, similarities)``, the latter float32 ``(Q, k)``.
    Raises ``ValueError`` when the dimensions differ or ``k`` exceeds ``N``.
    """
    queries, bank, k = _check_bank_and_queries(
        query_embeddings, bank_embeddings, k, "query_embeddings", "bank_embeddings"
    )
    batch_size = check_positive_int(batch_size, "batch_size")
    indices = np.empty((len(queries), k), dtype=np.int64)
    similarities = np.empty((len(queries), k), dtype=np.float32)
    for start, batch_indices, batch_similarities in _top_k_neighbours(queries, bank, k, batch_size):
        indices[start:start + len(batch_indices)] = batch_indices
        similarities[start:start + len(batch_indices)] = batch_similarities
    return (indices, similarities) if return_similarities else indices


def knn_predict(
    train_embeddings,
    train_labels,
    test_embeddings,
    k: int = 20,
    weighted: bool = False,
    batch_size: int = 1024,
) -> np.ndarray:
    """Predict a label for every test embedding from its ``k`` cosine-nearest training embeddings.

    Voting rule (see the module docstring): majority vote with ties broken by summed similarity
    (``weighted=False``), or a similarity-weighted vote (``weighted=True``).

    ``train_embeddings`` ``(N, D)`` with int labels ``(N,)``, ``test_embeddings`` ``(Q, D)``;
    returns int64 ``(Q,)``. Raises ``ValueError`` when the dimensions or lengths differ or ``k``
    exceeds ``N``.
    """
    test, train, k = _check_bank_and_queries(
        test_embeddings, train_embeddings, k, "test_embeddings", "train_embeddings"
    )
    train_labels = _as_labels(train_labels, "train_labels")
    _check_same_length(train, train_labels, "train_embeddings", "train_labels")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_classes = int(train_labels.max()) + 1

    predictions = np.empty(len(test), dtype=np.int64)
    for start, indices, similarities in _top_k_neighbours(test, train, k, batch_size):
        neighbour_labels = train_labels[indices]  # (batch, k)
        rows = np.repeat(np.arange(len(indices)), k)
        summed_similarity = np.zeros((len(indices), num_classes), dtype=np.float64)
        np.add.at(summed_similarity, (rows, neighbour_labels.ravel()), similarities.ravel())
        if weighted:
            scores = summed_similarity
        else:
            votes = np.zeros((len(indices), num_classes), dtype=np.int64)
            np.add.at(votes, (rows, neighbour_labels.ravel()), 1)
            most_votes = votes == votes.max(axis=1, keepdims=True)
            scores = np.where(most_votes, summed_similarity, -np.inf)
        predictions[start:start + len(indices)] = np.argmax(scores, axis=1)  # first max: smallest label
    return predictions


def knn_accuracy(
    train_embeddings,
    train_labels,
    test_embeddings,
    test_labels,
    k: int = 20,
    weighted: bool = False,
    batch_size: int = 1024,
) -> float:
    """Accuracy (a float) of the cosine k-nearest-neighbour classifier :func:`knn_predict` on the
    test set; ``test_labels`` int ``(Q,)``. Raises as :func:`knn_predict` does."""
    test_labels = _as_labels(test_labels, "test_labels")
    _check_same_length(np.asarray(test_embeddings), test_labels, "test_embeddings", "test_labels")
    predictions = knn_predict(
        train_embeddings, train_labels, test_embeddings, k=k, weighted=weighted, batch_size=batch_size
    )
    return accuracy(test_labels, predictions)


# --------------------------------------------------------------------------------------------------
# t-SNE
# --------------------------------------------------------------------------------------------------

def opentsne_available() -> bool:
    """Whether openTSNE can be imported."""
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return False
    return True


class _TSNEOutput(NamedTuple):
    coordinates: np.ndarray
    method: str


def tsne_2d(
    embeddings,
    seed: int = 0,
    pca_dim: int | None = 50,
    perplexity: float = 30.0,
    method: str = "auto",
    n_iter: int | None = None,
    n_jobs: int = 2,
    return_method: bool = False,
):
    """Embed ``(N, D)`` vectors in 2-D with t-SNE; return float32 ``(N, 2)`` coordinates.

    Args:
        embeddings: ``(N, D)`` array, ``N >= 4``.
        seed: random seed; the same seed and inputs give the same output.
        pca_dim: reduce to this many dimensions with PCA first when ``D`` is larger (``None``: never).
        perplexity: roughly the number of neighbours each point attends to. Lowered to
            ``(N - 1) / 3`` for tiny inputs, because both implementations look at ``3 * perplexity``
            neighbours.
        method: ``"opentsne"`` (FFT-accelerated interpolation from 10,000 points on, Barnes-Hut
            below, where it is faster), ``"sklearn"`` (Barnes-Hut), or ``"auto"``: openTSNE if
            importable, else scikit-learn.
        n_iter: total optimisation iterations including 250 of early exaggeration (at least 251).
            ``None``: 750 for openTSNE (its own default), 400 for scikit-learn (whose default is
            1,000); both keep 10,000 points of dimension 128 under a minute on 2 cores.
        n_jobs: CPU threads.
        return_method: also return the implementation that ran.

    Returns:
        The ``(N, 2)`` float32 coordinates or, with ``return_method=True``, a named tuple
        ``(coordinates, method)`` where ``method`` is ``"opentsne"`` or ``"sklearn"``.

    Raises:
        ValueError: fewer than 4 points, an unknown ``method`` (or ``"opentsne"`` without
            openTSNE installed), ``n_iter`` <= 250, or another setting out of range.
    """
    if method not in TSNE_METHODS:
        raise ValueError(f"unknown t-SNE method {method!r}; choose one of {', '.join(map(repr, TSNE_METHODS))}")
    data = _as_embeddings(embeddings, "embeddings")
    num_points, dim = data.shape
    if num_points < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {num_points}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(perplexity, bool) or not isinstance(perplexity, numbers.Real) or perplexity <= 0:
        raise ValueError(f"perplexity must be a positive number, got {perplexity!r}")
    n_jobs = check_positive_int(n_jobs, "n_jobs")
    if pca_dim is not None:
        pca_dim = check_positive_int(pca_dim, "pca_dim")
    if n_iter is not None:
        n_iter = check_positive_int(n_iter, "n_iter")
        if n_iter <= _EARLY_EXAGGERATION_ITERATIONS:
            raise ValueError(
                f"n_iter must exceed the {_EARLY_EXAGGERATION_ITERATIONS} early-exaggeration iterations, got {n_iter}"
            )

    if method == "auto":
        method = "opentsne" if opentsne_available() else "sklearn"
    elif method == "opentsne" and not opentsne_available():
        raise ValueError("method='opentsne' but openTSNE is not installed (pip install openTSNE)")
    if n_iter is None:
        n_iter = _TSNE_DEFAULT_ITERATIONS[method]
    perplexity = float(min(perplexity, (num_points - 1) / 3.0))

    data = data.astype(np.float64)
    if pca_dim is not None and dim > pca_dim:
        from sklearn.decomposition import PCA

        components = min(pca_dim, num_points)
        data = PCA(n_components=components, random_state=seed).fit_transform(data)

    if method == "opentsne":
        coordinates = _run_opentsne(data, seed, perplexity, n_iter, n_jobs)
    else:
        coordinates = _run_sklearn_tsne(data, seed, perplexity, n_iter, n_jobs)
    coordinates = np.ascontiguousarray(coordinates, dtype=np.float32)
    return _TSNEOutput(coordinates, method) if return_method else coordinates


def _run_opentsne(data, seed, perplexity, n_iter, n_jobs) -> np.ndarray:
    import openTSNE

    tsne = openTSNE.TSNE(
        n_components=2,
        perplexity=perplexity,
        learning_rate="auto",  # N / early_exaggeration (Belkina et al. 2019)
        early_exaggeration_iter=_EARLY_EXAGGERATION_ITERATIONS,
        n_iter=n_iter - _EARLY_EXAGGERATION_ITERATIONS,
        initialization="pca",  # deterministic, preserves global structure better than random
        # FFT-accelerated interpolation (Linderman et al. 2019) costs O(N) per iteration but has a
        # large constant; below 10,000 points Barnes-Hut is as fast or faster (openTSNE's own rule).
        negative_gradient_method="fft" if len(data) >= _OPENTSNE_FFT_MIN_POINTS else "bh",
        n_jobs=n_jobs,
        random_state=seed,
        verbose=False,
    )
    return np.asarray(tsne.fit(data))


def _run_sklearn_tsne(data, seed, perplexity, n_iter, n_jobs) -> np.ndarray:
    from sklearn.manifold import TSNE

    # scikit-learn renamed n_iter to max_iter in 1.5 (and removed n_iter in 1.7).
    iterations_argument = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        learning_rate="auto",
        init="pca",
        method="barnes_hut",
        random_state=seed,
        n_jobs=n_jobs,
        **{iterations_argument: n_iter},
    )
    return tsne.fit_transform(data)


# --------------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------------

def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts: entry ``[t, p]`` is how many samples of class ``t`` were predicted ``p``.

    ``labels`` int ``(N,)``; ``predictions`` int ``(N,)`` or ``(N, C)`` scores/logits (their argmax
    is used). Raises ``ValueError`` for a label or prediction outside ``0 .. C - 1`` or lengths
    that disagree.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    labels = _as_labels(labels, "labels", num_classes)
    predictions = _as_predictions(predictions, "predictions")
    _check_same_length(labels, predictions, "labels", "predictions")
    if predictions.size and predictions.max() >= num_classes:
        raise ValueError(f"predictions contains label {predictions.max()}, but num_classes is {num_classes}")
    if labels.size == 0:  # scikit-learn refuses empty inputs; no samples count nothing
        return np.zeros((num_classes, num_classes), np.int64)
    from sklearn.metrics import confusion_matrix as counts  # imported here, as in accuracy

    return counts(labels, predictions, labels=np.arange(num_classes)).astype(np.int64)


def class_cosine_similarity(embeddings, labels, num_classes: int) -> np.ndarray:
    """``(C, C)`` mean cosine similarity between embeddings of class ``a`` and class ``b``.

    Off the diagonal the mean runs over all pairs (one sample of ``a``, one of ``b``); on the
    diagonal over all pairs of *distinct* samples of the class (a sample's similarity with itself,
    always 1, is left out). Entries for classes with no samples, and diagonal entries for classes
    with a single sample, are NaN. Computed through class sums of the normalised embeddings:
    the mean of ``u_i . v_j`` over all pairs is ``(sum u) . (sum v) / (n_a n_b)``.

    ``embeddings`` ``(N, D)``, ``labels`` int ``(N,)`` in ``0 .. C - 1``; returns float32 ``(C, C)``.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    normalized = l2_normalize(_as_embeddings(embeddings, "embeddings")).astype(np.float64)
    labels = _as_labels(labels, "labels", num_classes)
    _check_same_length(normalized, labels, "embeddings", "labels")

    class_sums = np.zeros((num_classes, normalized.shape[1]))
    np.add.at(class_sums, labels, normalized)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    self_similarity = np.bincount(labels, weights=np.sum(normalized**2, axis=1), minlength=num_classes)

    pair_sums = class_sums @ class_sums.T
    pair_counts = np.outer(counts, counts)
    diagonal = np.arange(num_classes)
    pair_sums[diagonal, diagonal] -= self_similarity
    pair_counts[diagonal, diagonal] -= counts
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(pair_counts > 0, pair_sums / np.maximum(pair_counts, 1), np.nan)
    return mean.astype(np.float32)
