"""Backend-agnostic test helpers: gradients and compilation on TensorFlow and on JAX.

The library itself only uses ``keras.ops``; the tests need two things that Keras 3 does not wrap:
differentiating a function and compiling one. These helpers dispatch on
``keras.backend.backend()`` (set by ``KERAS_BACKEND`` before Keras is imported) and import the
backend's own framework lazily, so a JAX run never needs TensorFlow's autodiff and vice versa.

* TensorFlow: ``tf.GradientTape`` (eager) and ``tf.function(jit_compile=True)`` (XLA).
* JAX: ``jax.value_and_grad`` and ``jax.jit``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import keras
import numpy as np

BACKEND = keras.backend.backend()
SUPPORTED_BACKENDS = ("tensorflow", "jax")


def _unsupported():
    return NotImplementedError(
        f"the tests support the Keras backends {SUPPORTED_BACKENDS}, not {BACKEND!r}"
    )


def to_numpy(tensor) -> np.ndarray:
    """A NumPy copy of a backend tensor or a ``keras.Variable`` (bfloat16 stays
    ``ml_dtypes.bfloat16``). TensorFlow tensors and variables go through their own ``.numpy()``:
    NumPy 2 warns when ``np.array`` converts a variable or a bfloat16 tensor directly."""
    if isinstance(tensor, keras.Variable):
        tensor = tensor.value
    if BACKEND == "tensorflow":
        import tensorflow as tf

        if isinstance(tensor, (tf.Tensor, tf.Variable)):
            return np.asarray(tensor.numpy())
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def value_and_gradient(fn: Callable, x):
    """``(fn(x), d fn / d x)`` as NumPy arrays, for a function ``fn`` with a scalar output.

    ``x`` keeps its dtype (float16 and bfloat16 included), and so does the gradient. A gradient
    that does not depend on ``x`` at all comes back as zeros (TensorFlow's tape says None).
    Eager on both backends (``tf.GradientTape``, ``jax.value_and_grad`` without ``jax.jit``):
    on JAX every primitive is compiled once per shape and then reused, which is cheaper than a
    fresh ``jax.jit`` of every (new) closure when a test takes many gradients at one shape.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        gradient = tape.gradient(value, x)
        if gradient is None:
            gradient = tf.zeros_like(x)
        return to_numpy(value), to_numpy(gradient)
    if BACKEND == "jax":
        import jax

        value, gradient = jax.value_and_grad(fn)(jax.numpy.asarray(x))
        return to_numpy(value), to_numpy(gradient)
    raise _unsupported()


def gradient(fn: Callable, x) -> np.ndarray:
    """``d fn / d x`` as a NumPy array (see :func:`value_and_gradient`)."""
    return value_and_gradient(fn, x)[1]


def model_gradients(model: keras.Model, loss_fn: Callable, inputs) -> list[np.ndarray]:
    """Gradients of ``loss_fn(model(inputs))`` w.r.t. ``model.trainable_weights`` (NumPy).

    The forward pass runs in inference mode (``training`` unset), as ``model(inputs)`` does;
    on JAX it is ``model.stateless_call`` under one ``jax.jit``.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss_fn(model(inputs))
        return [to_numpy(g) for g in tape.gradient(value, model.trainable_weights)]
    if BACKEND == "jax":
        import jax

        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]

        def loss_of_weights(trainable_values: Sequence):
            outputs, _ = model.stateless_call(trainable_values, non_trainable, inputs)
            return loss_fn(outputs)

        return [to_numpy(g) for g in jax.jit(jax.grad(loss_of_weights))(trainable)]
    raise _unsupported()


def xla_compile(fn: Callable) -> Callable:
    """``fn`` compiled whole by XLA: ``tf.function(jit_compile=True)`` or ``jax.jit``.

    Shapes are those of the first call's arguments (no unknown dimensions on either backend).
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    raise _unsupported()


# What a GPU reader's runs use, forced on the CPU by the learning tests: XLA on with mixed float16
# (a T4) or mixed bfloat16 (an A100 or H200, and what the JAX script picks there).
FLOAT16_XLA = dict(jit_compile="on", precision="mixed_float16")
BFLOAT16_XLA = dict(jit_compile="on", precision="mixed_bfloat16")


def assert_trained_with(metrics, settings):
    """A finished run's metrics show the precision of ``settings`` (float32 where it names none)
    and, where ``settings`` turns XLA on, a compiled step; and the run restored Keras' global
    dtype policy."""
    assert metrics["precision"] == settings.get("precision", "float32")
    if settings.get("jit_compile") == "on":
        assert metrics["jit_compile"] is True
    assert keras.config.dtype_policy().name == "float32"


@contextlib.contextmanager
def variables_created_while_tracing():
    """Collect the names of variables created inside a traced function (TensorFlow; on JAX the
    list stays empty). Each one makes ``tf.function`` trace that function twice, and XLA compile
    it twice: a training step must find its optimizer slots and metrics already made."""
    created = []
    if BACKEND != "tensorflow":
        yield created
        return
    import tensorflow as tf

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        yield created
