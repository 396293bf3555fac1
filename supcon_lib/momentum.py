"""SupCon with a momentum encoder and a queue of earlier keys and their labels (MoCo-style SupCon).

A batch of ``B`` images gives each anchor ``2B - 1`` others to contrast with. A queue lets every
anchor see many more at almost no cost: the embeddings ("keys") of the last ``K`` images, kept
with their labels. Keys from many steps ago were made by an older encoder; to keep them
comparable, keys come from a slowly moving copy of the encoder (He et al. 2020, MoCo), and
SupCon's label positives carry over unchanged (as in MoCo-v2-SupContrast). Each training step:

1. the key branch (encoder + projection head) moves towards the trained one:
   ``key <- momentum * key + (1 - momentum) * online`` for every variable, batch-norm statistics
   included (on the first step it is a copy);
2. two augmented views of every image: the first goes through the trained branch (queries, with
   gradient), the second through the key branch at inference (keys, constants);
3. the loss is :func:`supcon_lib.losses.supcon_queue_loss` of the queries against this batch's
   keys and the queue (empty slots, labelled -1, take no part);
4. the keys and their labels enter the queue, pushing out the oldest ``B``.

The model takes ``(images, labels)`` as its input, because step 4 needs the labels; it adds the
loss with ``add_loss`` (compile it without a ``loss``). Written on ``keras.ops`` and variables
assigned inside ``call``, so it trains with ``fit`` on TensorFlow and JAX alike (one device: the
queue is not shared between ``tf.distribute`` replicas).
"""

from __future__ import annotations

import keras
from keras import ops

from supcon_lib import augment, losses

__all__ = ["MomentumSupCon"]


class MomentumSupCon(keras.Model):
    """(images uint8 (B, H, W, C), labels int (B,)) -> queries (B, D); training adds the loss.

    Args:
        pipeline: the augmentation (a Keras layer/model: images -> normalised float images).
        encoder: images -> features (B, F), the encoder being trained.
        head: features -> projections (B, D), the projection head being trained.
        queue_size: K >= 1, how many earlier keys are kept (at least the batch size to be useful).
        momentum: in [0, 1), how slowly the key branch follows (0: a copy at every step).
        temperature: the loss's temperature.

    Its variables (what a checkpoint must hold) include the key branch, the queue and its labels.
    """

    def __init__(self, pipeline, encoder, head, queue_size=4096, momentum=0.99, temperature=0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.temperature = losses.SupConLoss(temperature).temperature  # checks it
        self.queue_size, self.momentum = queue_size, float(momentum)
        self.pipeline, self.encoder, self.head = pipeline, encoder, head
        self.views = augment.MultiView(pipeline, 2, name="views")
        self.key_encoder = keras.models.clone_model(encoder)
        self.key_head = keras.models.clone_model(head)
        self.key_encoder.trainable = False
        self.key_head.trainable = False

    def build(self, input_shape):
        image_shape = tuple(input_shape[0][1:])
        self.views.build((None, *image_shape))
        for model in (self.encoder, self.key_encoder):
            model.build((None, *image_shape))
        dim = self.head.output_shape[-1]
        self.queue = self.add_weight(shape=(self.queue_size, dim), initializer="zeros", trainable=False,
                                     name="queue")
        self.queue_labels = self.add_weight(shape=(self.queue_size,), initializer=keras.initializers.Constant(-1),
                                            dtype="int32", trainable=False, name="queue_labels")
        self.steps_done = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False,
                                          name="steps_done")
        self.pairs = list(zip(self.key_encoder.variables + self.key_head.variables,
                              self.encoder.variables + self.head.variables))
        for key, online in self.pairs:
            if tuple(key.shape) != tuple(online.shape):
                raise ValueError(f"key branch variable {key.path} {key.shape} != {online.path} {online.shape}")

    def _follow(self):
        """Step 1: the key branch moves towards the trained one (a copy on the first step)."""
        momentum = ops.where(self.steps_done > 0, self.momentum, 0.0)
        for key, online in self.pairs:
            value = ops.cast(ops.stop_gradient(online), "float32")
            new = momentum * ops.cast(key, "float32") + (1.0 - momentum) * value
            key.assign(ops.cast(new, key.dtype))

    def call(self, inputs, training=False):
        images, labels = inputs
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        if not training:
            return self.head(self.encoder(self.pipeline(images, training=False), training=False))
        self._follow()
        views = self.views(images, training=True)  # (B, 2, H, W, C)
        queries = self.head(self.encoder(views[:, 0], training=True), training=True)
        keys = ops.stop_gradient(self.key_head(self.key_encoder(views[:, 1], training=False), training=False))
        keys = ops.cast(keys, "float32")
        self.add_loss(losses.supcon_queue_loss(labels, queries, keys, self.queue, self.queue_labels,
                                               self.temperature))
        batch = ops.shape(keys)[0]
        normalized = keys / ops.maximum(ops.norm(keys, axis=1, keepdims=True), 1e-12)
        self.queue.assign(ops.concatenate([normalized, self.queue[: self.queue_size - batch]], axis=0)
                          [: self.queue_size])
        self.queue_labels.assign(ops.concatenate([labels, self.queue_labels[: self.queue_size - batch]], axis=0)
                                 [: self.queue_size])
        self.steps_done.assign(self.steps_done + 1)
        return ops.cast(queries, "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.head.output_shape[-1])
