"""Encoders and heads: the networks that SupCon trains.

Supervised contrastive learning splits a classifier into three parts:

* an **encoder** maps an image to a feature vector (here: the output of global average pooling);
* a **projection head** maps that vector to the smaller space where the contrastive loss is computed.
  It is used only during contrastive pre-training and thrown away afterwards (Khosla et al. 2020,
  following SimCLR): the features *before* the projection transfer better than those after it;
* a **classifier head** is trained on top of the (usually frozen) encoder with cross-entropy.

Encoders (:data:`ENCODERS`, built by :func:`build_encoder`):

``"resnet18"``
    The CIFAR variant of ResNet-18 used by the paper: basic blocks ``[2, 2, 2, 2]`` with widths
    64/128/256/512 and a *CIFAR stem*: one 3x3 convolution with stride 1 and no max-pool, so a
    32x32 image is still 32x32 after the stem and 4x4 in the last stage. 512 features, ~11.2M weights.
``"resnet_small"``
    The same family at a quarter of the width (16/32/64/128) with one block per stage: 128 features,
    ~0.31M weights. One training step of 128 images takes ~0.4-0.6 s on 2 CPU cores (220-330
    images/s, against ~10 images/s for ``"resnet18"`` and ~120 for two blocks per stage), so a
    CPU run finishes in minutes.
``"resnet14"``
    He et al.'s (2016) CIFAR ResNet of depth 6n + 2 with n = 2: three stages of two basic blocks,
    widths 16/32/64, 64 features, ~0.17M weights. Deeper at low resolution than ``"resnet_small"``
    for ~1.5x its multiply-adds; the ``cpu`` profile's encoder (``benchmarks/recipe_study.py``).
``"resnet50v2"``
    The encoder of the original keras-io SupCon example: ``keras.applications.ResNet50V2`` with an
    *ImageNet stem* (7x7 stride-2 convolution, then a stride-2 max-pool). Designed for 224x224 inputs,
    it shrinks a 32x32 CIFAR image to 8x8 before the first block and to 1x1 *before* the last stage,
    whose 2048-channel convolutions then see a single pixel. Kept for comparison; see :func:`feature_map_sizes`.

All encoders expect images that are already normalised floats (normalisation is a data-pipeline step)
and use channels-last layout. Convolutions use ``he_normal`` initialisation and no bias (batch
normalisation follows each one). There are no kernel regularisers: weight decay belongs to the
optimizer (e.g. ``keras.optimizers.SGD(weight_decay=...)``), which is where the paper applies it.
Batch normalisation uses momentum 0.9 (PyTorch's 0.1 convention) rather than Keras' 0.99, so the
moving statistics used at inference settle within a few dozen steps on short CPU runs.

Projection heads (:data:`PROJECTION_HEADS`, :func:`build_projection_head`) output raw vectors:
the contrastive loss L2-normalises them itself. Classifier heads (:data:`CLASSIFIER_HEADS`,
:func:`build_classifier_head`) output *logits*; pair them with ``from_logits=True`` losses.

Everything here is plain Keras 3 (layers and ``keras.ops``, no ``tf.*``), so it runs on the JAX
backend as well as on TensorFlow (``KERAS_BACKEND=jax``; both are tested).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import keras
import numpy as np
from keras import layers

from supcon_lib.checks import check_positive_int

__all__ = [
    "CLASSIFIER_HEADS",
    "ENCODERS",
    "PROJECTION_HEADS",
    "build_classifier_head",
    "build_encoder",
    "build_projection_head",
    "count_parameters",
    "encoder_feature_dim",
    "feature_map_sizes",
]

#: Encoder names accepted by :func:`build_encoder`.
ENCODERS = ("resnet18", "resnet_small", "resnet14", "resnet50v2")
#: Projection-head kinds accepted by :func:`build_projection_head`.
PROJECTION_HEADS = ("original", "linear", "mlp")
#: Classifier-head kinds accepted by :func:`build_classifier_head`.
CLASSIFIER_HEADS = ("linear", "mlp")

# (stage widths, blocks per stage) of the CIFAR ResNets built by _build_cifar_resnet.
_CIFAR_RESNETS = {
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet_small": ((16, 32, 64, 128), (1, 1, 1, 1)),
    "resnet14": ((16, 32, 64), (2, 2, 2)),
}
_FEATURE_DIMS = {"resnet18": 512, "resnet_small": 128, "resnet14": 64, "resnet50v2": 2048}

_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------

def _check_choice(value, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def _check_image_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}") from None
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    for size in shape:
        check_positive_int(size, f"every entry of input_shape {input_shape!r}")
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "these encoders use channels-last images; keras.config.image_data_format() is "
            f"{keras.config.image_data_format()!r}"
        )
    return tuple(int(size) for size in shape)


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------

def encoder_feature_dim(name: str) -> int:
    """Length (an int) of the feature vector produced by the encoder called ``name``; raises
    ``ValueError`` for a name not in :data:`ENCODERS`."""
    return _FEATURE_DIMS[_check_choice(name, ENCODERS, "encoder")]


def build_encoder(
    name: str = "resnet18",
    input_shape: Sequence[int] = (32, 32, 3),
    name_prefix: str | None = None,
) -> keras.Model:
    """Build an encoder mapping images ``(B, H, W, C)`` to pooled features ``(B, feature_dim)``.

    Args:
        name: one of :data:`ENCODERS` (see the module docstring).
        input_shape: ``(height, width, channels)`` of the (already normalised, float) images.
        name_prefix: prepended to the model's name and, for the CIFAR ResNets, to every layer name,
            so that two encoders can live side by side in one model or one plot.
            (``keras.applications.ResNet50V2`` fixes its own layer names; only the model is renamed.)

    Returns:
        An uncompiled, randomly initialised functional ``keras.Model``; its output dtype is the
        global dtype policy's compute dtype (float32 by default).

    Raises:
        ValueError: an unknown ``name``, an ``input_shape`` that is not three positive integers,
            a ``name_prefix`` that is not a string, or channels-first image layout.
    """
    _check_choice(name, ENCODERS, "encoder")
    input_shape = _check_image_shape(input_shape)
    if name_prefix is None:
        name_prefix = ""
    if not isinstance(name_prefix, str):
        raise ValueError(f"name_prefix must be a string or None, got {name_prefix!r}")

    if name == "resnet50v2":
        return keras.applications.ResNet50V2(
            include_top=False,
            weights=None,
            input_shape=input_shape,
            pooling="avg",
            name=f"{name_prefix}resnet50v2",
        )
    widths, blocks_per_stage = _CIFAR_RESNETS[name]
    return _build_cifar_resnet(input_shape, widths, blocks_per_stage, name=name, prefix=name_prefix)


def _conv_bn(x, filters: int, kernel_size: int, strides: int, name: str):
    """Convolution (no bias, he_normal) followed by batch normalisation."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    return layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=f"{name}_bn")(x)


