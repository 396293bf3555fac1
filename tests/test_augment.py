"""supcon_lib.augment: per-image randomness, identity at inference, seeds, views.

Backend-agnostic (``keras.ops`` only): run on TensorFlow and, with KERAS_BACKEND=jax, on JAX.
"""

import keras
import numpy as np
import pytest
from keras import ops

from supcon_lib import augment


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)


def run(layer, x, training=True):
    return ops.convert_to_numpy(layer(ops.convert_to_tensor(x), training=training))


def random_layers():
    jitter = augment.ColorJitter(seed=1)
    return [
        augment.RandomFlipHorizontal(seed=1),
        augment.RandomResizedCrop(seed=1),
        augment.RandomPadCrop(seed=1),
        augment.RandomRotateZoom(seed=1),
        jitter,
        augment.RandomApply(augment.ColorJitter(seed=2), probability=0.8, seed=1),
        augment.RandomGrayscale(probability=0.5, seed=1),
    ]


@pytest.mark.parametrize("layer", random_layers(), ids=lambda layer: type(layer).__name__)
def test_random_layers_are_identity_at_inference(layer, images):
    unit = images.astype(np.float32) / 255
    np.testing.assert_array_equal(run(layer, unit, training=False), unit)


@pytest.mark.parametrize("layer", random_layers(), ids=lambda layer: type(layer).__name__)
def test_random_layers_draw_per_image(layer, images):
    same = np.repeat(images[:1].astype(np.float32) / 255, 32, axis=0)
    out = run(layer, same)
    distinct = {out[i].tobytes() for i in range(len(out))}
    assert len(distinct) > 1, "every image of the batch got the same transformation"


@pytest.mark.parametrize("kind", sorted(augment.PIPELINES))
def test_pipelines_shapes_seeds_and_inference(kind, images):
    first = augment.build_pipeline(kind, images, seed=5)
    second = augment.build_pipeline(kind, images, seed=5)
    other = augment.build_pipeline(kind, images, seed=6)
    out = run(first, images)
    assert out.shape == images.shape and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, run(second, images), atol=1e-6)  # same seed, same views
    # At inference only the deterministic normalisation remains, and to_display undoes it.
    inference = run(first, images, training=False)
    if kind == "none":  # No random layer: every seed gives the inference output.
        np.testing.assert_allclose(run(other, images), inference, atol=1e-6)
        np.testing.assert_allclose(out, inference, atol=1e-6)
    else:
        assert not np.allclose(out, run(other, images))  # another seed, other views
    np.testing.assert_allclose(augment.to_display(inference, first), images / 255.0, atol=1e-4)
    np.testing.assert_allclose(run(first, images, training=False), inference)


def test_supcon_normalisation_uses_training_statistics(images):
    mean, std = augment.channel_stats(images)
    pipeline = augment.supcon_pipeline(images)
    normalised = run(pipeline, images, training=False)
    np.testing.assert_allclose(normalised.reshape(-1, 3).mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normalised.reshape(-1, 3).std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(mean, images.reshape(-1, 3).mean(axis=0) / 255)
    assert len(std) == 3


def test_original_pipeline_port(images):
    pipeline = augment.original_pipeline(images, seed=0)
    names = [type(layer).__name__ for layer in pipeline.layers]
    assert names == ["Normalization", "RandomFlipHorizontal", "RandomRotateZoom"]
    rotate_zoom = pipeline.layers[-1]
    assert (rotate_zoom.rotation, rotate_zoom.zoom) == (0.02, 0.2)
    with pytest.raises(ValueError, match="training images"):
        augment.original_pipeline(None)


# -- Resampling that XLA compiles ------------------------------------------------------------------
def random_affine_transforms(rng, batch):
    angle, shift = rng.uniform(-0.6, 0.6, batch), rng.uniform(-4, 4, (2, batch))
    zoom_x, zoom_y = rng.uniform(0.6, 1.5, (2, batch))
    zeros = np.zeros(batch)
    return np.stack([np.cos(angle) * zoom_x, -np.sin(angle) * zoom_y, shift[0],
                     np.sin(angle) * zoom_x, np.cos(angle) * zoom_y, shift[1], zeros, zeros], 1).astype(np.float32)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_transform_matches_keras(interpolation, fill_mode):
    # Keras' own op (ImageProjectiveTransformV3 on TensorFlow, map_coordinates on JAX) is the
    # reference; a non-square image and large shifts put many samples outside the edges.
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (6, 9, 11, 3)).astype(np.float32)
    transforms = random_affine_transforms(rng, 6)
    want = ops.image.affine_transform(images, transforms, interpolation, fill_mode, fill_value=0.3)
    got = augment.affine_transform(images, transforms, interpolation, fill_mode, fill_value=0.3)
    np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(want), atol=1e-5)


