"""Data augmentation as Keras layers.

In contrastive learning the augmentation *defines the task*: two views of an image are declared
"the same", so whatever the augmentation changes (position, scale, colour) is what the encoder
learns to ignore. This module builds three pipelines, all as Keras layers so they run inside the
model, on the accelerator, on every Keras backend:

* :func:`original_pipeline` - the keras-io example (2020): normalisation adapted to the training
  images, horizontal flip, rotation 0.02, and ``RandomWidth(0.2)`` / ``RandomHeight(0.2)``.
  Those two layers were removed from Keras 3 (they changed the image size). The closest stand-in
  that keeps the size fixed is ``RandomZoom(height_factor=0.2, width_factor=0.2)``: it stretches
  or squeezes the content along each axis independently by up to 20%, which is what the removed
  layers did to the content before the size-agnostic ResNet50V2 saw it. Rotation and zoom are
  done by :class:`RandomRotateZoom`, which draws them as Keras' two layers do but compiles.
* :func:`supcon_pipeline` - the SupCon paper's augmentation (Khosla et al. 2020, following
  SimCLR): random resized crop (scale 0.2-1), horizontal flip, colour jitter 0.4/0.4/0.4/0.1
  applied with probability 0.8, grayscale with probability 0.2, then per-channel normalisation.
* :func:`baseline_pipeline` - the standard CIFAR recipe for cross-entropy training: zero-pad by 4,
  random 32x32 crop, horizontal flip, normalisation.

Every random layer draws its parameters per image (not per batch), takes a ``seed`` for
reproducible runs and is the identity when called with ``training=False``; only the deterministic
scaling and normalisation remain at inference. :class:`MultiView` draws ``num_views`` independent
views of each image, giving the ``(B, V, H, W, C)`` tensor the SupCon loss expects. Under a
``tf.distribute`` strategy each replica draws its own parameters.

Everything compiles with XLA (``jit_compile=True`` on TensorFlow, ``jax.jit``), as it must on
the GPUs and TPUs where the library turns XLA on: geometric transforms resample with gathers
(:func:`affine_transform`) instead of ``keras.ops.image.affine_transform``, whose TensorFlow
kernel XLA cannot compile, and Keras' own ``RandomRotation``/``RandomZoom`` (not jit-safe for
that reason) are replaced by :class:`RandomRotateZoom`.

Shapes and dtypes: the pipelines take ``(B, H, W, C)`` images with values in 0..255 (uint8 or
float) and return float32 ``(B, H, W, C)``; every random layer returns float32 of its input's
shape (:class:`ColorJitter` expects values in [0, 1], as inside :func:`supcon_pipeline`). Settings
out of range raise ``ValueError`` when a layer is built. All code uses ``keras.ops``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

__all__ = [
    "PIPELINES",
    "ColorJitter",
    "MultiView",
    "Normalize",
    "RandomApply",
    "RandomFlipHorizontal",
    "RandomGrayscale",
    "RandomPadCrop",
    "RandomResizedCrop",
    "RandomRotateZoom",
    "affine_transform",
    "baseline_pipeline",
    "build_pipeline",
    "channel_stats",
    "make_views",
    "no_augmentation",
    "original_pipeline",
    "supcon_pipeline",
    "to_display",
]

_SERIALIZABLE = keras.saving.register_keras_serializable(package="supcon_lib")


def _check_probability(name, value):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], found {value}")


def _replica():
    """(this replica's index, number of replicas in sync) under a ``tf.distribute`` strategy;
    (0, 1) elsewhere. The only distribution glue in this module: without it, the random layers
    of every replica would draw the same crops, flips and colours for the images they hold."""
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def _image_size(images):
    """(height, width) of (B, H, W, C) images, as float32 scalars."""
    return ops.cast(ops.shape(images)[1], "float32"), ops.cast(ops.shape(images)[2], "float32")


def _per_image(images, values):
    """Reshape a (B,) vector so it broadcasts against (B, H, W, C) images."""
    return ops.reshape(values, (-1, 1, 1, 1))


def _fix_index(index, size, fill_mode):
    """Integer pixel index -> (index inside 0..size-1, inside mask) for a fill mode."""
    inside = (index >= 0) & (index <= size - 1)
    if fill_mode == "reflect":  # (d c b a | a b c d | d c b a), period 2 * size
        index = index - 2 * size * ops.floor(index / (2 * size))
        index = ops.where(index >= size, 2 * size - 1 - index, index)
    return ops.clip(index, 0, size - 1), inside


def affine_transform(images, transforms, interpolation="bilinear", fill_mode="nearest", fill_value=0.0):
    """Resample each image of a batch along its own projective transform, with gathers only.

    Computes what ``keras.ops.image.affine_transform`` computes (same ``transforms`` layout: per
    image ``[a0, a1, a2, b0, b1, b2, c0, c1]``, the output pixel (x, y) reading the input at
    ``((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)`` with ``k = c0 x + c1 y + 1``), but
    written with ``keras.ops.take`` so XLA can compile it: on TensorFlow that op lowers to
    ``ImageProjectiveTransformV3``, which XLA refuses, on a GPU or TPU as on a CPU.

    Args:
        images: (B, H, W, C) float images.
        transforms: (B, 8) float transforms.
        interpolation: ``"bilinear"`` (four neighbours) or ``"nearest"`` (the nearest pixel).
        fill_mode: what lies outside the image: ``"nearest"`` (the edge pixel), ``"reflect"``
            (the image mirrored about its edges) or ``"constant"`` (``fill_value``).

    Returns:
        (B, H, W, C) images, float32 for float32 input.

    Raises:
        ValueError: an unknown ``interpolation`` or ``fill_mode``.
    """
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', found {interpolation!r}")
    if fill_mode not in ("nearest", "reflect", "constant"):
        raise ValueError(f"fill_mode must be 'nearest', 'reflect' or 'constant', found {fill_mode!r}")
    images = ops.convert_to_tensor(images)
    batch, height, width, channels = ops.shape(images)
    rows = ops.cast(ops.arange(height), "float32")[None, :, None]  # (1, H, 1)
    cols = ops.cast(ops.arange(width), "float32")[None, None, :]  # (1, 1, W)
    t = [ops.reshape(transforms[:, i], (-1, 1, 1)) for i in range(8)]
    k = t[6] * cols + t[7] * rows + 1.0
    x = (t[0] * cols + t[1] * rows + t[2]) / k  # (B, H, W) input coordinates
    y = (t[3] * cols + t[4] * rows + t[5]) / k
    flat = ops.reshape(images, (-1, channels))  # (B * H * W, C)
    offset = ops.reshape(ops.arange(batch) * (height * width), (-1, 1, 1))

    def read(row, col):
        """Pixels at integer (row, col) of each image, fill mode applied: (B, H, W, C)."""
        row, row_inside = _fix_index(row, height, fill_mode)
        col, col_inside = _fix_index(col, width, fill_mode)
        index = offset + ops.cast(row, "int32") * width + ops.cast(col, "int32")
        values = ops.take(flat, index, axis=0)
        if fill_mode == "constant":
            inside = ops.expand_dims(row_inside & col_inside, -1)
            values = ops.where(inside, values, ops.cast(fill_value, values.dtype))
        return values

    if interpolation == "nearest":
        return read(ops.floor(y + 0.5), ops.floor(x + 0.5))
    x0, y0 = ops.floor(x), ops.floor(y)
    wx, wy = ops.expand_dims(x - x0, -1), ops.expand_dims(y - y0, -1)
    top = (1.0 - wx) * read(y0, x0) + wx * read(y0, x0 + 1.0)
    bottom = (1.0 - wx) * read(y0 + 1.0, x0) + wx * read(y0 + 1.0, x0 + 1.0)
    return (1.0 - wy) * top + wy * bottom


class _RandomLayer(keras.layers.Layer):
    """Base class: a seeded generator, identity at inference, float32 in and out."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, images, training=None):
        images = ops.cast(images, "float32")
        if not training:
            return images
        return self.transform(images)

    def transform(self, images):  # pragma: no cover - abstract
        raise NotImplementedError

    def _uniform(self, images, low, high, per_image=None):
        """Uniform draws in [low, high): shape (B,), or (B, per_image). Under a ``tf.distribute``
        strategy every replica draws its own numbers (see :func:`_replica`)."""
        shape = (ops.shape(images)[0],) if per_image is None else (ops.shape(images)[0], per_image)
        replica, replicas = _replica()
        if replicas == 1:
            return keras.random.uniform(shape, minval=low, maxval=high, seed=self.seed_generator)
        # The generator's state is mirrored, so every replica would draw the same numbers: draw
        # one set per replica (the same on all of them) and keep this replica's own.
        draws = keras.random.uniform((replicas, *shape), minval=low, maxval=high, seed=self.seed_generator)
        return ops.take(draws, replica, axis=0)

    def _bernoulli(self, images, probability):
        return self._uniform(images, 0.0, 1.0) < probability

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@_SERIALIZABLE
class RandomFlipHorizontal(_RandomLayer):
    """Mirror each image left-right with probability ``probability``.

    Ours, not ``keras.layers.RandomFlip("horizontal")``: Keras' layer draws the same flips on every
    ``tf.distribute`` replica (its seed state is mirrored); this one draws per replica like every
    layer here, and keeps the variable names of saved checkpoints.
    """

    def __init__(self, probability=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_probability("probability", probability)
        self.probability = float(probability)

    def transform(self, images):
        flip = _per_image(images, self._bernoulli(images, self.probability))
        return ops.where(flip, ops.flip(images, axis=2), images)

    def get_config(self):
        return {**super().get_config(), "probability": self.probability}


@_SERIALIZABLE
class RandomResizedCrop(_RandomLayer):
    """Crop a random region of each image and resize it back to the input size.

    The region covers a fraction of the image area drawn from ``scale`` and has an aspect ratio
    (width/height) drawn log-uniformly from ``ratio``, as in torchvision's ``RandomResizedCrop``
    and the SimCLR / SupCon papers. A box that does not fit inside the image is drawn again, up to
    10 times, then the whole image (for ratios that exclude the image's own shape: the largest
    central box with the nearest allowed ratio) is taken, as torchvision does. Unlike
    torchvision, box sides and positions are continuous rather than rounded to whole pixels.
    Resampling is bilinear (:func:`affine_transform`, which XLA compiles).
    """

    attempts = 10

    def __init__(self, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, found {scale}")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, found {ratio}")
        self.scale, self.ratio = scale, ratio

    def crop_boxes(self, images):
        """One box per image, ``(left, top, width, height)`` in pixels, each of shape (B,)."""
        height, width = _image_size(images)
        area = self._uniform(images, *self.scale, per_image=self.attempts) * height * width
        log_ratio = self._uniform(images, math.log(self.ratio[0]), math.log(self.ratio[1]), per_image=self.attempts)
        aspect = ops.exp(log_ratio)
        crop_w, crop_h = ops.sqrt(area * aspect), ops.sqrt(area / aspect)  # (B, attempts)
        fits = (crop_w <= width) & (crop_h <= height)
        first = ops.expand_dims(ops.argmax(ops.cast(fits, "int32"), axis=1), 1)  # first box that fits
        crop_w = ops.squeeze(ops.take_along_axis(crop_w, first, axis=1), 1)
        crop_h = ops.squeeze(ops.take_along_axis(crop_h, first, axis=1), 1)
        # No box fitted: torchvision's fallback, the central box of the image's shape clamped to ``ratio``.
        image_ratio = width / height
        fallback_w = ops.where(image_ratio > self.ratio[1], height * self.ratio[1], width)
        fallback_h = ops.where(image_ratio < self.ratio[0], width / self.ratio[0], height)
        any_fit = ops.any(fits, axis=1)
        crop_w = ops.where(any_fit, crop_w, fallback_w)
        crop_h = ops.where(any_fit, crop_h, fallback_h)
        position_x, position_y = self._uniform(images, 0.0, 1.0), self._uniform(images, 0.0, 1.0)
        left = ops.where(any_fit, position_x, 0.5) * (width - crop_w)
        top = ops.where(any_fit, position_y, 0.5) * (height - crop_h)
        return left, top, crop_w, crop_h

    def transform(self, images):
        height, width = _image_size(images)
        left, top, crop_w, crop_h = self.crop_boxes(images)
        # Output pixel centre x_out + 0.5 maps to left + (x_out + 0.5) * crop_w / width in the input.
        scale_x, scale_y = crop_w / width, crop_h / height
        zeros = ops.zeros_like(scale_x)
        transform = ops.stack(
            [
                scale_x, zeros, left + 0.5 * scale_x - 0.5,
                zeros, scale_y, top + 0.5 * scale_y - 0.5,
                zeros, zeros,
            ],
            axis=1,
        )
        return affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "ratio": self.ratio}


@_SERIALIZABLE
class RandomPadCrop(_RandomLayer):
    """Zero-pad by ``padding`` pixels on each side and take a random crop of the original size.

    Implemented as an integer translation by (dx, dy) in [-padding, padding] with zero fill, which
    is exactly pad-then-crop without materialising the padded image (one gather per pixel). Keras
    has no per-image pad-then-crop (``RandomCrop`` does not pad; ``RandomTranslation`` shifts by
    fractions and interpolates).
    """

    def __init__(self, padding=4, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, found {padding}")
        self.padding = int(padding)

    def transform(self, images):
        shift_x = ops.floor(self._uniform(images, -self.padding, self.padding + 1))
        shift_y = ops.floor(self._uniform(images, -self.padding, self.padding + 1))
        ones, zeros = ops.ones_like(shift_x), ops.zeros_like(shift_x)
        transform = ops.stack([ones, zeros, shift_x, zeros, ones, shift_y, zeros, zeros], axis=1)
        return affine_transform(images, transform, interpolation="nearest", fill_mode="constant")

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@_SERIALIZABLE
class RandomRotateZoom(_RandomLayer):
    """Keras' ``RandomRotation(rotation)`` followed by ``RandomZoom(zoom, zoom)``, in one
    resampling that XLA can compile (Keras marks both layers not jit-safe).

    Per image: an angle drawn from ``[-rotation, rotation]`` of a full turn, and independent zoom
    factors for height and width drawn from ``[1 - zoom, 1 + zoom]`` (above 1 zooms out), both
    about the image centre, as the two Keras layers draw them; bilinear, with the image mirrored
    beyond its edges (their default ``fill_mode="reflect"``). Composing the two maps before
    resampling interpolates once instead of twice, so the result is slightly sharper.
    """

    def __init__(self, rotation=0.02, zoom=0.2, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0 <= float(rotation) <= 0.5:
            raise ValueError(f"rotation must lie in [0, 0.5] (a fraction of a full turn), found {rotation}")
        if not 0 <= float(zoom) < 1:
            raise ValueError(f"zoom must lie in [0, 1), found {zoom}")
        self.rotation, self.zoom = float(rotation), float(zoom)

    @staticmethod
    def transforms(angle, zoom_y, zoom_x, height, width):
        """(B, 8) transforms for :func:`affine_transform`: per image, rotate by ``angle`` (a
        fraction of a full turn, in the sense of Keras' ``RandomRotation``) and zoom by
        ``zoom_y``, ``zoom_x`` (as Keras' ``RandomZoom``), both about the image centre."""
        centre_y, centre_x = (height - 1.0) / 2.0, (width - 1.0) / 2.0
        cos, sin = ops.cos(angle * (2 * math.pi)), ops.sin(angle * (2 * math.pi))
        # input = centre + R(angle) Z (output - centre): zoom about the centre, then rotate.
        a0, a1 = cos * zoom_x, -sin * zoom_y
        b0, b1 = sin * zoom_x, cos * zoom_y
        a2 = centre_x - a0 * centre_x - a1 * centre_y
        b2 = centre_y - b0 * centre_x - b1 * centre_y
        zeros = ops.zeros_like(a0)
        return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def transform(self, images):
        angle = self._uniform(images, -self.rotation, self.rotation)
        zoom_y = self._uniform(images, 1.0 - self.zoom, 1.0 + self.zoom)
        zoom_x = self._uniform(images, 1.0 - self.zoom, 1.0 + self.zoom)
        transforms = self.transforms(angle, zoom_y, zoom_x, *_image_size(images))
        return affine_transform(images, transforms, interpolation="bilinear", fill_mode="reflect")

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom}


def _grayscale(images):
    """ITU-R 601 luma, copied into three channels (as torchvision's rgb_to_grayscale)."""
    weights = ops.convert_to_tensor(np.array([0.299, 0.587, 0.114], np.float32))
    luma = ops.sum(images * weights, axis=-1, keepdims=True)
    return ops.repeat(luma, 3, axis=-1)


@_SERIALIZABLE
class ColorJitter(_RandomLayer):
    """Random brightness, contrast, saturation and hue, per image, on images in [0, 1].

    Factors follow torchvision's ``ColorJitter(brightness, contrast, saturation, hue)``:
    brightness, contrast and saturation factors are drawn from ``[1 - s, 1 + s]``; hue is shifted
    by a fraction of the colour circle drawn from ``[-hue, hue]``. The four operations are applied
    in a fixed order (torchvision shuffles it per call), each followed by clipping to [0, 1].
    Ours, not ``keras.layers.RandomColorJitter``, whose operations are not torchvision's (additive
    brightness, contrast about each channel's mean, another saturation scale), applied always
    (here :class:`RandomApply` gives the paper's probability 0.8) and not per replica.
    """

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, found {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], found {hue}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.hue = float(saturation), float(hue)

    def _factor(self, images, strength):
        return _per_image(images, self._uniform(images, max(0.0, 1.0 - strength), 1.0 + strength))

    def transform(self, images):
        images = ops.clip(images * self._factor(images, self.brightness), 0.0, 1.0)
        mean_luma = ops.mean(_grayscale(images)[..., :1], axis=(1, 2, 3), keepdims=True)
        contrast = self._factor(images, self.contrast)
        images = ops.clip(contrast * images + (1.0 - contrast) * mean_luma, 0.0, 1.0)
        saturation = self._factor(images, self.saturation)
        images = ops.clip(saturation * images + (1.0 - saturation) * _grayscale(images), 0.0, 1.0)
        if self.hue > 0:
            hsv = ops.image.rgb_to_hsv(images)
            shift = _per_image(images, self._uniform(images, -self.hue, self.hue))
            hue = hsv[..., :1] + shift
            hue = hue - ops.floor(hue)  # wrap around the colour circle
            images = ops.image.hsv_to_rgb(ops.concatenate([hue, hsv[..., 1:]], axis=-1))
            images = ops.clip(images, 0.0, 1.0)
        return images

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": self.brightness, "contrast": self.contrast,
            "saturation": self.saturation, "hue": self.hue,
        }


@_SERIALIZABLE
class RandomApply(_RandomLayer):
    """Apply ``layer`` to each image independently with probability ``probability``."""

    def __init__(self, layer, probability=0.8, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_probability("probability", probability)
        self.layer = layer
        self.probability = float(probability)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build((None, *input_shape[1:]))

    def transform(self, images):
        changed = self.layer(images, training=True)
        keep = _per_image(images, self._bernoulli(images, self.probability))
        return ops.where(keep, changed, images)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "probability": self.probability,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


@_SERIALIZABLE
class RandomGrayscale(_RandomLayer):
    """Turn each image grey with probability ``probability`` (three equal channels).

    Ours, not ``keras.layers.RandomGrayscale``: as for :class:`RandomFlipHorizontal`, Keras' layer
    draws the same images on every ``tf.distribute`` replica; this one draws per replica.
    """

    def __init__(self, probability=0.2, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_probability("probability", probability)
        self.probability = float(probability)

    def transform(self, images):
        grey = _per_image(images, self._bernoulli(images, self.probability))
        return ops.where(grey, _grayscale(images), images)

    def get_config(self):
        return {**super().get_config(), "probability": self.probability}


@_SERIALIZABLE
class MultiView(keras.layers.Layer):
    """Draw ``num_views`` independent augmented views: (B, H, W, C) -> (B, V, H, W, C).

    Each view is a separate call of ``augmenter``, so every image gets fresh random parameters
    in every view. With ``training=False`` all views are the (deterministic) inference output.
    The dtype is the augmenter's (float32 for the pipelines here). Raises ``ValueError`` unless
    ``num_views`` is a positive integer.
    """

    def __init__(self, augmenter, num_views=2, **kwargs):
        super().__init__(**kwargs)
        if int(num_views) != num_views or num_views < 1:
            raise ValueError(f"num_views must be a positive integer, found {num_views}")
        self.augmenter = augmenter
        self.num_views = int(num_views)

    def build(self, input_shape):
        if not self.augmenter.built:
            self.augmenter.build((None, *input_shape[1:]))

    def call(self, images, training=None):
        views = [self.augmenter(images, training=training) for _ in range(self.num_views)]
        return ops.stack(views, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_views, *input_shape[1:])

    def get_config(self):
        return {
            **super().get_config(),
            "augmenter": keras.saving.serialize_keras_object(self.augmenter),
            "num_views": self.num_views,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["augmenter"] = keras.saving.deserialize_keras_object(config["augmenter"])
        return cls(**config)


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------
#: Per-channel mean and standard deviation of the CIFAR-10 training images in [0, 1], the values
#: every CIFAR recipe uses; pass ``train_images`` to the builders to compute them from your data.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def channel_stats(images):
    """Per-channel mean and standard deviation of ``(N, H, W, 3)`` uint8 (or 0..255) images, in
    [0, 1] units: ``(mean, std)``, two tuples of three floats. Raises ``ValueError`` for another
    shape."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), found {images.shape}")
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(pixels.mean(axis=0)), tuple(pixels.std(axis=0))


@_SERIALIZABLE
class Normalize(keras.layers.Layer):
    """Per-channel ``(x - mean) / std`` with fixed constants (the same in training and inference):
    ``(..., C)`` in, float32 ``(..., C)`` out. Raises ``ValueError`` unless ``mean`` and ``std``
    have one value per channel and every ``std`` is > 0.

    ``keras.layers.Normalization(mean=..., variance=...)`` computes the same, but saved pipelines
    (the ``embedder.keras`` of finished runs) name this layer, so it stays to load them, and
    :func:`to_display` tells its [0, 1] units from the original pipeline's 0..255 ``Normalization``.
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std need one value per channel and std > 0, found {mean}, {std}")
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def call(self, images):
        mean = ops.convert_to_tensor(np.array(self.mean, np.float32))
        std = ops.convert_to_tensor(np.array(self.std, np.float32))
        return (ops.cast(images, "float32") - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def _normalization(train_images):
    mean, std = channel_stats(train_images) if train_images is not None else (CIFAR10_MEAN, CIFAR10_STD)
    return Normalize(mean, [max(s, 1e-3) for s in std], name="normalize")


def original_pipeline(train_images, seed=None, name="original_augmentation"):
    """The keras-io example's augmentation, ported to Keras 3 (see the module docstring).

    ``Normalization`` is adapted to ``train_images`` ((N, H, W, C), 0..255 values, as in the
    example). Returns a ``keras.Sequential``: 0..255 images (B, H, W, C) -> float32 (B, H, W, C).
    Raises ``ValueError`` when ``train_images`` is None.
    """
    if train_images is None:
        raise ValueError("the original pipeline adapts its normalisation: pass the training images")
    normalize = keras.layers.Normalization(name="normalize")
    normalize.adapt(np.asarray(train_images, np.float32))
    seeds = _seeds(seed, 2)
    return keras.Sequential(
        [
            normalize,
            RandomFlipHorizontal(seed=seeds[0]),
            # RandomRotation(0.02), then a stand-in for the removed RandomWidth(0.2) +
            # RandomHeight(0.2): RandomZoom(0.2, 0.2), both in one XLA-compilable layer.
            RandomRotateZoom(rotation=0.02, zoom=0.2, seed=seeds[1]),
        ],
        name=name,
    )


def supcon_pipeline(train_images=None, seed=None, crop_scale=(0.2, 1.0), jitter_strength=0.4,
                    jitter_probability=0.8, grayscale_probability=0.2, name="supcon_augmentation"):
    """The SupCon paper's augmentation for CIFAR (scaled to 0..1, augmented, then normalised).

    Returns a ``keras.Sequential``: 0..255 images (B, H, W, 3) -> float32 (B, H, W, 3). The
    normalisation uses the channel statistics of ``train_images`` ((N, H, W, 3), 0..255) when
    given, CIFAR-10's otherwise. ``seed`` (an int, or None for unseeded) fixes every draw.
    """
    seeds = _seeds(seed, 5)
    jitter = ColorJitter(jitter_strength, jitter_strength, jitter_strength, jitter_strength / 4, seed=seeds[2])
    return keras.Sequential(
        [
            keras.layers.Rescaling(1.0 / 255, name="to_unit_range"),
            RandomResizedCrop(scale=crop_scale, seed=seeds[0]),
            RandomFlipHorizontal(seed=seeds[1]),
            RandomApply(jitter, probability=jitter_probability, seed=seeds[3]),
            RandomGrayscale(probability=grayscale_probability, seed=seeds[4]),
            _normalization(train_images),
        ],
        name=name,
    )


def baseline_pipeline(train_images=None, seed=None, padding=4, name="baseline_augmentation"):
    """The standard CIFAR cross-entropy augmentation: pad-4 random crop and horizontal flip.

    Returns a ``keras.Sequential``: 0..255 images (B, H, W, 3) -> float32 (B, H, W, 3);
    ``train_images`` and ``seed`` as for :func:`supcon_pipeline`.
    """
    seeds = _seeds(seed, 2)
    return keras.Sequential(
        [
            keras.layers.Rescaling(1.0 / 255, name="to_unit_range"),
            RandomPadCrop(padding=padding, seed=seeds[0]),
            RandomFlipHorizontal(seed=seeds[1]),
            _normalization(train_images),
        ],
        name=name,
    )


def no_augmentation(train_images=None, seed=None, name="no_augmentation"):
    """Scaling and normalisation only: every view of an image is the image (an ablation, and a
    deterministic pipeline for tests that compare runs). 0..255 images in, float32 out."""
    return keras.Sequential(
        [keras.layers.Rescaling(1.0 / 255, name="to_unit_range"), _normalization(train_images)], name=name)


PIPELINES = {"original": original_pipeline, "supcon": supcon_pipeline, "baseline": baseline_pipeline,
             "none": no_augmentation}


def build_pipeline(kind, train_images=None, seed=None):
    """Build a pipeline by name: ``"original"``, ``"supcon"``, ``"baseline"`` or ``"none"``.

    Raises ``ValueError`` for another name, and for ``"original"`` without ``train_images``.
    """
    if kind not in PIPELINES:
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {sorted(PIPELINES)}")
    return PIPELINES[kind](train_images=train_images, seed=seed)


def _seeds(seed, count):
    """Distinct per-layer seeds derived from one seed (None stays None: unseeded)."""
    if seed is None:
        return [None] * count
    return [int(seed) * 1000 + i for i in range(count)]


def make_views(images, augmenter, num_views=2, batch_size=256):
    """NumPy convenience: ``num_views`` augmented views of each of the (N, H, W, C) ``images``, a
    float32 array of shape (N, V, H, W, C), computed ``batch_size`` images at a time."""
    multi_view = MultiView(augmenter, num_views)
    batches = [
        ops.convert_to_numpy(multi_view(ops.convert_to_tensor(images[i:i + batch_size]), training=True))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(batches)


def to_display(views, pipeline):
    """Undo a pipeline's normalisation so views can be shown: values in [0, 1].

    Works for the three pipelines here (a ``Normalize`` layer in [0, 1] units, or the original
    example's ``Normalization`` adapted to 0..255 values). ``views``: any shape ending in the
    channels; returns float32 of the same shape. Raises ``ValueError`` if ``pipeline`` has no
    layer named ``"normalize"``.
    """
    views = np.asarray(views, np.float32)
    layer = pipeline.get_layer("normalize")
    if isinstance(layer, Normalize):
        restored = views * np.array(layer.std, np.float32) + np.array(layer.mean, np.float32)
    else:
        mean = np.asarray(ops.convert_to_numpy(layer.mean), np.float32).reshape(-1)
        std = np.sqrt(np.asarray(ops.convert_to_numpy(layer.variance), np.float32).reshape(-1))
        restored = (views * std + mean) / 255.0
    return np.clip(restored, 0.0, 1.0)
