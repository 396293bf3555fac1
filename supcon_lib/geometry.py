"""Geometry of an embedding: numbers that say what a contrastive loss did to the feature space.

A t-SNE picture shows clusters; these functions put numbers on what the picture suggests. All take
NumPy arrays of embeddings ``features`` with shape ``(N, D)`` (N points of dimension D, any real
dtype, computed in float64) and, where classes matter, integer-like ``labels`` of shape ``(N,)``.

* **Alignment and uniformity** (Wang & Isola, 2020, "Understanding Contrastive Representation
  Learning through Alignment and Uniformity on the Hypersphere", arXiv:2005.10242). A contrastive
  loss has two jobs on the unit sphere: pull positives together (*alignment*, small is good) and
  spread all points out (*uniformity*, more negative is more uniform). They are the two halves of
  the loss that notebook 03 splits into "alignment + repulsion": the numerator of the SupCon
  softmax pulls the positives together, the denominator pushes everything apart.

  - :func:`alignment` -- the mean of ``||z_i - z_j||^alpha`` over all pairs ``i != j`` with the
    same label (SupCon's positives); :func:`alignment_of_views` -- the paper's original form, the
    mean of ``||z1_i - z2_i||^alpha`` over two views of the same images.
  - :func:`uniformity` -- ``log mean_{i<j} exp(-t ||z_i - z_j||^2)``, the log of the average
    Gaussian potential between pairs of points. It lies in ``[-4t, 0]``: 0 when all points
    coincide, ``-4t`` for two antipodal points. It is computed as a log-sum-exp, so that a large
    ``t`` does not underflow to ``log 0``.

  Both work on L2-normalised features (each row divided by its length), the geometry the SupCon
  loss sees; ``normalize=False`` uses the features as given.

* **Collapse diagnostics.** :func:`singular_values` gives the spectrum of the (centred) feature
  matrix, and :func:`effective_rank` the entropy-based effective rank of Roy & Vetterli (2007,
  "The effective rank: a measure of effective dimensionality", EUSIPCO): with
  ``p_k = s_k / sum(s)``, ``erank = exp(-sum_k p_k log p_k)``. It is ``D`` when all singular values
  are equal (every direction used alike) and 1 when only one is non-zero (*dimensional collapse*).
  :func:`class_spread` measures *class collapse*: the within-class spread (how far points lie from
  their class mean), the between-class spread (how far class means lie from the global mean) and
  their ratio. SupCon with many positives drives every class towards a single point, so the
  within-class spread (and the ratio) falls towards 0.

Inputs are checked: a wrong number of dimensions, fewer than 2 points, lengths that disagree,
non-numeric values, NaN or infinity, and rows of zeros that cannot be normalised raise
``ValueError`` naming the argument. Results are Python floats (or float64 arrays).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

__all__ = [
    "ClassSpread",
    "alignment",
    "alignment_of_views",
    "class_spread",
    "effective_rank",
    "singular_values",
    "uniformity",
]

# Pairwise distances are computed in blocks of rows so that a block holds at most this many
# entries (32 MiB of float64), whatever N is.
_BLOCK_ENTRIES = 1 << 22


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------

def _as_features(features, argument: str = "features", min_points: int = 2) -> np.ndarray:
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"{argument} must be a 2-D array (num_points, dim), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{argument} must hold real numbers, got dtype {array.dtype}")
    if array.shape[0] < min_points:
        raise ValueError(f"{argument} needs at least {min_points} points, got {array.shape[0]}")
    if array.shape[1] == 0:
        raise ValueError(f"{argument} has dimension 0 (shape {array.shape})")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} contains NaN or infinite values")
    return array


def _as_label_ids(labels, num_points: int, argument: str = "labels") -> np.ndarray:
    """Labels (N,) of any comparable kind as class indices 0..K-1 (np.unique's order)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{argument} must be a 1-D array (num_points,), got shape {array.shape}")
    if len(array) != num_points:
        raise ValueError(f"features has {num_points} points but {argument} has {len(array)} entries")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} contains NaN or infinite values")
    return np.unique(array, return_inverse=True)[1].reshape(-1)


