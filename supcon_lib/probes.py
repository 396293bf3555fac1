"""Label efficiency: how good a frozen embedding is when only a few training labels are known.

A representation is useful beyond its own test accuracy if a simple classifier on top of it learns
from few labels. :func:`label_efficiency` keeps the encoder frozen, gives a linear probe
(multinomial logistic regression, scikit-learn's ``LogisticRegression`` on standardised features)
and a kNN classifier (:func:`supcon_lib.evaluation.knn_accuracy`) only a stratified fraction of the
training labels -- e.g. 1%, 10% and 100% -- and measures both on the whole test set.

:func:`stratified_subset` chooses the labelled images: the same fraction of every class (at least
one image per class), drawn with ``numpy.random.default_rng(seed)``, and nested: for one seed, the
1% subset lies inside the 10% subset, so a rise in accuracy comes from more labels, not from other
images.
"""

from __future__ import annotations

import numbers

import numpy as np

from supcon_lib import evaluation

__all__ = ["label_efficiency", "linear_probe_accuracy", "stratified_subset"]


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
            or not np.isfinite(fraction) or not 0 < fraction <= 1:
        raise ValueError(f"a label fraction must be a number in (0, 1], found {fraction!r}")
    return float(fraction)


def stratified_subset(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified subset: ``max(1, round(fraction * n_c))`` images of each class.

    For one seed the subsets are nested: every class's images are put in one random order, and a
    fraction takes the first ones of that order.

    Raises:
        ValueError: labels that are not a non-empty 1-D integer array, or a fraction outside (0, 1].
    """
    fraction = _check_fraction(fraction)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, found shape {labels.shape} "
                         f"and dtype {labels.dtype}")
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = []
    for label in np.unique(labels):
        members = order[labels[order] == label]  # this class's images, in the seeded order
        chosen.append(members[:max(1, int(round(fraction * len(members))))])
    return np.sort(np.concatenate(chosen))


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels,
                          regularization: float = 1.0, max_iter: int = 1000, scale_features=None) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen features.

    The features are standardised with the mean and standard deviation of ``scale_features``
    (default: ``train_features``; a constant feature is left unscaled), then scikit-learn's ``LogisticRegression(C=regularization)`` (L-BFGS)
    is fitted. Deterministic for given inputs.

    Raises:
        ValueError: features that are not 2-D finite arrays of one width, lengths that disagree, or
            a ``regularization`` that is not a positive number.
    """
    from sklearn.linear_model import LogisticRegression

    if isinstance(regularization, bool) or not isinstance(regularization, numbers.Real) \
            or not np.isfinite(regularization) or regularization <= 0:
        raise ValueError(f"regularization must be a positive number, found {regularization!r}")
    train, test = _features(train_features, "train_features"), _features(test_features, "test_features")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train_features and test_features differ in width: {train.shape[1]} and {test.shape[1]}")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if len(train_labels) != len(train) or len(test_labels) != len(test):
        raise ValueError("features and labels must have the same length")
    reference = train if scale_features is None else _features(scale_features, "scale_features")
    if reference.shape[1] != train.shape[1]:
        raise ValueError(f"scale_features has width {reference.shape[1]}, the features {train.shape[1]}")
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    scale[scale == 0] = 1.0
    if len(np.unique(train_labels)) < 2:  # nothing to fit: every prediction is the one class
        return float(np.mean(test_labels == train_labels[0]))
    probe = LogisticRegression(C=regularization, max_iter=max_iter)
    probe.fit((train - mean) / scale, train_labels)
    return float(np.mean(probe.predict((test - mean) / scale) == test_labels))


def _features(values, name):
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, D), found shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return values


def label_efficiency(train_features, train_labels, test_features, test_labels,
                     fractions=(0.01, 0.1, 1.0), seed: int = 0, k: int = 20) -> list[dict]:
    """Linear-probe and kNN test accuracy with a fraction of the training labels, per fraction.

    Returns one row per fraction: ``{"fraction", "labels" (how many were used), "linear_accuracy",
    "knn_accuracy", "k"}``. The probe standardises features with the statistics of *all* training
    features, which needs no labels: with a handful of labelled images, their own standard
    deviation would blow up directions in which those few happen to agree. kNN uses ``k`` neighbours, or fewer when a class has fewer labelled
    images (``k`` at most the smallest class's count): with one labelled image per class, the
    nearest one decides, rather than a vote that every class wins once.

    Raises:
        ValueError: as :func:`stratified_subset` and :func:`linear_probe_accuracy`, or no fractions.
    """
    fractions = [_check_fraction(f) for f in fractions]
    if not fractions:
        raise ValueError("fractions is empty")
    train_features = _features(train_features, "train_features")
    train_labels = np.asarray(train_labels)
    if len(train_labels) != len(train_features):
        raise ValueError(f"train_features has {len(train_features)} rows but train_labels {len(train_labels)}")
    rows = []
    for fraction in fractions:
        chosen = stratified_subset(train_labels, fraction, seed)
        features, labels = train_features[chosen], train_labels[chosen]
        neighbours = int(min(k, np.unique(labels, return_counts=True)[1].min()))
        rows.append({
            "fraction": fraction,
            "labels": int(len(chosen)),
            "linear_accuracy": linear_probe_accuracy(features, labels, test_features, test_labels,
                                                     scale_features=train_features),
            "knn_accuracy": float(evaluation.knn_accuracy(features, labels, test_features, test_labels,
                                                          k=neighbours)),
            "k": neighbours,
        })
    return rows
