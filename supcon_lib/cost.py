"""What a run costs: multiply-adds counted from the model, and GPU times estimated from them.

No GPU has measured the profiles yet, so their GPU times are **estimates**, made in two steps:

1. **Count** the multiply-adds (MACs) of one forward pass of the encoder, layer by layer
   (:func:`count_macs`: convolutions and dense layers, which hold nearly all of the arithmetic),
   and multiply by the images each run pushes through it. A training step costs about three
   forward passes (the forward pass, then gradients for the activations and for the weights).
2. **Divide** by a measured throughput of the same kind of network on the same GPU:
   :data:`T4_EFFECTIVE_FLOPS`. The reference is a Wide ResNet-28-10 trained on CIFAR-10 on a
   Colab T4 with mixed precision (NVIDIA Apex, level O2), batch 128: 10 epochs in 29 min 31 s,
   i.e. 50,000 x 10 / 1,771 s = 282 images/s (C. Lee, "Mixed Precision Training on Tesla T4 and
   P100", 2019-06-13, https://blog.ceshine.net/post/apex-t4-p100/; code in
   github.com/ceshine/apex_pytorch_cifar_experiment). WRN-28-10 takes
   :func:`wide_resnet_macs` (28, 10) = 5.24e9 MACs per 32x32 image, so that run sustained
   282 x 3 x 2 x 5.24e9 = 8.9e12 FLOP/s.

The estimate assumes our networks use a T4 as well as that one did. Smaller networks usually use
a GPU less well (more of their time goes to memory-bound batch norm, activations and launches),
so read the estimate as "at least this long", good to perhaps a factor of two. It leaves out
compilation (a minute or two per model with XLA) and anything outside the model (t-SNE).
"""

from __future__ import annotations

import functools

import keras

__all__ = [
    "CIFAR10_TRAIN_IMAGES",
    "CIFAR10_TEST_IMAGES",
    "T4_EFFECTIVE_FLOPS",
    "count_macs",
    "encoder_macs",
    "estimate_run_seconds",
    "wide_resnet_macs",
]

CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_TEST_IMAGES = 10_000

#: Reference run: 282 images/s of WRN-28-10 training on a T4 (see the module docstring).
_T4_REFERENCE_IMAGES_PER_SECOND = 50_000 * 10 / (29 * 60 + 31)
#: One training step costs about three forward passes; a multiply-add is two FLOPs.
_TRAINING_PASSES = 3


def wide_resnet_macs(depth=28, width=10, image_size=32):
    """Multiply-adds of one forward pass of a CIFAR Wide ResNet (Zagoruyko & Komodakis 2016):
    a 3x3 stem to 16 channels, then three groups of (depth - 4) / 6 blocks of two 3x3
    convolutions at widths 16k, 32k, 64k (stride 2 entering groups 2 and 3, 1x1 projection
    shortcuts where the shape changes), global pooling and a 10-way dense layer. Returns an int;
    raises ``ValueError`` unless ``depth`` is 6n + 4."""
    if (depth - 4) % 6:
        raise ValueError(f"a Wide ResNet has depth 6n + 4, found {depth}")
    blocks = (depth - 4) // 6
    size, channels = image_size, 16
    macs = size * size * 9 * 3 * channels
    for group, group_width in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(blocks):
            stride = 2 if (block == 0 and group > 0) else 1
            size_out = size // stride
            macs += size_out * size_out * 9 * channels * group_width  # first 3x3 convolution
            macs += size_out * size_out * 9 * group_width * group_width  # second 3x3 convolution
            if channels != group_width or stride != 1:
                macs += size_out * size_out * channels * group_width  # 1x1 shortcut
            size, channels = size_out, group_width
    return macs + channels * 10


#: Training FLOP/s a T4 sustained on a CIFAR ResNet (the reference run of the module docstring).
T4_EFFECTIVE_FLOPS = _T4_REFERENCE_IMAGES_PER_SECOND * _TRAINING_PASSES * 2 * wide_resnet_macs(28, 10)


def count_macs(model):
    """Multiply-adds of one forward pass of ``model`` for one input (batch size 1).

    Counts ``Conv2D`` (output pixels x kernel area x input channels / groups x filters) and
    ``Dense`` layers, in nested models too; batch norm, activations, pooling and additions are
    left out (a few percent of a ResNet's arithmetic). ``model`` must be built (a functional
    model is); returns an int.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            height, width, filters = layer.output.shape[1:]
            kernel_height, kernel_width, in_per_group, _ = layer.kernel.shape
            total += height * width * kernel_height * kernel_width * in_per_group * filters
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


@functools.lru_cache(maxsize=None)
def encoder_macs(encoder_name, input_shape=(32, 32, 3)):
    """Multiply-adds (an int) of one forward pass of the named encoder (``models.ENCODERS``) on
    one image of ``input_shape``; the encoder is built once per name and shape, not on every
    estimate. Raises ``ValueError`` for an unknown name."""
    from supcon_lib import models

    return count_macs(models.build_encoder(encoder_name, tuple(input_shape)))


def estimate_run_seconds(config, flops_per_second=T4_EFFECTIVE_FLOPS, macs=None):
    """Estimated seconds of one run of ``config`` (a ``run_config.RunConfig``) on a GPU that
    sustains ``flops_per_second`` (default: a T4).

    Counted: every training step (epochs x training images x views, three forward passes each;
    with a momentum encoder, one trained view and one key view encoded once), batch-norm
    recalibration and the embeddings of the training and test images (one forward pass each, two
    with ``flip_average``), and for SupCon the linear probe on stored features (negligible). Training sizes
    default to all of CIFAR-10 (50,000 / 10,000 images) where the config says ``None``.
    ``macs`` (per image, forward) is counted from the encoder unless given. Returns a float.
    """
    macs = encoder_macs(config.encoder) if macs is None else macs
    train = config.train_size or CIFAR10_TRAIN_IMAGES
    test = config.test_size or CIFAR10_TEST_IMAGES
    views = config.views if config.method != "ce" else 1
    if config.method == "supcon" and config.queue_size:  # one view trained, the other encoded once
        per_image = _TRAINING_PASSES + 1
    else:
        per_image = views * _TRAINING_PASSES
    evaluation = (2 if config.flip_average else 1) * (train + test)  # mirror images too
    forward_passes = config.epochs * train * per_image + min(train, 10_000) + evaluation
    return forward_passes * 2 * macs / flops_per_second
