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
  layers did to the content before the size-agnostic ResNet50V2 saw it.
* :func:`supcon_pipeline` - the SupCon paper's augmentation (Khosla et al. 2020, following
  SimCLR): random resized crop (scale 0.2-1), horizontal flip, colour jitter 0.4/0.4/0.4/0.1
  applied with probability 0.8, grayscale with probability 0.2, then per-channel normalisation.
* :func:`baseline_pipeline` - the standard CIFAR recipe for cross-entropy training: zero-pad by 4,
  random 32x32 crop, horizontal flip, normalisation.

Every random layer draws its parameters per image (not per batch), takes a ``seed`` for
reproducible runs and is the identity when called with ``training=False``; only the deterministic
scaling and normalisation remain at inference. :class:`MultiView` draws ``num_views`` independent
views of each image, giving the ``(B, V, H, W, C)`` tensor the SupCon loss expects.

Inputs are images with values in 0..255 (uint8 or float). All code uses ``keras.ops``.
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


def _per_image(images, values):
    """Reshape a (B,) vector so it broadcasts against (B, H, W, C) images."""
    return ops.reshape(values, (-1, 1, 1, 1))


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

    def _uniform(self, images, low, high):
        batch = ops.shape(images)[0]
        return keras.random.uniform((batch,), minval=low, maxval=high, seed=self.seed_generator)

    def _bernoulli(self, images, probability):
        return self._uniform(images, 0.0, 1.0) < probability

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@_SERIALIZABLE
class RandomFlipHorizontal(_RandomLayer):
    """Mirror each image left-right with probability ``probability``."""

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

    The region covers a fraction ``scale`` of the image area and has aspect ratio (width/height)
    drawn log-uniformly from ``ratio``, as in torchvision and the SimCLR / SupCon papers. Where the
    drawn box would not fit, its sides are clipped to the image (torchvision retries instead; the
    difference only matters for extreme ratios). Resampling is bilinear, via one affine transform
    per image.
    """

    def __init__(self, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, found {scale}")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, found {ratio}")
        self.scale, self.ratio = scale, ratio

    def transform(self, images):
        height = ops.cast(ops.shape(images)[1], "float32")
        width = ops.cast(ops.shape(images)[2], "float32")
        area = self._uniform(images, *self.scale)
        log_ratio = self._uniform(images, math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = ops.exp(log_ratio)
        crop_w = ops.minimum(ops.sqrt(area * aspect), 1.0) * width
        crop_h = ops.minimum(ops.sqrt(area / aspect), 1.0) * height
        left = self._uniform(images, 0.0, 1.0) * (width - crop_w)
        top = self._uniform(images, 0.0, 1.0) * (height - crop_h)
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
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "ratio": self.ratio}


@_SERIALIZABLE
class RandomPadCrop(_RandomLayer):
    """Zero-pad by ``padding`` pixels on each side and take a random crop of the original size.

    Implemented as an integer translation by (dx, dy) in [-padding, padding] with zero fill, which
    is exactly pad-then-crop without materialising the padded image.
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
        return ops.image.affine_transform(images, transform, interpolation="nearest", fill_mode="constant")

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


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
    """Turn each image grey with probability ``probability`` (three equal channels)."""

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
    """Per-channel mean and standard deviation of uint8/0..255 images, in [0, 1] units."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), found {images.shape}")
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(pixels.mean(axis=0)), tuple(pixels.std(axis=0))


@_SERIALIZABLE
class Normalize(keras.layers.Layer):
    """Per-channel ``(x - mean) / std`` with fixed constants (the same in training and inference)."""

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

    ``Normalization`` is adapted to ``train_images`` (0..255 values, as in the example).
    """
    if train_images is None:
        raise ValueError("the original pipeline adapts its normalisation: pass the training images")
    normalize = keras.layers.Normalization(name="normalize")
    normalize.adapt(np.asarray(train_images, np.float32))
    seeds = _seeds(seed, 3)
    return keras.Sequential(
        [
            normalize,
            keras.layers.RandomFlip("horizontal", seed=seeds[0]),
            keras.layers.RandomRotation(0.02, seed=seeds[1]),
            # Stand-in for the removed RandomWidth(0.2) + RandomHeight(0.2).
            keras.layers.RandomZoom(height_factor=0.2, width_factor=0.2, seed=seeds[2]),
        ],
        name=name,
    )


def supcon_pipeline(train_images=None, seed=None, crop_scale=(0.2, 1.0), jitter_strength=0.4,
                    jitter_probability=0.8, grayscale_probability=0.2, name="supcon_augmentation"):
    """The SupCon paper's augmentation for CIFAR (scaled to 0..1, augmented, then normalised)."""
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
    """The standard CIFAR cross-entropy augmentation: pad-4 random crop and horizontal flip."""
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
    deterministic pipeline for tests that compare runs)."""
    return keras.Sequential(
        [keras.layers.Rescaling(1.0 / 255, name="to_unit_range"), _normalization(train_images)], name=name)


PIPELINES = {"original": original_pipeline, "supcon": supcon_pipeline, "baseline": baseline_pipeline,
             "none": no_augmentation}


def build_pipeline(kind, train_images=None, seed=None):
    """Build a pipeline by name: ``"original"``, ``"supcon"``, ``"baseline"`` or ``"none"``."""
    if kind not in PIPELINES:
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {sorted(PIPELINES)}")
    return PIPELINES[kind](train_images=train_images, seed=seed)


def _seeds(seed, count):
    """Distinct per-layer seeds derived from one seed (None stays None: unseeded)."""
    if seed is None:
        return [None] * count
    return [int(seed) * 1000 + i for i in range(count)]


def make_views(images, augmenter, num_views=2, batch_size=256):
    """Numpy convenience: ``num_views`` augmented views of each image, shape (N, V, H, W, C)."""
    multi_view = MultiView(augmenter, num_views)
    batches = [
        ops.convert_to_numpy(multi_view(ops.convert_to_tensor(images[i:i + batch_size]), training=True))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(batches)


def to_display(views, pipeline):
    """Undo a pipeline's normalisation so views can be shown: values in [0, 1].

    Works for the three pipelines here (a ``Normalize`` layer in [0, 1] units, or the original
    example's ``Normalization`` adapted to 0..255 values).
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
