"""The input pipeline: which images each training step sees, in which order.

Every epoch visits the training set in an order that depends only on (seed, epoch)
(:func:`epoch_order`), cut into full batches (:func:`epoch_batches`), so a run resumed after its
last completed epoch retraces an uninterrupted one. :func:`make_dataset` turns in-memory arrays
into those batches for ``fit``: a ``tf.data`` pipeline on TensorFlow (which ``tf.distribute``
splits between replicas), an :class:`EpochBatches` (a ``keras.utils.PyDataset``) on JAX and
PyTorch. The order itself is plain NumPy, the same on every backend.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["EpochBatches", "epoch_batches", "epoch_order", "make_dataset", "num_rows"]


def epoch_order(num_items, seed, epoch):
    """The shuffled order of one epoch: a function of (seed, epoch) only, so resumes retrace.

    Plain NumPy (a PCG64 stream seeded by ``[seed, epoch]``), so every backend's input pipeline
    visits the data in the same order and no TensorFlow is needed to compute it.
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(num_items))


def epoch_batches(num_items, batch_size, seed, epoch):
    """(steps, batch_size) indices of one epoch: its :func:`epoch_order` cut into full batches,
    the batches a run with this seed and batch size trains on in that epoch."""
    steps = num_items // batch_size
    return epoch_order(num_items, seed, epoch)[: steps * batch_size].reshape(steps, batch_size)


def make_dataset(inputs, labels, batch_size, seed=0, first_epoch=0, last_epoch=1, shuffle=True):
    """Batches of in-memory arrays for epochs ``first_epoch .. last_epoch - 1``, ready for ``fit``.

    With ``shuffle`` each epoch visits the items in :func:`epoch_order` and yields only full
    batches (``len(inputs) // batch_size`` of them); without, one pass in order, last batch partial.
    On the TensorFlow backend this is a ``tf.data`` pipeline (which ``tf.distribute`` can split
    between replicas); on the others a :class:`EpochBatches` (a ``keras.utils.PyDataset``).
    """
    num_items = num_rows(inputs)
    batch_size = min(batch_size, num_items)
    if keras.backend.backend() != "tensorflow":
        return EpochBatches(inputs, labels, batch_size, seed, first_epoch, last_epoch, shuffle)
    import tensorflow as tf

    if not shuffle:
        return tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    steps = num_items // batch_size
    inputs, labels = tf.nest.map_structure(tf.constant, inputs), tf.constant(labels)

    def batches_of_epoch(epoch):
        index = tf.numpy_function(lambda e: epoch_batches(num_items, batch_size, seed, e), [epoch], tf.int64,
                                  stateful=False)
        return tf.ensure_shape(index, (steps, batch_size))

    # map + unbatch (not flat_map over a batched dataset): tf.distribute's rebatching then splits
    # whole batches between replicas and never rewrites the index batches themselves.
    batches = tf.data.Dataset.range(first_epoch, last_epoch).map(batches_of_epoch).unbatch()
    return batches.map(lambda index: (tf.nest.map_structure(lambda a: tf.gather(a, index), inputs),
                                      tf.gather(labels, index)),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def num_rows(inputs):
    """The number of items in ``inputs``: an array, or a tuple of arrays of one length (a model
    with several inputs, such as the momentum encoder's (images, labels))."""
    if isinstance(inputs, tuple):
        lengths = {len(part) for part in inputs}
        if len(lengths) != 1:
            raise ValueError(f"the inputs have different lengths: {sorted(lengths)}")
        return lengths.pop()
    return len(inputs)


class EpochBatches(keras.utils.PyDataset):
    """The input pipeline of the backends without ``tf.data`` (JAX, PyTorch): like the
    ``tf.data`` one, a single stream of the batches of epochs ``first_epoch .. last_epoch - 1``,
    item ``i`` being batch ``i % steps`` of epoch ``first_epoch + i // steps`` in
    :func:`epoch_order`.

    Every item is a pure function of its index. (Counting ``on_epoch_end`` calls instead would go
    wrong: Keras also calls it after peeking at a batch to build the model.) ``fit`` must get
    ``steps_per_epoch`` (so it keeps one iterator across epochs) and ``shuffle=False`` (so it does
    not reorder the batches), as ``training.fit_epochs`` does. Without ``shuffle``: one pass in order,
    the last batch partial.
    """

    def __init__(self, inputs, labels, batch_size, seed=0, first_epoch=0, last_epoch=1, shuffle=True):
        super().__init__()
        self.inputs = tuple(map(np.asarray, inputs)) if isinstance(inputs, tuple) else np.asarray(inputs)
        self.labels, self.num_items = np.asarray(labels), num_rows(inputs)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.first_epoch, self.last_epoch = int(first_epoch), int(last_epoch)
        self.steps = self.num_items // self.batch_size if shuffle else -(-self.num_items // self.batch_size)
        self._epoch, self._order = None, None  # the epoch being read and its (steps, batch_size) indices

    def __len__(self):
        return self.steps * (self.last_epoch - self.first_epoch) if self.shuffle else self.steps

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if not self.shuffle:
            items = slice(index * self.batch_size, (index + 1) * self.batch_size)
        else:
            epoch, step = self.first_epoch + index // self.steps, index % self.steps
            if epoch != self._epoch:  # fit reads in order: one permutation per epoch
                self._epoch, self._order = epoch, epoch_batches(self.num_items, self.batch_size, self.seed, epoch)
            items = self._order[step]
        if isinstance(self.inputs, tuple):
            return tuple(part[items] for part in self.inputs), self.labels[items]
        return self.inputs[items], self.labels[items]