@pytest.mark.tensorflow_only
def test_affine_transform_projective_terms_match_tensorflow():
    # Keras' JAX op ignores the projective entries c0, c1; TensorFlow's kernel applies them.
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (4, 12, 12, 3)).astype(np.float32)
    transforms = random_affine_transforms(rng, 4)
    transforms[:, 6:] = rng.uniform(-0.02, 0.02, (4, 2))
    want = ops.image.affine_transform(images, transforms, "bilinear", "reflect")
    np.testing.assert_allclose(ops.convert_to_numpy(augment.affine_transform(images, transforms, "bilinear", "reflect")),
                               ops.convert_to_numpy(want), atol=1e-5)


def test_rotate_zoom_matches_keras_layers(images):
    # Keras' RandomRotation and RandomZoom, given their own draws, against our transform with the
    # same parameters: one at a time (composed, ours resamples once instead of twice).
    unit = images.astype(np.float32) / 255
    height, width = unit.shape[1:3]
    ones = np.ones(len(unit), np.float32)
    zoom = keras.layers.RandomZoom(0.2, 0.2, seed=3)
    drawn = zoom.get_random_transformation(unit, training=True)
    zoom_y, zoom_x = (ops.reshape(drawn[key], (-1,)) for key in ("height_zoom", "width_zoom"))
    ours = augment.affine_transform(unit, augment.RandomRotateZoom.transforms(0 * ones, zoom_y, zoom_x, height, width),
                                    fill_mode="reflect")
    np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(zoom.transform_images(unit, drawn)),
                               atol=1e-4)
    rotation = keras.layers.RandomRotation(0.02, seed=4)
    drawn = rotation.get_random_transformation(unit, training=True)
    angle = ops.reshape(drawn["angle"], (-1,)) / 360.0  # Keras draws degrees
    ours = augment.affine_transform(unit, augment.RandomRotateZoom.transforms(angle, ones, ones, height, width),
                                    fill_mode="reflect")
    np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(rotation.transform_images(unit, drawn)),
                               atol=1e-4)


def test_rotate_zoom_draws_within_its_ranges():
    # On a horizontal ramp (value = column) the slope at the centre is cos(angle) * zoom_x, which
    # must cover [0.8, 1.2] (zoom 0.2; cos(0.02 turns) > 0.99), per image.
    ramp = np.tile(np.arange(33, dtype=np.float32)[None, None, :, None], (512, 33, 1, 1))
    out = run(augment.RandomRotateZoom(rotation=0.02, zoom=0.2, seed=0), ramp)
    slope = (out[:, 16, 17, 0] - out[:, 16, 15, 0]) / 2
    assert np.all(slope > 0.8 * np.cos(0.02 * 2 * np.pi) - 1e-4) and np.all(slope < 1.2 + 1e-4)
    assert slope.min() < 0.82 and slope.max() > 1.18
    assert np.allclose(out[:, 16, 16, 0], 16.0, atol=1e-3)  # the centre stays in place


@pytest.mark.parametrize("kind", sorted(augment.PIPELINES))
def test_pipelines_compile_with_xla(kind, images):
    # jit_compile=True on TensorFlow (what the library turns on for GPUs and TPUs), jax.jit on JAX.
    from backend_utils import xla_compile

    pipeline = augment.build_pipeline(kind, images, seed=0)
    out = ops.convert_to_numpy(xla_compile(lambda x: pipeline(x, training=True))(ops.convert_to_tensor(images)))
    assert out.shape == images.shape and np.isfinite(out).all()
    if kind != "none":
        assert not np.allclose(out, run(pipeline, images, training=False))


def torchvision_crop_areas(rng, count, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), attempts=10):
    """Reference: torchvision's RandomResizedCrop.get_params on a square image (continuous sides):
    draw until the box fits, up to ``attempts`` times, else the whole image. Fractions of the area."""
    areas = []
    for _ in range(count):
        for _ in range(attempts):
            area = rng.uniform(*scale)
            aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
            width, height = np.sqrt(area * aspect), np.sqrt(area / aspect)
            if width <= 1 and height <= 1:
                areas.append(width * height)
                break
        else:
            areas.append(1.0)
    return np.array(areas)