def _basic_block(x, filters: int, strides: int, name: str):
    """ResNet basic block: two 3x3 convolutions plus a shortcut, then ReLU.

    The shortcut is the identity unless the block changes the resolution or the width; then it is a
    1x1 convolution with the block's stride (the "option B" projection shortcut of He et al. 2016).
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, name=f"{name}_shortcut")
    x = _conv_bn(x, filters, 3, strides, name=f"{name}_1")
    x = layers.ReLU(name=f"{name}_1_relu")(x)
    x = _conv_bn(x, filters, 3, 1, name=f"{name}_2")
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


def _build_cifar_resnet(input_shape, widths, blocks_per_stage, name: str, prefix: str) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name=f"{prefix}images")
    # CIFAR stem: a single 3x3 stride-1 convolution and no max-pool keeps the full 32x32 resolution.
    x = _conv_bn(inputs, widths[0], 3, 1, name=f"{prefix}stem")
    x = layers.ReLU(name=f"{prefix}stem_out")(x)
    for stage, (filters, num_blocks) in enumerate(zip(widths, blocks_per_stage), start=1):
        for block in range(1, num_blocks + 1):
            # The first block of every stage but the first halves the resolution.
            strides = 2 if (block == 1 and stage > 1) else 1
            x = _basic_block(x, filters, strides, name=f"{prefix}stage{stage}_block{block}")
    features = layers.GlobalAveragePooling2D(name=f"{prefix}avg_pool")(x)
    return keras.Model(inputs, features, name=f"{prefix}{name}")


# --------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------

def build_projection_head(
    kind: str = "mlp",
    input_dim: int = 512,
    projection_dim: int = 128,
    hidden_dim: int | None = None,
    name: str = "projection_head",
) -> keras.Model:
    """Build a projection head ``(B, input_dim) -> (B, projection_dim)``.

    Kinds (:data:`PROJECTION_HEADS`):

    ``"original"``
        ``Dense(projection_dim, activation="relu")``, as in the keras-io example. Its outputs are
        all >= 0, so after L2 normalisation every pair of projections has cosine similarity >= 0:
        the loss can never push two samples to opposite sides of the sphere.
    ``"linear"``
        ``Dense(projection_dim)``.
    ``"mlp"``
        The paper's head: ``Dense(hidden_dim) -> ReLU -> Dense(projection_dim)``, with
        ``hidden_dim`` defaulting to ``input_dim`` and no activation on the output.

    The output is *not* normalised; the SupCon loss L2-normalises it. Raises ``ValueError`` for
    an unknown ``kind`` or a size that is not a positive integer.
    """
    _check_choice(kind, PROJECTION_HEADS, "projection head")
    input_dim = check_positive_int(input_dim, "input_dim")
    projection_dim = check_positive_int(projection_dim, "projection_dim")
    hidden_dim = input_dim if hidden_dim is None else check_positive_int(hidden_dim, "hidden_dim")

    inputs = keras.Input(shape=(input_dim,), name=f"{name}_features")
    if kind == "original":
        outputs = layers.Dense(projection_dim, activation="relu", name=f"{name}_dense")(inputs)
    elif kind == "linear":
        outputs = layers.Dense(projection_dim, name=f"{name}_dense")(inputs)
    else:  # "mlp"
        x = layers.Dense(hidden_dim, name=f"{name}_hidden")(inputs)
        x = layers.ReLU(name=f"{name}_relu")(x)
        outputs = layers.Dense(projection_dim, name=f"{name}_output")(x)
    return keras.Model(inputs, outputs, name=name)


def build_classifier_head(
    kind: str = "linear",
    input_dim: int = 512,
    num_classes: int = 10,
    hidden_units: int = 512,
    dropout: float = 0.5,
    name: str = "classifier_head",
) -> keras.Model:
    """Build a classifier head ``(B, input_dim) -> (B, num_classes)`` returning **logits**.

    Kinds (:data:`CLASSIFIER_HEADS`):

    ``"linear"``
        ``Dense(num_classes)``: the linear evaluation protocol of the paper.
    ``"mlp"``
        The keras-io example's head: ``Dropout(dropout) -> Dense(hidden_units, relu) ->
        Dropout(dropout) -> Dense(num_classes)``. The example ended in a softmax; here the last
        layer emits logits instead (numerically safer), so train with
        ``SparseCategoricalCrossentropy(from_logits=True)`` and apply ``keras.ops.softmax`` to get
        probabilities. ``hidden_units`` and ``dropout`` are ignored by ``"linear"``.

    Raises ``ValueError`` for an unknown ``kind``, a size that is not a positive integer, or a
    ``dropout`` outside [0, 1).
    """
    _check_choice(kind, CLASSIFIER_HEADS, "classifier head")
    input_dim = check_positive_int(input_dim, "input_dim")
    num_classes = check_positive_int(num_classes, "num_classes")
    hidden_units = check_positive_int(hidden_units, "hidden_units")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1), got {dropout!r}")

    inputs = keras.Input(shape=(input_dim,), name=f"{name}_features")
    if kind == "linear":
        logits = layers.Dense(num_classes, name=f"{name}_logits")(inputs)
    else:  # "mlp"
        x = layers.Dropout(dropout, name=f"{name}_dropout_1")(inputs)
        x = layers.Dense(hidden_units, activation="relu", name=f"{name}_hidden")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout_2")(x)
        logits = layers.Dense(num_classes, name=f"{name}_logits")(x)
    return keras.Model(inputs, logits, name=name)


# --------------------------------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------------------------------

_POOLING_TYPES = (
    layers.MaxPooling2D,
    layers.AveragePooling2D,
    layers.GlobalAveragePooling2D,
    layers.GlobalMaxPooling2D,
)


def _is_feature_map_layer(layer, include_convolutions: bool) -> bool:
    if isinstance(layer, _POOLING_TYPES):
        return True
    # Block outputs: "stem_out"/"stageS_blockB_out" here, "convS_blockB_out" in keras.applications.
    if layer.name.endswith("_out"):
        return True
    return include_convolutions and isinstance(layer, layers.Conv2D)


def feature_map_sizes(model: keras.Model, include_convolutions: bool = True) -> list[tuple[str, tuple]]:
    """List ``(layer_name, output_shape)`` for the layers that shape the feature maps, in order.

    Reported layers: convolutions (unless ``include_convolutions=False``), pooling layers, and
    block outputs (layers whose name ends in ``_out``: the stem and every residual block of the CIFAR
    ResNets, every block of ``keras.applications`` ResNets). Output shapes omit the batch dimension,
    e.g. ``("stem_out", (32, 32, 64))``. Nested models are searched recursively.

    This makes the stems comparable: on 32x32 inputs the CIFAR ResNets end their last stage at 4x4,
    while ResNet50V2 (ImageNet stem) is down to 1x1 already at the end of its third stage
    (``conv4_block6_out``). Raises ``ValueError`` unless ``model`` is a built ``keras.Model``.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built or not model.layers:
        raise ValueError(f"model {model.name!r} has no built layers to inspect")

    sizes: list[tuple[str, tuple]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            sizes.extend(feature_map_sizes(layer, include_convolutions))
        elif _is_feature_map_layer(layer, include_convolutions):
            try:
                shape = tuple(layer.output.shape)
            except (AttributeError, ValueError):  # a layer never called symbolically
                continue
            sizes.append((layer.name, shape[1:]))
    return sizes


def count_parameters(model: keras.Model) -> tuple[int, int]:
    """Return ``(trainable, non_trainable)`` parameter counts.

    Non-trainable parameters are e.g. batch normalisation's moving means and variances, or every
    weight of a frozen encoder. Raises ``ValueError`` unless ``model`` is a ``keras.Model``.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")

    def total(weights) -> int:
        return int(sum(int(np.prod(weight.shape)) for weight in weights))

    return total(model.trainable_weights), total(model.non_trainable_weights)
