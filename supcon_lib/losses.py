r"""The supervised contrastive (SupCon) loss family, in backend-agnostic ``keras.ops``.

Reading order: the SupCon formula comes first (:func:`_supcon_terms`, the per-anchor ``L_out`` /
``L_in`` from unit vectors, and the three small helpers it uses), then the losses built on it
(:func:`supcon_loss`, SimCLR, the queue, npairs, cross-entropy and the hybrid), the Keras ``Loss``
classes, the multi-device glue, and last the argument checks, which every public function runs
before any arithmetic.

Notation (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020)
-----------------------------------------------------------------------
A batch holds ``B`` images, each seen in ``V`` augmented views, embedded in ``D`` dimensions:
``features`` has shape ``(B, V, D)``. Every view is L2-normalised to ``z`` and is an *anchor*,
so there are ``A = B * V`` anchors. For an anchor ``i``

* ``A(i)`` = every anchor except ``i`` itself (the contrast set of the denominator),
* ``P(i)`` = the anchors of ``A(i)`` with the same label as ``i`` (its positives),
* ``s_ia = z_i . z_a / temperature``.

The two formulations of the paper (eq. 2 and 3) are::

    L_out_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} exp(s_ia) )
    L_in_i  = -log( 1/|P(i)| * sum_{p in P(i)} exp(s_ip) / sum_{a in A(i)} exp(s_ia) )

``L_out`` (the mean over positives *outside* the log) is the one the paper recommends and the
default here. By Jensen's inequality ``L_in_i <= L_out_i``. The batch loss is the mean of the
per-anchor terms over the anchors that have at least one positive; anchors without a positive
(a singleton class seen in one view) contribute nothing and do not dilute the mean. A batch in
which no anchor has a positive has loss 0, with zero gradient.

With ``labels=None`` the only positives of an anchor are the other views of its own image: this
is SimCLR's NT-Xent loss (Chen et al. 2020).

Numerics: whatever the input dtype (float16 and bfloat16 included), everything is computed in
float32, the log-sum-exp subtracts the row maximum (over the non-self entries) before ``exp``,
and the masked entries are replaced before ``exp``/``log``, so for finite inputs neither the
value nor the gradient is ever NaN (zero vectors included). Memory and time grow like
``(B * V)^2``: the (anchors x anchors) similarity matrix.

:func:`npairs_loss` reproduces, for teaching, the loss of the original 2020 keras-io SupCon
example (tensorflow-addons' ``npairs_loss``); its docstring explains how it differs.

Several devices
---------------
Inside a ``tf.distribute`` replica context with more than one replica (``MirroredStrategy``,
``TPUStrategy``) the embeddings and labels of all replicas are all-gathered, so every local
anchor is contrasted against the *global* batch, and the gradient flows back to every replica's
embeddings (``all_gather``'s gradient all-reduces the upstream gradient and slices it).

Convention: each replica returns ``(sum of the loss terms of its LOCAL anchors) / (number of
anchors with a positive in the GLOBAL batch)``. So the **sum over replicas** of the returned
values is exactly the single-device loss on the global batch, and since ``tf.distribute``
optimizers (Keras' included) **sum** the per-replica gradients, one distributed step applies
exactly the single-device gradient. In a custom training loop, take
``strategy.reduce(SUM, per_replica_loss)`` for the global value and do *not* divide the
per-replica loss by the number of replicas (``tf.nn.compute_average_loss`` style) again.

This is also what Keras 3's compiled ``fit`` needs (checked on Keras 3.15): ``keras.losses.Loss``
divides by the number of replicas only when it reduces a vector of per-sample values, never a
scalar, and :class:`SupConLoss` returns its scalar directly (it bypasses that reduction). Keras'
TF train step then differentiates each replica's value, sums the replicas' gradients, and logs
``num_replicas * per-replica value`` averaged over the replicas (weighted by their batch sizes),
which is the global loss when the replicas hold equal batches (the gradient is exact in any
case). tests/test_losses_distributed.py checks both paths on two logical CPU devices.

This glue is the only TensorFlow-specific code in the module: three small private functions
that do nothing on other Keras backends (JAX's ``keras.distribution`` computes on global arrays
itself) or outside a multi-replica context.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = [
    "FORMULATIONS", "HybridLoss", "NPairsLoss", "SparseCrossEntropy", "SupConLoss", "cross_entropy_over_views", "hybrid_loss",
    "npairs_loss", "start_and_floor", "supcon_loss", "supcon_queue_loss",
]

#: The two placements of the mean over positives (outside / inside the log).
FORMULATIONS = ("out", "in")

#: Squared norms are clipped below by this before the inverse square root (zero vectors stay 0).
_NORM_EPSILON = 1e-12
#: Fill value for masked logits when taking a row maximum (below any real logit).
_MASKED_LOGIT = -3.0e38


# --------------------------------------------------------------------------------------------
# The SupCon formula, from unit vectors
# --------------------------------------------------------------------------------------------

def _supcon_terms(anchors, contrast, anchor_classes, contrast_classes, anchor_positions,
                  temperature, formulation, contrast_valid=None):
    """Per-anchor SupCon terms from unit vectors.

    Args:
        anchors: float32 (N, D), unit-norm anchor embeddings.
        contrast: float32 (M, D), unit-norm embeddings of the whole contrast set, which holds
            the anchors themselves at ``anchor_positions``.
        anchor_classes: int (N,), the class (or image id) of each anchor.
        contrast_classes: int (M,), the class (or image id) of each contrast entry.
        anchor_positions: int (N,), index in ``contrast`` of each anchor (excluded from both
            its numerator and denominator).
        temperature: float > 0.
        formulation: "out" or "in".
        contrast_valid: optional bool (M,), False for entries that take no part at all (the
            empty slots of a queue).

    Returns:
        ``(terms, has_positive)``: float32 (N,) per-anchor losses (0 where there is no
        positive) and bool (N,) whether each anchor has at least one positive.
    """
    logits = ops.matmul(anchors, ops.transpose(contrast)) / temperature  # (N, M)
    num_contrast = ops.shape(contrast)[0]
    not_self = ops.not_equal(
        ops.expand_dims(anchor_positions, 1),
        ops.expand_dims(ops.arange(num_contrast, dtype="int32"), 0),
    )
    if contrast_valid is not None:
        not_self = ops.logical_and(not_self, ops.expand_dims(contrast_valid, 0))
    same_class = ops.equal(ops.expand_dims(anchor_classes, 1), ops.expand_dims(contrast_classes, 0))
    positive = ops.logical_and(same_class, not_self)

    num_positives = ops.sum(ops.cast(positive, "float32"), axis=1)
    has_positive = num_positives > 0
    safe_num_positives = ops.maximum(num_positives, 1.0)
    log_denominator = _masked_logsumexp(logits, not_self)

    if formulation == "out":
        # -mean_p log(exp(s_ip) / sum_a exp(s_ia)) = log sum_a exp(s_ia) - mean_p s_ip
        mean_positive_logit = ops.sum(ops.where(positive, logits, 0.0), axis=1) / safe_num_positives
        terms = log_denominator - mean_positive_logit
    else:
        # -log(mean_p exp(s_ip) / sum_a exp(s_ia)) = log sum_a exp(s_ia) - logsumexp_p s_ip + log|P|
        log_positive_sum = _masked_logsumexp(logits, positive)
        terms = log_denominator - log_positive_sum + ops.log(safe_num_positives)
    return ops.where(has_positive, terms, 0.0), has_positive


def _masked_logsumexp(logits, mask):
    """Row-wise log-sum-exp of ``logits`` over the entries where ``mask`` is True.

    The row maximum (over the masked-in entries only) is subtracted before ``exp``. Rows with no
    masked-in entry give 0 (they are discarded by the callers).
    """
    has_entry = ops.any(mask, axis=1)
    row_max = ops.max(ops.where(mask, logits, _MASKED_LOGIT), axis=1, keepdims=True)
    row_max = ops.stop_gradient(ops.where(ops.expand_dims(has_entry, 1), row_max, 0.0))
    shifted = ops.where(mask, logits - row_max, 0.0)  # <= 0 where it matters: exp <= 1.
    exp_sum = ops.sum(ops.where(mask, ops.exp(shifted), 0.0), axis=1)
    # A row with an entry holds exp(0) = 1 at its maximum, so exp_sum >= 1 there.
    safe_sum = ops.where(has_entry, exp_sum, 1.0)
    return ops.log(safe_sum) + ops.squeeze(row_max, axis=1)


def _mean_over_anchors_with_positives(terms, has_positive):
    """Local sum of the terms / global count of anchors with a positive (0 if there are none)."""
    local_count = ops.sum(ops.cast(has_positive, "float32"))
    global_count = _sum_across_replicas(local_count)
    return ops.sum(terms) / ops.maximum(global_count, 1.0)


def _l2_normalize(features):
    """Unit vectors along the last axis (a zero vector stays zero; no NaN in the gradient)."""
    squared_norm = ops.sum(ops.square(features), axis=-1, keepdims=True)
    return features * ops.rsqrt(ops.maximum(squared_norm, _NORM_EPSILON))


# --------------------------------------------------------------------------------------------
# The losses
# --------------------------------------------------------------------------------------------

def supcon_loss(labels, features, temperature: float = 0.1, formulation: str = "out"):
    """Supervised contrastive loss (SupCon, Khosla et al. 2020); SimCLR when ``labels`` is None.

    Args:
        labels: integer tensor/array of shape (B,) or (B, 1), the class of each image; or None
            for SimCLR / NT-Xent, where the positives of a view are the other views of the
            same image. Float labels are refused (TypeError).
        features: float tensor/array of shape (B, V, D) (V views of each of B images) or
            (B, D) (V = 1). Any float dtype; it is cast to float32 and L2-normalised here.
        temperature: float > 0 (and >= 1e-4), the softmax temperature.
        formulation: "out" for L_out (mean over positives outside the log; the paper's choice
            and the default) or "in" for L_in (inside the log).

    Returns:
        A float32 scalar: the mean over the ``B * V`` anchors that have at least one positive
        of their loss terms (0 if there is none). Inside a ``tf.distribute`` replica context
        with several replicas it is this replica's share: its local anchors against the global
        batch, divided by the global number of anchors with a positive, so that the sum over
        the replicas is the loss of the global batch (see the module docstring).

    Raises:
        ValueError: temperature <= 0, unknown formulation, wrong ranks, batch-size mismatch;
            NaN or infinite features in an eager call (traced, as in a compiled ``fit``, the
            values are unknown: such a batch gives a NaN loss).
        TypeError: non-integer labels, non-float features, non-numeric temperature.
    """
    temperature = _check_temperature(temperature)
    formulation = _check_formulation(formulation)
    features = _check_features(features, allow_views=True, function_name="supcon_loss")
    if labels is not None:
        labels = _check_labels(labels, features, function_name="supcon_loss")

    num_views = features.shape[1]
    embedding_dim = features.shape[2]
    local_normalized = _l2_normalize(features)  # (B_local, V, D)
    global_normalized, global_labels, first_local_image = _gather_across_replicas(
        local_normalized, labels
    )
    local_batch = ops.shape(local_normalized)[0]
    global_batch = ops.shape(global_normalized)[0]

    if labels is None:  # SimCLR: the class of a view is the (global) index of its image.
        global_labels = ops.arange(global_batch, dtype="int32")
        labels = ops.arange(local_batch, dtype="int32") + ops.cast(first_local_image, "int32")

    # Anchors are ordered image-major: anchor b * V + v is view v of image b.
    anchors = ops.reshape(local_normalized, (-1, embedding_dim))
    contrast = ops.reshape(global_normalized, (-1, embedding_dim))
    anchor_classes = ops.reshape(
        ops.broadcast_to(ops.expand_dims(labels, 1), (local_batch, num_views)), (-1,)
    )
    contrast_classes = ops.reshape(
        ops.broadcast_to(ops.expand_dims(global_labels, 1), (global_batch, num_views)), (-1,)
    )
    anchor_positions = ops.arange(local_batch * num_views, dtype="int32") + ops.cast(
        first_local_image, "int32"
    ) * num_views
    terms, has_positive = _supcon_terms(
        anchors, contrast, anchor_classes, contrast_classes, anchor_positions,
        temperature, formulation,
    )
    return _mean_over_anchors_with_positives(terms, has_positive)


def start_and_floor(labels, num_views: int) -> tuple[float, float]:
    """Two landmarks of :func:`supcon_loss` (L_out and L_in) for one batch, in NumPy.

    * **start** ``log(A - 1)``, A = B * V anchors: the loss of every anchor when all pairwise
      similarities are equal (an encoder that tells nothing apart). Where a loss *starts*, not a
      bound: random embeddings start above it.
    * **floor**: the mean over the anchors that have a positive of ``log |P(i)|``, with
      ``|P(i)| = V * n_c - 1`` for an anchor of a class with ``n_c`` images in the batch. No
      embedding brings the batch loss below it; collapsing every class to one point, far from
      the others, approaches it as the temperature goes to 0.

    ``labels``: (B,) class ids; for SimCLR, where every image is its own class, ``np.arange(B)``.
    """
    if int(num_views) != num_views or num_views < 1:
        raise ValueError(f"num_views must be a positive integer, got {num_views!r}")
    if labels is None:
        raise ValueError("labels is None: pass the batch's class ids (np.arange(B) for SimCLR)")
    labels = np.ravel(np.asarray(labels))
    if labels.size == 0:
        raise ValueError("labels is empty")
    _, classes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    positives = num_views * counts[classes] - 1
    start = math.log(len(labels) * num_views - 1) if len(labels) * num_views > 1 else 0.0
    floor = float(np.mean(np.log(positives[positives > 0]))) if np.any(positives > 0) else 0.0
    return start, floor


def supcon_queue_loss(labels, queries, keys, queue, queue_labels, temperature: float = 0.1):
    """SupCon against a momentum encoder's keys and a queue of earlier keys (MoCo-style SupCon).

    The anchors are the ``B`` queries (one view per image, from the encoder being trained). The
    contrast set of every anchor is the ``B`` keys of this batch (the other view of each image,
    from the momentum encoder) followed by the ``K`` queue entries whose label is >= 0 (slots
    holding -1 are empty and take no part). The positives of anchor ``i`` are the entries of the
    contrast set with its label, its own key included, so every anchor has at least one::

        L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(q_i . k_p / t) / sum_{a in A} exp(q_i . k_a / t) )

    (``L_out``; no entry is excluded as "self": a query is never in the contrast set.) The loss
    is the mean of ``L_i`` over the anchors. The gradient flows into ``queries`` and, unless the
    caller stops it, into ``keys``; the momentum encoder's keys are constants (stop the gradient).

    Args:
        labels: int (B,) or (B, 1), the class of each image.
        queries: float (B, D), the trained encoder's projections of one view.
        keys: float (B, D), the momentum encoder's projections of another view of the same images.
        queue: float (K, D), earlier keys (K >= 0).
        queue_labels: int (K,), their classes, -1 for an empty slot.
        temperature: float > 0 (and >= 1e-4).

    Returns:
        A float32 scalar. Every input is cast to float32 and L2-normalised here.

    Raises:
        ValueError: bad temperature, shapes that do not match; NotImplementedError inside a
        ``tf.distribute`` context with several replicas (the queue is one device's).
        TypeError: non-integer labels, non-float embeddings.
    """
    temperature = _check_temperature(temperature)
    if _multi_replica_context() is not None:
        raise NotImplementedError("supcon_queue_loss runs on one device: its queue is not shared "
                                  "between tf.distribute replicas")
    name = "supcon_queue_loss"
    queries = _check_features(queries, allow_views=False, function_name=name)[:, 0, :]
    keys = _check_features(keys, allow_views=False, function_name=name)[:, 0, :]
    queue = _check_features(queue, allow_views=False, function_name=name)[:, 0, :]
    labels = _check_labels(labels, ops.expand_dims(queries, 1), function_name=name)
    queue_labels = _check_labels(queue_labels, ops.expand_dims(queue, 1), function_name=name)
    if keys.shape[0] is not None and queries.shape[0] is not None and keys.shape[0] != queries.shape[0]:
        raise ValueError(f"{name}: {queries.shape[0]} queries but {keys.shape[0]} keys")
    if len({queries.shape[-1], keys.shape[-1], queue.shape[-1]}) != 1:
        raise ValueError(f"{name}: queries, keys and queue must have one embedding size, got "
                         f"{queries.shape[-1]}, {keys.shape[-1]} and {queue.shape[-1]}")
    labels, queue_labels = ops.cast(labels, "int32"), ops.cast(queue_labels, "int32")
    contrast = ops.concatenate([_l2_normalize(keys), _l2_normalize(queue)], axis=0)
    contrast_classes = ops.concatenate([labels, queue_labels], axis=0)
    contrast_valid = ops.concatenate([ops.ones_like(labels, dtype="bool"), queue_labels >= 0], axis=0)
    no_self = -ops.ones_like(labels)  # a query is never in the contrast set
    terms, has_positive = _supcon_terms(_l2_normalize(queries), contrast, labels, contrast_classes, no_self,
                                        temperature, "out", contrast_valid)
    return _mean_over_anchors_with_positives(terms, has_positive)


def npairs_loss(labels, features, temperature: float = 0.05):
    """The loss of the original (2020) keras-io SupCon example, reproduced for teaching.

    That example L2-normalised the (B, D) projection outputs (one view per image), built the
    full similarity matrix ``logits = z z^T / temperature`` and passed it to
    tensorflow-addons' ``npairs_loss``: the targets are the label-equality matrix *including
    the diagonal*, each row divided by its sum, and the loss is the mean over rows of the
    softmax cross-entropy between those targets and the logits::

        loss = mean_i [ -sum_j t_ij log softmax_j(z_i . z_j / temperature) ],
        t_ij = [y_i == y_j] / #{k : y_k == y_i}.

    How it differs from :func:`supcon_loss`:

    * The diagonal is kept: every image is its own positive, and its self-similarity
      ``1 / temperature`` (the largest possible logit, 20 at temperature 0.05) dominates every
      row's softmax. Part of the loss is spent on a term the encoder cannot change, and a
      singleton class still has a (trivial) positive: itself.
    * Single view: there is no augmented second view of the same image, so without labels
      there would be no contrast at all.
    * The positives sit *inside a softmax target* (a cross-entropy against a distribution
      spread evenly over the positives), which equals SupCon's L_out form with the anchor put
      back into both numerator and denominator, rather than anchors with their positives
      excluding themselves.

    Args:
        labels: integer tensor/array of shape (B,) or (B, 1). Float labels are refused.
        features: float tensor/array of shape (B, D) (or (B, 1, D)); cast to float32 and
            L2-normalised here.
        temperature: float > 0 (and >= 1e-4); the example used 0.05.

    Returns:
        A float32 scalar. Under a multi-replica ``tf.distribute`` context each replica's rows
        are contrasted against the gathered global batch and divided by the global batch
        size, so that the sum over replicas is the global loss (same convention as
        :func:`supcon_loss`).
    """
    temperature = _check_temperature(temperature)
    features = _check_features(features, allow_views=False, function_name="npairs_loss")
    if labels is None:
        raise ValueError("npairs_loss: labels are required (the example was supervised)")
    labels = _check_labels(labels, features, function_name="npairs_loss")

    local_normalized = _l2_normalize(features)[:, 0, :]  # (B_local, D)
    global_normalized, global_labels, _ = _gather_across_replicas(local_normalized, labels)
    logits = ops.matmul(local_normalized, ops.transpose(global_normalized)) / temperature
    same_class = ops.cast(
        ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(global_labels, 0)), "float32"
    )
    targets = same_class / ops.sum(same_class, axis=1, keepdims=True)  # Diagonal included.
    log_probabilities = ops.log_softmax(logits, axis=1)  # Subtracts the row maximum.
    row_losses = -ops.sum(targets * log_probabilities, axis=1)
    every_row = ops.ones_like(row_losses, dtype="bool")
    return _mean_over_anchors_with_positives(row_losses, every_row)


def cross_entropy_over_views(labels, logits, label_smoothing: float = 0.0):
    """Softmax cross-entropy averaged over images and views: ``logits`` (B, V, C) or (B, C),
    ``labels`` int (B,) or (B, 1); a float32 scalar. ``label_smoothing`` as in :func:`hybrid_loss`."""
    label_smoothing = _check_label_smoothing(label_smoothing)
    logits = _check_features(logits, allow_views=True, function_name="cross_entropy_over_views")
    labels = ops.cast(_check_labels(labels, logits, function_name="cross_entropy_over_views"), "int32")
    log_probabilities = ops.log_softmax(logits, axis=-1)  # (B, V, C)
    targets = _smoothed_targets(labels, logits.shape[-1], label_smoothing)[:, None, :]
    return -ops.mean(ops.sum(targets * log_probabilities, axis=-1))


def _smoothed_targets(labels, num_classes, label_smoothing):
    targets = ops.one_hot(labels, num_classes, dtype="float32")
    return targets * (1.0 - label_smoothing) + label_smoothing / num_classes


def hybrid_loss(labels, logits, features, supcon_weight: float = 1.0, temperature: float = 0.1,
                label_smoothing: float = 0.0):
    """Cross-entropy on a classifier head plus ``supcon_weight`` times SupCon on a projection
    head, from the same views: one stage, no probe (the "hybrid" recipe).

    ``logits``: float (B, V, C) or (B, C), the classifier head's output for each view;
    ``features``: float (B, V, D) or (B, D), the projection head's. The value is
    ``mean over images and views of -log softmax(logits)[label] + supcon_weight *
    supcon_loss(labels, features, temperature)`` (``L_out``), a float32 scalar; with
    ``label_smoothing`` the cross-entropy's target puts ``1 - label_smoothing`` on the label and
    spreads ``label_smoothing`` evenly over all classes.
    """
    supcon_weight = _check_supcon_weight(supcon_weight)
    return (cross_entropy_over_views(labels, logits, label_smoothing)
            + supcon_weight * supcon_loss(labels, features, temperature))


# --------------------------------------------------------------------------------------------
# As Keras losses, for model.compile
# --------------------------------------------------------------------------------------------

def _class_ids(y_true):
    """Keras sometimes hands labels over as floats (e.g. its symbolic build under a tf.distribute
    strategy averages an int batch into float64): class ids are integral, so round them back.
    (The functions supcon_loss and npairs_loss refuse float labels.)"""
    y_true = ops.convert_to_tensor(y_true)
    if keras.backend.standardize_dtype(y_true.dtype) in _FLOAT_DTYPES:
        y_true = ops.cast(ops.round(y_true), "int32")
    return y_true


class _BatchLevelLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` whose ``call`` returns the batch's scalar: ``__call__`` passes it
    through without Keras' per-sample reduction and refuses sample (and class) weights."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} does not support sample_weight / class_weight: the loss is "
                "defined on the whole batch, not per sample"
            )
        with keras.name_scope(self.name):
            return self.call(y_true, y_pred)


@keras.saving.register_keras_serializable(package="supcon_lib")
class SupConLoss(_BatchLevelLoss):
    """:func:`supcon_loss` as a ``keras.losses.Loss``, for ``model.compile(loss=SupConLoss())``.

    ``y_true`` are the integer labels, shape (B,) or (B, 1); ``y_pred`` the embeddings, shape
    (B, V, D) (or (B, D)). The value is exactly ``supcon_loss(y_true, y_pred, temperature,
    formulation)`` on the batch.

    Keras' ``Loss.__call__`` casts ``y_true`` to float and reduces per-sample values; SupCon is
    a batch-level loss, so ``__call__`` is overridden to pass the integer labels through
    untouched and to return the scalar as is (no reduction, no division by the number of
    replicas: under ``tf.distribute`` the per-replica value already follows the
    sum-over-replicas convention that Keras' summed gradients need). Unlike
    :func:`supcon_loss`, float ``y_true`` is accepted and rounded to int32 class ids, because
    Keras itself produces float labels in places. Sample weights (and class weights) are
    refused: they have no per-sample meaning for a batch-level loss.

    Args:
        temperature: float > 0, the softmax temperature (default 0.1).
        formulation: "out" (L_out, default) or "in" (L_in).
        use_labels: bool; False ignores ``y_true`` and gives SimCLR's NT-Xent (default True).
        name: str, the loss name (default "supcon_loss").
        **kwargs: passed to ``keras.losses.Loss`` (``reduction``, ``dtype``); they do not change
            the value.
    """

    def __init__(self, temperature: float = 0.1, formulation: str = "out",
                 use_labels: bool = True, name: str = "supcon_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = _check_temperature(temperature)
        self.formulation = _check_formulation(formulation)
        self.use_labels = bool(use_labels)

    def call(self, y_true, y_pred):
        return supcon_loss(_class_ids(y_true) if self.use_labels else None, y_pred,
                           temperature=self.temperature, formulation=self.formulation)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"temperature": self.temperature, "formulation": self.formulation,
                       "use_labels": self.use_labels})
        return config


@keras.saving.register_keras_serializable(package="supcon_lib")
class NPairsLoss(_BatchLevelLoss):
    """:func:`npairs_loss` (the original example's loss) as a ``keras.losses.Loss``.

    ``y_true``: integer labels (B,) or (B, 1); ``y_pred``: one embedding per image, (B, D).
    Like :class:`SupConLoss` it returns the batch-level scalar as is and refuses sample weights.
    """

    def __init__(self, temperature: float = 0.05, name: str = "npairs_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = _check_temperature(temperature)

    def call(self, y_true, y_pred):
        return npairs_loss(_class_ids(y_true), y_pred, temperature=self.temperature)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="supcon_lib")
class HybridLoss(_BatchLevelLoss):
    """:func:`hybrid_loss` as a ``keras.losses.Loss``, for a model with ONE output that holds the
    classifier's logits and the projections side by side: ``y_pred`` (B, V, C + D) or (B, C + D),
    of which the first ``num_classes`` entries are logits. (One output keeps ``compile`` and
    checkpoints the same on every backend; ``recipe_models.build_hybrid_model`` builds such a model.)

    Args:
        num_classes: int >= 2, C.
        supcon_weight: float >= 0, the weight of the SupCon term (default 1).
        temperature: float > 0, SupCon's temperature (default 0.1).
    """

    def __init__(self, num_classes: int, supcon_weight: float = 1.0, temperature: float = 0.1,
                 label_smoothing: float = 0.0, name: str = "hybrid_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.temperature = _check_temperature(temperature)
        self.supcon_weight = _check_supcon_weight(supcon_weight)
        self.label_smoothing = _check_label_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] <= self.num_classes:
            raise ValueError(f"{self.name}: y_pred has {y_pred.shape[-1]} entries per view, not more than "
                             f"num_classes = {self.num_classes}: it must hold logits and projections")
        return hybrid_loss(_class_ids(y_true), y_pred[..., : self.num_classes], y_pred[..., self.num_classes:],
                           self.supcon_weight, self.temperature, self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "supcon_weight": self.supcon_weight,
                "temperature": self.temperature, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="supcon_lib")
class SparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy from logits and integer labels, with optional label smoothing
    (``keras.losses.SparseCategoricalCrossentropy`` has none). A per-sample loss, reduced by
    Keras as usual (so ``tf.distribute`` scales it as it scales Keras' own losses).

    ``y_true``: int (B,) or (B, 1) (Keras may hand them over as floats: they are rounded);
    ``y_pred``: float logits (B, C). Per sample ``-sum_c t_c log softmax(y_pred)_c`` with
    ``t = (1 - label_smoothing) one_hot(y) + label_smoothing / C``.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = _check_label_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(_class_ids(y_true), (-1,)), "int32")
        log_probabilities = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        return -ops.sum(_smoothed_targets(labels, y_pred.shape[-1], self.label_smoothing) * log_probabilities, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


# --------------------------------------------------------------------------------------------
# Several devices: the cross-replica glue, the only TensorFlow-specific code
# --------------------------------------------------------------------------------------------

def _multi_replica_context():
    """The TF replica context when running in one of several replicas, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None  # Cross-replica context, or the default single-replica strategy.
    return context


def _gather_across_replicas(normalized, labels):
    """All-gathers this replica's (B_local, V, D) embeddings and its labels along the batch.

    Returns ``(global_embeddings, global_labels, first_local_image)``, where
    ``first_local_image`` is the index in the global batch of this replica's first image
    (replicas may hold different batch sizes). Outside a multi-replica context (or on another
    backend) it returns the inputs unchanged and 0. ``labels`` may be None.
    """
    context = _multi_replica_context()
    if context is None:
        return normalized, labels, 0
    import tensorflow as tf

    # Differentiable: the gradient of all_gather all-reduces the upstream gradient and hands
    # each replica the slice of its own embeddings.
    global_embeddings = context.all_gather(normalized, axis=0)
    global_labels = None if labels is None else context.all_gather(labels, axis=0)
    local_size = tf.reshape(tf.shape(normalized)[0], [1])
    sizes = context.all_gather(local_size, axis=0)  # (num_replicas,)
    earlier = tf.range(context.num_replicas_in_sync) < context.replica_id_in_sync_group
    first_local_image = tf.reduce_sum(tf.where(earlier, sizes, tf.zeros_like(sizes)))
    return global_embeddings, global_labels, first_local_image


def _sum_across_replicas(value):
    """Sum of a (non-differentiable) float32 scalar over the replicas; identity otherwise."""
    context = _multi_replica_context()
    if context is None:
        return value
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------

#: Temperatures below this make float32 logits of magnitude > 1e4, where the loss has lost
#: the precision it needs; they are refused.
_MIN_TEMPERATURE = 1e-4
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _check_temperature(temperature: Any) -> float:
    """Returns ``temperature`` as a Python float, or raises if it is not a usable temperature."""
    if isinstance(temperature, (bool, str, bytes)):
        raise TypeError(
            f"temperature must be a real number, got {type(temperature).__name__}: "
            f"{temperature!r}"
        )
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(
            "temperature must be a real number (a Python/NumPy scalar or a concrete scalar "
            f"tensor), got {type(temperature).__name__}: {temperature!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if value < _MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be >= {_MIN_TEMPERATURE:g} (smaller ones give float32 logits too "
            f"large for a precise loss), got {temperature!r}"
        )
    return value


def _check_formulation(formulation: Any) -> str:
    if not isinstance(formulation, str):
        raise TypeError(
            f"formulation must be one of {FORMULATIONS}, got {type(formulation).__name__}: "
            f"{formulation!r}"
        )
    if formulation not in FORMULATIONS:
        raise ValueError(
            f"unknown formulation {formulation!r}: expected 'out' (L_out, the mean over "
            "positives outside the log) or 'in' (L_in, inside the log)"
        )
    return formulation


def _check_supcon_weight(supcon_weight):
    if isinstance(supcon_weight, bool) or not isinstance(supcon_weight, (int, float)) \
            or not math.isfinite(supcon_weight) or supcon_weight < 0:
        raise ValueError(f"supcon_weight must be a finite number >= 0, got {supcon_weight!r}")
    return float(supcon_weight)


def _check_label_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    return float(label_smoothing)


def _static_rank(tensor) -> int | None:
    """The rank of ``tensor`` if known statically, else None (TF graphs of unknown rank)."""
    try:
        return len(tensor.shape)
    except (TypeError, ValueError):
        return None


def _check_features(features: Any, allow_views: bool, function_name: str):
    """Converts ``features`` to a float32 tensor of shape (B, V, D) (V = 1 for rank 2 input)."""
    features = ops.convert_to_tensor(features)
    dtype = keras.backend.standardize_dtype(features.dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{function_name}: features must be a floating-point tensor, got dtype {dtype}"
        )
    rank = _static_rank(features)
    expected = "(B, D) or (B, V, D)" if allow_views else "(B, D)"
    if rank == 2:
        features = ops.expand_dims(features, axis=1)
    elif rank == 3 and (allow_views or features.shape[1] == 1):
        pass
    elif rank is None:
        raise ValueError(
            f"{function_name}: features must have shape {expected}, got a tensor of unknown rank"
        )
    else:
        raise ValueError(
            f"{function_name}: features must have shape {expected}, got rank {rank} with shape "
            f"{tuple(features.shape)}"
        )
    if features.shape[-1] == 0:
        raise ValueError(f"{function_name}: features have an empty embedding dimension D = 0")
    features = ops.cast(features, "float32")
    # NaN or infinite features: refused when their values are known (eager calls). While the loss
    # is being traced (tf.function, jax.jit, Keras' compiled fit) there are no values to look at:
    # there the loss (and its gradient) of such a batch is NaN, as Keras reports it.
    try:
        values = ops.convert_to_numpy(features)
    except (TypeError, NotImplementedError):  # a symbolic tensor (TensorFlow) or a tracer (JAX)
        values = None
    if values is not None and not np.all(np.isfinite(values)):
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        shown = (first[0], first[2]) if rank == 2 else first  # the index in the caller's (B, D) array
        raise ValueError(f"{function_name}: features contain NaN or infinite values (the first: "
                         f"{values[first]} at index {shown})")
    return features


def _check_labels(labels: Any, features, function_name: str):
    """Converts ``labels`` to an integer tensor of shape (B,), checking it against ``features``."""
    labels = ops.convert_to_tensor(labels)
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:
        raise TypeError(
            f"{function_name}: labels must be integers (class ids), got dtype {dtype}; "
            "cast them explicitly if they are integral floats"
        )
    rank = _static_rank(labels)
    if rank is None:
        # Rank unknown while tracing (e.g. a tf.function retraced with relaxed shapes): the
        # shape cannot be checked statically, so flatten (B,) or (B, 1) to (B,).
        labels = ops.reshape(labels, (-1,))
    elif rank == 2 and labels.shape[1] == 1:
        labels = ops.reshape(labels, (-1,))
    elif rank != 1:
        raise ValueError(
            f"{function_name}: labels must have shape (B,) or (B, 1), got shape "
            f"{tuple(labels.shape)}"
        )
    labels_batch, features_batch = labels.shape[0], features.shape[0]
    if labels_batch is not None and features_batch is not None and labels_batch != features_batch:
        raise ValueError(
            f"{function_name}: labels and features have different batch sizes "
            f"({labels_batch} labels for {features_batch} feature rows)"
        )
    return labels