def test_resized_crop_redraws_boxes_that_do_not_fit():
    layer = augment.RandomResizedCrop(seed=0)
    images = ops.zeros((20_000, 32, 32, 1))
    left, top, width, height = (ops.convert_to_numpy(v) for v in layer.crop_boxes(images))
    assert np.all(left >= 0) and np.all(top >= 0)
    assert np.all(left + width <= 32 + 1e-4) and np.all(top + height <= 32 + 1e-4)
    ratio = width / height
    assert np.all(ratio > 3 / 4 - 1e-5) and np.all(ratio < 4 / 3 + 1e-5)  # clipping would break the ratio
    areas = width * height / 32**2
    reference = torchvision_crop_areas(np.random.default_rng(0), 20_000)
    # Clipping oversized boxes instead of redrawing them gives a mean of about 0.59.
    assert abs(areas.mean() - reference.mean()) < 0.01 and abs(areas.mean() - 0.59) > 0.02
    assert np.quantile(areas, 0.05) == pytest.approx(np.quantile(reference, 0.05), abs=0.02)
    assert np.quantile(areas, 0.95) == pytest.approx(np.quantile(reference, 0.95), abs=0.02)


def test_resized_crop_falls_back_to_the_central_box_of_the_allowed_ratio():
    # A 10:1 image cannot hold a box of ratio 3/4..4/3 covering 90% of its area: every attempt
    # fails, and torchvision then takes the central box of ratio 4/3 and full height.
    layer = augment.RandomResizedCrop(scale=(0.9, 1.0), seed=0)
    left, top, width, height = (ops.convert_to_numpy(v) for v in layer.crop_boxes(ops.zeros((8, 4, 40, 1))))
    np.testing.assert_allclose(height, 4.0)
    np.testing.assert_allclose(width, 4.0 * 4 / 3, rtol=1e-5)
    np.testing.assert_allclose(left, (40 - 4.0 * 4 / 3) / 2, rtol=1e-5)
    np.testing.assert_allclose(top, 0.0)


def test_pad_crop_is_a_zero_padded_shift(images):
    unit = images.astype(np.float32) / 255
    out = run(augment.RandomPadCrop(padding=4, seed=3), unit)
    padded = np.pad(unit, ((0, 0), (4, 4), (4, 4), (0, 0)))
    shifts = set()
    for i in range(len(unit)):
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if np.array_equal(out[i], padded[i, dy:dy + 32, dx:dx + 32])]
        assert matches, f"image {i} is not a crop of the zero-padded image"
        shifts.add(matches[0])
    assert len(shifts) > 4


def test_resized_crop_full_scale_square_is_identity(images):
    unit = images.astype(np.float32) / 255
    layer = augment.RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)
    np.testing.assert_allclose(run(layer, unit), unit, atol=1e-5)


def test_resized_crop_zooms_in(images):
    # A smooth horizontal ramp: a crop of a fraction of the width spans a smaller range of values.
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32)[None, None, :, None], (64, 32, 1, 3))
    out = run(augment.RandomResizedCrop(scale=(0.2, 0.3), seed=0), ramp)
    spans = out[:, 16, -1, 0] - out[:, 16, 0, 0]
    assert np.all(spans < 0.75) and np.all(spans > 0.2)


def test_flip_mirrors_about_half_the_images():
    ramp = np.tile(np.arange(32, dtype=np.float32)[None, None, :, None], (1000, 2, 1, 3))
    out = run(augment.RandomFlipHorizontal(seed=0), ramp)
    flipped = out[:, 0, 0, 0] == 31
    assert np.all(flipped | (out[:, 0, 0, 0] == 0))
    assert 0.45 < flipped.mean() < 0.55


