"""The optimizer of a run and its learning-rate schedule.

SGD (the default): Nesterov momentum 0.9, a linear warm-up to the peak rate then a cosine decay
to 0, and decoupled weight decay that spares biases and batch-norm parameters. Adam: the original
keras-io example's constant rate. The peak rate and the decay come from the run's settings
(``run_config.RunConfig.base_learning_rate`` and ``.decay``, which also explain the weight decay's
Keras convention).
"""

from __future__ import annotations

import keras

__all__ = ["learning_rate_schedule", "make_optimizer"]


def learning_rate_schedule(config, steps_per_epoch, epochs, learning_rate=None, kind=None):
    """SGD: linear warm-up (10% of the epochs, at most 10) to the peak, then cosine decay to 0.
    Adam (the original example's recipe): the constant rate."""
    kind = kind or config.optimizer
    learning_rate = learning_rate if learning_rate is not None else config.base_learning_rate
    if kind == "adam":
        return float(learning_rate)
    total_steps = max(1, steps_per_epoch * epochs)
    warmup_epochs = config.warmup_epochs if config.warmup_epochs is not None else min(10, 0.1 * epochs)
    warmup_steps = min(total_steps - 1, int(round(warmup_epochs * steps_per_epoch)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warmup_steps else learning_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(config, steps_per_epoch, epochs, learning_rate=None, weight_decay=None, kind=None):
    """SGD + momentum with warm-up and cosine decay (default), or constant-rate Adam."""

    kind = kind or config.optimizer
    weight_decay = weight_decay if weight_decay is not None else config.decay
    schedule = learning_rate_schedule(config, steps_per_epoch, epochs, learning_rate, kind)
    if kind == "adam":
        optimizer = keras.optimizers.Adam(schedule, weight_decay=weight_decay or None)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay or None)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