def _positive_number(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{argument} must be a positive finite number, got {value!r}")
    return float(value)


def _unit_rows(array: np.ndarray, argument: str) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{argument} has rows of zeros (row {int(np.flatnonzero(norms[:, 0] == 0)[0])}), "
                         "which cannot be L2-normalised; pass normalize=False to use them as they are")
    return array / norms


def _prepared(features, argument: str, normalize: bool) -> np.ndarray:
    array = _as_features(features, argument)
    return _unit_rows(array, argument) if normalize else array


def _squared_distances(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``||rows_i - columns_j||^2`` for all i, j, from the Gram matrix (clipped at 0)."""
    squared = (np.sum(rows ** 2, axis=1)[:, None] + np.sum(columns ** 2, axis=1)[None, :]
               - 2.0 * rows @ columns.T)
    return np.maximum(squared, 0.0)


def _block_rows(num_columns: int) -> int:
    return max(1, _BLOCK_ENTRIES // max(1, num_columns))


# --------------------------------------------------------------------------------------------------
# Alignment and uniformity
# --------------------------------------------------------------------------------------------------

def alignment(features, labels, alpha: float = 2, normalize: bool = True) -> float:
    """Alignment of positives (Wang & Isola, 2020, arXiv:2005.10242), for labelled data.

    The mean of ``||z_i - z_j||^alpha`` over all ordered pairs ``(i, j)``, ``i != j``, with the same
    label, where ``z`` are the L2-normalised rows of ``features``. Pairs of all classes are pooled
    (a class of ``n`` points contributes ``n (n - 1)`` pairs), so larger classes weigh more. Smaller
    is better aligned: 0 when every class is a single point; on the unit sphere, with
    ``alpha = 2``, ``||z_i - z_j||^2 = 2 - 2 cos(z_i, z_j)``, so the value is at most 4.

    Args:
        features: real array ``(N, D)``, ``N >= 2``.
        labels: array ``(N,)`` of class labels (any values that compare equal within a class).
        alpha: the positive exponent (the paper uses 2).
        normalize: L2-normalise the rows first (default), else use the features as given.

    Returns:
        A Python float.

    Raises:
        ValueError: ``features`` not 2-D, non-numeric, with fewer than 2 points, NaN/inf, or a row
            of zeros (when normalising); ``labels`` not 1-D or of another length; ``alpha`` not
            positive; no class with at least two points (no positive pair).
    """
    alpha = _positive_number(alpha, "alpha")
    z = _prepared(features, "features", normalize)
    ids = _as_label_ids(labels, len(z))
    total, pairs = 0.0, 0
    for class_id in range(int(ids.max()) + 1):
        members = z[ids == class_id]
        count = len(members)
        if count < 2:
            continue
        block = _block_rows(count)
        for start in range(0, count, block):
            stop = min(start + block, count)
            distances = _squared_distances(members[start:stop], members) ** (alpha / 2.0)
            distances[np.arange(stop - start), np.arange(start, stop)] = 0.0  # i == j is no pair
            total += float(distances.sum())
        pairs += count * (count - 1)
    if pairs == 0:
        raise ValueError("no class has two or more points, so there is no positive pair to align")
    return total / pairs


def alignment_of_views(z1, z2, alpha: float = 2, normalize: bool = True) -> float:
    """Alignment of two views (Wang & Isola, 2020, arXiv:2005.10242): ``mean_i ||z1_i - z2_i||^alpha``.

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are embeddings of two augmented views of the same
    image; both are L2-normalised first (unless ``normalize=False``). 0 when every pair of views
    maps to the same point.

    Args:
        z1, z2: real arrays of the same shape ``(N, D)``, ``N >= 1``.
        alpha: the positive exponent (the paper uses 2).
        normalize: L2-normalise the rows first (default).

    Returns:
        A Python float.

    Raises:
        ValueError: arrays not 2-D, of different shapes, empty, non-numeric, with NaN/inf or with
            a row of zeros (when normalising); ``alpha`` not positive.
    """
    alpha = _positive_number(alpha, "alpha")
    a = _as_features(z1, "z1", min_points=1)
    b = _as_features(z2, "z2", min_points=1)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {a.shape} and {b.shape}")
    if normalize:
        a, b = _unit_rows(a, "z1"), _unit_rows(b, "z2")
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


def uniformity(features, t: float = 2, max_points: int | None = None, seed: int = 0,
               normalize: bool = True) -> float:
    """Uniformity (Wang & Isola, 2020, arXiv:2005.10242): ``log mean_{i<j} exp(-t ||z_i - z_j||^2)``.

    ``z`` are the L2-normalised rows of ``features``; the mean runs over all ``N (N - 1) / 2``
    unordered pairs. Lower (more negative) is more uniform: 0 when all points coincide, and on
    the unit sphere never below ``-4t``. The sum is a streaming log-sum-exp over blocks of rows, so
    it neither underflows for a large ``t`` nor needs an ``N x N`` matrix in memory.

    Args:
        features: real array ``(N, D)``, ``N >= 2``.
        t: the positive temperature of the Gaussian potential (the paper uses 2).
        max_points: if given and smaller than N, use a random subset of this many points (drawn
            without replacement with ``numpy.random.default_rng(seed)``); the cost grows as N^2.
        seed: seed of that subset.
        normalize: L2-normalise the rows first (default).

    Returns:
        A Python float (``<= 0`` for normalised features).

    Raises:
        ValueError: ``features`` not 2-D, non-numeric, with fewer than 2 points, NaN/inf, or a row
            of zeros (when normalising); ``t`` not positive; ``max_points`` not an integer >= 2.
    """
    t = _positive_number(t, "t")
    z = _prepared(features, "features", normalize)
    if max_points is not None:
        if isinstance(max_points, bool) or not isinstance(max_points, numbers.Integral) or max_points < 2:
            raise ValueError(f"max_points must be None or an integer >= 2, got {max_points!r}")
        if len(z) > max_points:
            chosen = np.random.default_rng(seed).choice(len(z), size=int(max_points), replace=False)
            z = z[np.sort(chosen)]
    n = len(z)
    running_max, running_sum = -np.inf, 0.0  # log-sum-exp so far = running_max + log(running_sum)
    block = _block_rows(n)
    for start in range(0, n - 1, block):
        stop = min(start + block, n - 1)
        # rows start..stop-1 against columns start..n-1; keep j > i only
        exponents = -t * _squared_distances(z[start:stop], z[start:])
        exponents = exponents[np.triu(np.ones(exponents.shape, dtype=bool), k=1)]
        block_max = float(exponents.max())
        if block_max > running_max:
            running_sum *= np.exp(running_max - block_max)
            running_max = block_max
        running_sum += float(np.exp(exponents - running_max).sum())
    num_pairs = n * (n - 1) / 2
    return float(running_max + np.log(running_sum) - np.log(num_pairs))


# --------------------------------------------------------------------------------------------------
# Spectrum and effective rank
# --------------------------------------------------------------------------------------------------

def singular_values(features, center: bool = True, normalize: bool = False) -> np.ndarray:
    """Singular values of the feature matrix, largest first: float64 ``(min(N, D),)``.

    Args:
        features: real array ``(N, D)``, ``N >= 2``.
        center: subtract the mean feature first (default), so that the spectrum describes the
            spread of the points around their centre, not their distance from the origin.
        normalize: L2-normalise the rows first (before centring). Off by default: the spectrum
            of the raw features is what the linear probe sees.

    Their squares divided by ``N`` (or ``N - 1``) are the variances along the principal axes.

    Raises:
        ValueError: ``features`` not 2-D, non-numeric, with fewer than 2 points, NaN/inf, or a row
            of zeros (when normalising).
    """
    array = _prepared(features, "features", normalize)
    if center:
        array = array - array.mean(axis=0, keepdims=True)
    return np.linalg.svd(array, compute_uv=False)


def effective_rank(features_or_singular_values, center: bool = True) -> float:
    """Entropy-based effective rank (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p = s / sum(s)``.

    ``H(p) = -sum_k p_k log p_k`` (with ``0 log 0 = 0``) is the Shannon entropy, in nats, of the
    singular values ``s`` taken as a distribution. The result lies between 1 (one non-zero
    singular value) and the number of singular values (all equal); it does not change when
    ``s`` is scaled or reordered.

    Args:
        features_or_singular_values: either singular values, a 1-D non-negative array ``(K,)``
            (e.g. from :func:`singular_values`), or features, a 2-D array ``(N, D)`` whose
            singular values are computed with :func:`singular_values` (``center`` passed on).
        center: for features only: centre them first (default).

    Returns:
        A Python float in ``[1, K]``.

    Raises:
        ValueError: an array neither 1-D nor 2-D; singular values that are empty, non-numeric,
            negative, NaN/inf or all zero; features that :func:`singular_values` rejects (or, when
            centred, all equal, so that every singular value is zero).
    """
    array = np.asarray(features_or_singular_values)
    if array.ndim == 2:
        values = singular_values(array, center=center)
    elif array.ndim == 1:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"singular values must be real numbers, got dtype {array.dtype}")
        values = array.astype(np.float64)
        if values.size == 0:
            raise ValueError("singular values are empty")
        if not np.all(np.isfinite(values)):
            raise ValueError("singular values contain NaN or infinite values")
        if np.any(values < 0):
            raise ValueError(f"singular values must be non-negative, found {values.min()}")
    else:
        raise ValueError("pass singular values (K,) or features (N, D), got an array of shape "
                         f"{array.shape}")
    total = values.sum()
    if total <= 0:
        raise ValueError("all singular values are zero: the effective rank is undefined")
    p = values[values > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


# --------------------------------------------------------------------------------------------------
# Class collapse
# --------------------------------------------------------------------------------------------------

class ClassSpread(NamedTuple):
    """Spreads returned by :func:`class_spread` (Python floats, plus the number of classes).

    ``within + between == total`` (the law of total variance).
    """

    #: Mean over points of the squared distance to their class mean.
    within: float
    #: Mean over points of the squared distance from their class mean to the global mean.
    between: float
    #: ``within / between``: 0 for complete class collapse; inf if ``between == 0 < within``.
    ratio: float
    #: Mean squared distance of the points to the global mean.
    total: float
    #: Number of distinct labels.
    num_classes: int


def class_spread(features, labels, normalize: bool = True) -> ClassSpread:
    """Within-class and between-class spread of (L2-normalised) features: the class-collapse test.

    With ``z_i`` the normalised rows, ``mu_c`` the mean of class ``c``, ``mu`` the mean of all
    points, ``n_c`` the size of class ``c`` and ``N`` the number of points:

    * ``within  = (1/N) sum_i ||z_i - mu_{y_i}||^2`` (mean squared distance to the class mean);
    * ``between = sum_c (n_c / N) ||mu_c - mu||^2`` (class means to the global mean, each class
      weighted by its share of the points, so that ``within + between = total``);
    * ``ratio = within / between``; ``total = (1/N) sum_i ||z_i - mu||^2``.

    A ratio near 0 means every class has shrunk to a point far from the others (class
    collapse); a ratio near or above 1 means classes overlap about as much as they differ.

    Args:
        features: real array ``(N, D)``, ``N >= 2``.
        labels: array ``(N,)`` of class labels with at least two distinct values.
        normalize: L2-normalise the rows first (default).

    Returns:
        A :class:`ClassSpread` named tuple ``(within, between, ratio, total, num_classes)``.
        ``ratio`` is ``inf`` when the class means coincide but the points do not, and ``nan``
        when all points coincide.

    Raises:
        ValueError: ``features`` not 2-D, non-numeric, with fewer than 2 points, NaN/inf, or a row
            of zeros (when normalising); ``labels`` not 1-D, of another length, or with fewer than
            two distinct values.
    """
    z = _prepared(features, "features", normalize)
    ids = _as_label_ids(labels, len(z))
    num_classes = int(ids.max()) + 1
    if num_classes < 2:
        raise ValueError("labels has a single class; the between-class spread needs at least two")
    counts = np.bincount(ids, minlength=num_classes).astype(np.float64)
    sums = np.zeros((num_classes, z.shape[1]))
    np.add.at(sums, ids, z)
    means = sums / counts[:, None]
    global_mean = z.mean(axis=0)
    within = float(np.mean(np.sum((z - means[ids]) ** 2, axis=1)))
    between = float(np.sum(counts / len(z) * np.sum((means - global_mean) ** 2, axis=1)))
    total = float(np.mean(np.sum((z - global_mean) ** 2, axis=1)))
    if between > 0:
        ratio = within / between
    else:
        ratio = float("inf") if within > 0 else float("nan")
    return ClassSpread(within=within, between=between, ratio=ratio, total=total, num_classes=num_classes)