def test_grayscale_and_random_apply_probabilities(images):
    colourful = np.random.default_rng(1).random((2000, 4, 4, 3), dtype=np.float32)
    grey = run(augment.RandomGrayscale(probability=0.2, seed=0), colourful)
    is_grey = np.all(np.isclose(grey[..., 0], grey[..., 1]) & np.isclose(grey[..., 1], grey[..., 2]), axis=(1, 2))
    assert 0.17 < is_grey.mean() < 0.23
    applied = run(augment.RandomApply(augment.ColorJitter(seed=4), probability=0.8, seed=0), colourful)
    changed = np.any(np.abs(applied - colourful) > 1e-6, axis=(1, 2, 3))
    assert 0.77 < changed.mean() < 0.83
    assert np.all(run(augment.RandomGrayscale(probability=1.0), colourful[:8])[..., 0]
                  == run(augment.RandomGrayscale(probability=1.0), colourful[:8])[..., 2])


def test_color_jitter_stays_in_range_and_zero_strength_is_identity(images):
    unit = images.astype(np.float32) / 255
    out = run(augment.ColorJitter(seed=0), unit)
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, unit)
    still = run(augment.ColorJitter(0, 0, 0, 0, seed=0), unit)
    np.testing.assert_allclose(still, unit, atol=1e-5)


def test_hue_shift_rotates_pure_red():
    red = np.zeros((200, 2, 2, 3), np.float32)
    red[..., 0] = 1.0
    out = run(augment.ColorJitter(0, 0, 0, 0.1, seed=0), red)
    hsv = ops.convert_to_numpy(ops.image.rgb_to_hsv(ops.convert_to_tensor(out)))
    hue = hsv[:, 0, 0, 0]
    shift = np.where(hue > 0.5, hue - 1, hue)
    assert np.all(np.abs(shift) <= 0.1 + 1e-5) and shift.std() > 0.03


def test_multiview_gives_independent_views(images):
    pipeline = augment.supcon_pipeline(images, seed=0)
    views = run(augment.MultiView(pipeline, num_views=3), images)
    assert views.shape == (16, 3, 32, 32, 3)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        per_image_equal = [np.allclose(views[i, a], views[i, b]) for i in range(16)]
        assert not any(per_image_equal)
    # Batches of 16 (the shape above: JAX compiles nothing new for them) and a remainder of 1.
    numpy_views = augment.make_views(np.concatenate([images, images[:1]]), pipeline, num_views=4, batch_size=16)
    assert numpy_views.shape == (17, 4, 32, 32, 3)


def test_pipeline_serialization_round_trip(images):
    pipeline = augment.supcon_pipeline(images, seed=0)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pipeline))
    np.testing.assert_allclose(run(restored, images, training=False), run(pipeline, images, training=False), atol=1e-6)
    assert [type(layer).__name__ for layer in restored.layers] == [type(layer).__name__ for layer in pipeline.layers]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: augment.RandomFlipHorizontal(probability=1.5), "probability"),
        (lambda: augment.RandomResizedCrop(scale=(0.0, 1.0)), "scale"),
        (lambda: augment.RandomResizedCrop(ratio=(2.0, 1.0)), "ratio"),
        (lambda: augment.RandomPadCrop(padding=-1), "padding"),
        (lambda: augment.RandomRotateZoom(rotation=0.7), "rotation"),
        (lambda: augment.RandomRotateZoom(zoom=1.0), "zoom"),
        (lambda: augment.affine_transform(np.zeros((1, 4, 4, 1)), np.zeros((1, 8)), "bicubic"), "interpolation"),
        (lambda: augment.affine_transform(np.zeros((1, 4, 4, 1)), np.zeros((1, 8)), fill_mode="wrap"), "fill_mode"),
        (lambda: augment.ColorJitter(hue=0.7), "hue"),
        (lambda: augment.ColorJitter(brightness=-0.1), "brightness"),
        (lambda: augment.MultiView(augment.RandomGrayscale(), num_views=0), "num_views"),
        (lambda: augment.build_pipeline("autoaugment"), "unknown augmentation"),
        (lambda: augment.channel_stats(np.zeros((2, 32, 32))), "shape"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.backend_independent
def test_no_retired_apis_in_the_repository():
    """tensorflow_addons is retired and layers.experimental is gone in Keras 3."""
    from pathlib import Path

    root = Path(augment.__file__).resolve().parent.parent
    sources = [p for folder in ("supcon_lib", "notebooks", "benchmarks") for p in (root / folder).rglob("*.py")]
    assert sources
    retired = ("import tensorflow_" + "addons", "layers." + "experimental")
    offenders = [str(p) for p in sources for word in retired if word in p.read_text()]
    assert offenders == []
