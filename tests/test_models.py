"""Tests for supcon_lib.models: encoder shapes and stems, heads, inspection helpers, a tiny fit.

Backend-agnostic: run on TensorFlow and, with KERAS_BACKEND=jax, on JAX (see conftest.py).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from supcon_lib import models
from supcon_lib.evaluation import test_accuracy as evaluate_accuracy


@pytest.fixture(scope="module")
def resnet18():
    return models.build_encoder("resnet18")


@pytest.fixture(scope="module")
def resnet_small():
    return models.build_encoder("resnet_small")


@pytest.fixture(scope="module")
def resnet50v2():
    return models.build_encoder("resnet50v2")


def _random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 32, 32, 3)).astype("float32")


# --- encoders ---------------------------------------------------------------------------------------

@pytest.mark.backend_independent
def test_encoder_names_and_feature_dims():
    assert models.ENCODERS == ("resnet18", "resnet_small", "resnet14", "resnet50v2")
    assert models.encoder_feature_dim("resnet18") == 512
    assert models.encoder_feature_dim("resnet_small") == 128
    assert models.encoder_feature_dim("resnet50v2") == 2048


@pytest.mark.parametrize("fixture_name", ["resnet18", "resnet_small", pytest.param(
    "resnet50v2", marks=pytest.mark.jax_redundant(
        "keras.applications.ResNet50V2 is Keras' own model: on JAX this pass runs the CIFAR ResNets that "
        "supcon_lib builds (resnet18 here, resnet_small in every recipe run)"))])
def test_encoder_output_shape(fixture_name, request):
    encoder = request.getfixturevalue(fixture_name)
    feature_dim = models.encoder_feature_dim(fixture_name)
    assert tuple(encoder.input.shape) == (None, 32, 32, 3)
    assert tuple(encoder.output.shape) == (None, feature_dim)
    features = keras.ops.convert_to_numpy(encoder(_random_images(2), training=False))
    assert features.shape == (2, feature_dim)
    assert np.all(np.isfinite(features))


def test_cifar_stem_keeps_resolution(resnet18, resnet_small):
    sizes = dict(models.feature_map_sizes(resnet18))
    assert sizes["stem_conv"] == (32, 32, 64)
    assert sizes["stem_out"] == (32, 32, 64)  # 3x3 stride-1 stem, no max-pool
    assert sizes["stage1_block2_out"] == (32, 32, 64)
    assert sizes["stage2_block2_out"] == (16, 16, 128)
    assert sizes["stage3_block2_out"] == (8, 8, 256)
    assert sizes["stage4_block2_out"] == (4, 4, 512)
    assert sizes["avg_pool"] == (512,)
    assert not any(name.startswith(("max_pool", "pool")) for name in sizes)

    small = dict(models.feature_map_sizes(resnet_small))
    assert small["stem_out"] == (32, 32, 16)
    assert small["stage4_block1_out"] == (4, 4, 128)


def test_feature_map_sizes_order_and_filter(resnet18):
    everything = models.feature_map_sizes(resnet18)
    blocks_only = models.feature_map_sizes(resnet18, include_convolutions=False)
    names = [name for name, _ in blocks_only]
    assert names == [
        "stem_out",
        "stage1_block1_out", "stage1_block2_out",
        "stage2_block1_out", "stage2_block2_out",
        "stage3_block1_out", "stage3_block2_out",
        "stage4_block1_out", "stage4_block2_out",
        "avg_pool",
    ]
    # Convolutions come in as well by default: 1 stem + 2 per block + 3 projection shortcuts.
    assert len(everything) == len(blocks_only) + 1 + 2 * 8 + 3
    # Nested models are searched: wrapping the encoder changes nothing.
    inputs = keras.Input((32, 32, 3))
    wrapper = keras.Model(inputs, resnet18(inputs))
    assert models.feature_map_sizes(wrapper, include_convolutions=False) == blocks_only


def test_resnet50v2_imagenet_stem_shrinks_to_1x1(resnet50v2):
    sizes = dict(models.feature_map_sizes(resnet50v2))
    assert sizes["conv1_conv"] == (16, 16, 64)  # 7x7 stride 2
    assert sizes["pool1_pool"] == (8, 8, 64)  # 3x3 stride-2 max-pool
    # ResNet-V2 strides in the last block of stages 2-4: 4x4, 2x2, then 1x1 before the last stage.
    assert sizes["conv2_block3_out"] == (4, 4, 256)
    assert sizes["conv3_block4_out"] == (2, 2, 512)
    assert sizes["conv4_block6_out"] == (1, 1, 1024)
    assert sizes["conv5_block3_out"] == (1, 1, 2048)


def test_resnet18_parameter_count(resnet18):
    trainable, non_trainable = models.count_parameters(resnet18)
    assert 11.0e6 < trainable < 11.3e6  # the familiar "11.2M" of CIFAR ResNet-18 without its fc layer
    assert trainable == 11_168_832
    # Batch-norm moving mean and variance: 2 x (64 + 4*64 + 4*128 + 4*256 + 4*512 + 128 + 256 + 512).
    assert non_trainable == 9_600
    assert trainable + non_trainable == resnet18.count_params()


def test_encoder_has_no_regularisers_and_uses_he_normal(resnet_small):
    convolutions = [layer for layer in resnet_small.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions
    for layer in convolutions:
        assert layer.kernel_regularizer is None
        assert not layer.use_bias
        assert isinstance(layer.kernel_initializer, keras.initializers.HeNormal)


def test_name_prefix_allows_two_encoders_in_one_model():
    first = models.build_encoder("resnet_small", name_prefix="a_")
    second = models.build_encoder("resnet_small", name_prefix="b_")
    assert first.name == "a_resnet_small" and second.name == "b_resnet_small"
    assert all(layer.name.startswith("a_") for layer in first.layers)
    inputs = keras.Input((32, 32, 3))
    combined = keras.Model(inputs, keras.layers.Concatenate()([first(inputs), second(inputs)]))
    assert tuple(combined.output.shape) == (None, 256)


def test_encoder_accepts_other_input_shapes():
    encoder = models.build_encoder("resnet_small", input_shape=(16, 16, 1))
    assert dict(models.feature_map_sizes(encoder))["stage4_block1_out"] == (2, 2, 128)


def test_encoder_errors():
    with pytest.raises(ValueError, match="unknown encoder 'resnet34'.*'resnet18'.*'resnet_small'.*'resnet50v2'"):
        models.build_encoder("resnet34")
    with pytest.raises(ValueError, match="unknown encoder"):
        models.encoder_feature_dim("vgg")
    with pytest.raises(ValueError, match="input_shape"):
        models.build_encoder("resnet_small", input_shape=(32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        models.build_encoder("resnet_small", input_shape=(32, 0, 3))
    with pytest.raises(ValueError, match="name_prefix"):
        models.build_encoder("resnet_small", name_prefix=3)


# --- heads ------------------------------------------------------------------------------------------

def _features(count: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dim)).astype("float32")


@pytest.mark.parametrize("kind", models.PROJECTION_HEADS)
def test_projection_head_shapes(kind):
    head = models.build_projection_head(kind, input_dim=64, projection_dim=16)
    assert tuple(head.input.shape) == (None, 64)
    assert tuple(head.output.shape) == (None, 16)
    outputs = keras.ops.convert_to_numpy(head(_features(32, 64)))
    assert outputs.shape == (32, 16)


def test_projection_head_activations():
    features = _features(64, 32)
    original = keras.ops.convert_to_numpy(models.build_projection_head("original", 32, 8)(features))
    mlp = keras.ops.convert_to_numpy(models.build_projection_head("mlp", 32, 8)(features))
    linear = keras.ops.convert_to_numpy(models.build_projection_head("linear", 32, 8)(features))
    assert np.all(original >= 0)  # ReLU output: every cosine similarity would be >= 0
    assert np.any(mlp < 0)  # the paper's head has no output activation
    assert np.any(linear < 0)


def test_mlp_projection_head_structure():
    head = models.build_projection_head("mlp", input_dim=32, projection_dim=8)
    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [32, 8]  # hidden_dim defaults to input_dim
    assert dense[-1].activation is keras.activations.linear
    wide = models.build_projection_head("mlp", input_dim=32, projection_dim=8, hidden_dim=64)
    assert [layer.units for layer in wide.layers if isinstance(layer, keras.layers.Dense)] == [64, 8]


@pytest.mark.parametrize("kind", models.CLASSIFIER_HEADS)
def test_classifier_head_outputs_logits(kind):
    head = models.build_classifier_head(kind, input_dim=48, num_classes=10, hidden_units=24)
    assert tuple(head.output.shape) == (None, 10)
    logits = keras.ops.convert_to_numpy(head(_features(16, 48), training=False))
    assert logits.shape == (16, 10)
    assert np.any(logits < 0)  # logits, not softmax probabilities
    assert head.layers[-1].activation is keras.activations.linear


def test_mlp_classifier_head_structure():
    head = models.build_classifier_head("mlp", input_dim=48, num_classes=3, hidden_units=24, dropout=0.25)
    kinds = [type(layer).__name__ for layer in head.layers[1:]]
    assert kinds == ["Dropout", "Dense", "Dropout", "Dense"]
    assert [layer.rate for layer in head.layers if isinstance(layer, keras.layers.Dropout)] == [0.25, 0.25]


def test_head_errors():
    with pytest.raises(ValueError, match="unknown projection head 'relu'"):
        models.build_projection_head("relu")
    with pytest.raises(ValueError, match="unknown classifier head"):
        models.build_classifier_head("softmax")
    for bad in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match="projection_dim"):
            models.build_projection_head("mlp", projection_dim=bad)
    with pytest.raises(ValueError, match="hidden_dim"):
        models.build_projection_head("mlp", hidden_dim=0)
    with pytest.raises(ValueError, match="num_classes"):
        models.build_classifier_head("linear", num_classes=0)
    with pytest.raises(ValueError, match="dropout"):
        models.build_classifier_head("mlp", dropout=1.0)


def test_count_parameters_of_a_head():
    head = models.build_projection_head("mlp", input_dim=10, projection_dim=4, hidden_dim=6)
    assert models.count_parameters(head) == (10 * 6 + 6 + 6 * 4 + 4, 0)
    with pytest.raises(ValueError, match="keras.Model"):
        models.count_parameters("not a model")
    with pytest.raises(ValueError, match="keras.Model"):
        models.feature_map_sizes(None)


# --- a tiny fit -------------------------------------------------------------------------------------

def _stripes(count: int, seed: int, size: int = 16):
    """Class 0: horizontal stripes, class 1: vertical stripes, random phase, noise and contrast."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    coordinates = np.arange(size)
    images = np.empty((count, size, size, 3), dtype="float32")
    for index, label in enumerate(labels):
        wave = np.sin(2 * np.pi * (coordinates / 8.0 + rng.uniform()))
        pattern = wave[:, None] * np.ones((1, size)) if label == 0 else np.ones((size, 1)) * wave[None, :]
        images[index] = (pattern * rng.uniform(0.5, 1.5))[..., None] + rng.normal(0, 0.5, (size, size, 3))
    return images, labels


