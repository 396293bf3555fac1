"""Keras callbacks that watch the embedding while a model trains.

:class:`GeometryMonitor` measures, at the end of every epoch, the alignment and uniformity (Wang &
Isola, 2020, arXiv:2005.10242; :mod:`supcon_lib.geometry`) of a fixed set of held-out images: of
the encoder features and, when a projection head is given, of the projections the SupCon loss
sees. It writes them into the epoch's ``logs``, so Keras' ``History`` and the run's history
(``metrics.json``) keep one value per epoch, and they are checkpointed with the other metrics.

It only *reads* the model: the images are run in inference mode (``training=False``, no
augmentation, batch-norm running averages), no random generator is drawn from, and no weight or
batch-norm statistic changes, so a run with the monitor trains exactly as one without it.

Cost: one forward pass over ``max_images`` images per epoch and a ``max_images x max_images``
pairwise computation in NumPy. ``training.run`` uses 256 held-out images (``RunConfig.monitor_geometry``):
about 0.2 s per epoch for the ``cpu`` profile's encoder on 2 CPU cores, 2% of its 9-s epoch
(measured 2026-11-29; 512 images took 0.36 s).
"""

from __future__ import annotations

import keras
import numpy as np

from supcon_lib import geometry

__all__ = ["GEOMETRY_KEYS", "GeometryMonitor"]

#: The keys :class:`GeometryMonitor` adds to each epoch's logs (the ``projection_*`` ones only
#: when it has a projection head).
GEOMETRY_KEYS = ("feature_alignment", "feature_uniformity", "projection_alignment", "projection_uniformity")


class GeometryMonitor(keras.callbacks.Callback):
    """Record alignment and uniformity of held-out images' embeddings at the end of each epoch.

    ``feature_alignment`` / ``projection_alignment``: :func:`geometry.alignment`, the mean squared
    distance between L2-normalised embeddings of images of the *same class* (SupCon's positives;
    smaller is better aligned, at most 4). ``feature_uniformity`` / ``projection_uniformity``:
    :func:`geometry.uniformity` with ``t = 2`` (more negative is more uniform, never below -8).

    Args:
        images: held-out images ``(N, H, W, C)`` as the model takes them (e.g. uint8); the first
            ``max_images`` of a seeded permutation are used, the same ones every epoch.
        labels: their integer labels ``(N,)``.
        encoder: a Keras model, preprocessed images -> features ``(batch, D)``.
        preprocess: a Keras layer or model applied first, in inference mode (e.g. the run's
            augmentation pipeline, which then only normalises), or ``None``.
        projection_head: a Keras model, features -> projections, or ``None``.
        max_images: how many images to use (at least 2).
        seed: seed of the choice of images.
        batch_size: images per forward pass.

    Raises:
        ValueError: images and labels of different lengths, fewer than 2 images, a ``max_images``
            or ``batch_size`` that is not a positive integer, or no encoder.
    """

    def __init__(self, images, labels, encoder, preprocess=None, projection_head=None,
                 max_images: int = 256, seed: int = 0, batch_size: int = 256):
        super().__init__()
        for value, name in ((max_images, "max_images"), (batch_size, "batch_size")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, found {value!r}")
        if max_images < 2:
            raise ValueError(f"max_images must be at least 2 (uniformity needs pairs), found {max_images}")
        images, labels = np.asarray(images), np.asarray(labels)
        if labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"images and labels must have the same length, found {len(images)} images "
                             f"and labels of shape {labels.shape}")
        if len(images) < 2:
            raise ValueError(f"at least 2 images are needed, found {len(images)}")
        if encoder is None or not callable(encoder):
            raise ValueError("encoder must be a Keras model (images -> features)")
        chosen = np.sort(np.random.default_rng(seed).permutation(len(images))[:max_images])
        self.images, self.labels = images[chosen], labels[chosen]
        self.encoder, self.preprocess, self.projection_head = encoder, preprocess, projection_head
        self.batch_size = int(batch_size)
        self._embedder = None

    def _build(self):
        inputs = keras.Input(self.images.shape[1:])
        x = self.preprocess(inputs, training=False) if self.preprocess is not None else inputs
        features = self.encoder(x, training=False)
        outputs = [features]
        if self.projection_head is not None:
            outputs.append(self.projection_head(features, training=False))
        return keras.Model(inputs, outputs, name="geometry_monitor")

    def measure(self) -> dict:
        """The current values, ``{key: float}`` (what :meth:`on_epoch_end` adds to the logs)."""
        if self._embedder is None:
            self._embedder = self._build()
        outputs = self._embedder.predict(self.images, batch_size=self.batch_size, verbose=0)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        values = {}
        for prefix, embeddings in zip(("feature", "projection"), outputs):
            embeddings = np.asarray(embeddings, np.float64)
            # A row of zeros (every feature of an image 0 after a ReLU) has no direction; nudge it
            # so that normalising is defined, rather than failing in the middle of a run.
            zero = ~np.any(embeddings, axis=1)
            embeddings[zero, 0] = 1e-12
            values[f"{prefix}_alignment"] = geometry.alignment(embeddings, self.labels)
            values[f"{prefix}_uniformity"] = geometry.uniformity(embeddings)
        return values

    def on_epoch_end(self, epoch, logs=None):
        """Add the values to ``logs`` (Keras passes the same dict on to ``History``)."""
        if logs is not None:
            logs.update(self.measure())