@pytest.mark.slow
@pytest.mark.jax_redundant("resnet_small learns on JAX in every recipe run of the JAX pass "
                           "(test_training.py, test_hybrid_and_momentum.py)")
def test_resnet_small_learns_two_synthetic_classes():
    # 16x16 images keep this to a few seconds; the architecture is the same as for 32x32.
    keras.utils.set_random_seed(0)
    train_images, train_labels = _stripes(128, seed=1)
    test_images, test_labels = _stripes(64, seed=2)
    encoder = models.build_encoder("resnet_small", input_shape=(16, 16, 3))
    head = models.build_classifier_head("linear", models.encoder_feature_dim("resnet_small"), num_classes=2)
    inputs = keras.Input((16, 16, 3))
    classifier = keras.Model(inputs, head(encoder(inputs)))
    classifier.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = evaluate_accuracy(classifier, test_images, test_labels)
    classifier.fit(train_images, train_labels, batch_size=16, epochs=4, verbose=0)
    after = evaluate_accuracy(classifier, test_images, test_labels)  # inference mode: BN moving stats
    assert after >= 0.9, (before, after)


# --- backends ---------------------------------------------------------------------------------------

def test_runs_on_the_requested_backend():
    """The JAX run (KERAS_BACKEND=jax) really exercises JAX; without the variable, TensorFlow."""
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")
