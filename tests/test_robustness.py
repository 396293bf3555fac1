"""supcon_lib.robustness: corruptions generated in code, and calibration.

* Every corruption at every severity keeps uint8 and the shape, leaves its input alone, changes
  the image, is deterministic for a seed, and changes it more at severity 5 than at 1 (the mean
  absolute difference grows with severity).
* Brightness raises the mean and contrast lowers the standard deviation (keeping the mean), both
  more with severity; brightness, blur and contrast agree with per-pixel references written here
  (colorsys' HSV for brightness, an explicit mirrored convolution for blur); the noise has the
  documented standard deviation; pixelate makes blocks.
* Expected calibration error and the reliability-diagram bins on a case worked out by hand, and
  against a loop over samples; softmax against its formula; bad inputs raise ValueError.
"""

import colorsys
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from supcon_lib import robustness, viz  # noqa: E402

NAMES = sorted(robustness.CORRUPTIONS)


def make_images():
    """Three 32 x 32 test images with edges, gradients and texture, values within 20..235."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32]
    gradient = np.stack([40 + 5 * x, 40 + 5 * y, 120 + 60 * ((x // 4 + y // 4) % 2)], axis=-1)
    blocks = np.kron(rng.integers(30, 220, size=(8, 8, 3)), np.ones((4, 4, 1)))
    disc = np.where(((x - 15) ** 2 + (y - 17) ** 2 < 100)[..., None], [200, 60, 50], [50, 90, 170])
    images = np.stack([gradient, blocks, disc]).astype(float)
    images += rng.normal(scale=8.0, size=images.shape)
    return np.clip(np.rint(images), 20, 235).astype(np.uint8)


@pytest.fixture
def images():
    return make_images()


def mean_absolute_difference(a, b):
    return float(np.mean(np.abs(a.astype(float) - b.astype(float))))


# ------------------------------------------------------------------------------------------------
# Every corruption
# ------------------------------------------------------------------------------------------------
def test_the_table_of_parameters_covers_every_corruption():
    assert set(robustness.SEVERITY_PARAMETERS) == set(robustness.CORRUPTIONS) == {
        "gaussian_noise", "gaussian_blur", "contrast", "brightness", "jpeg", "pixelate"}
    for description, values in robustness.SEVERITY_PARAMETERS.values():
        assert isinstance(description, str) and len(values) == 5


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_corruption_keeps_dtype_and_shape_and_is_deterministic(images, name, severity):
    before = images.copy()
    out = robustness.corrupt(images, name, severity, seed=3)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(images, before)  # the input is not modified
    assert np.any(out != images)
    np.testing.assert_array_equal(robustness.corrupt(images, name, severity, seed=3), out)
    np.testing.assert_array_equal(robustness.CORRUPTIONS[name](images, severity, seed=3), out)


@pytest.mark.parametrize("name", NAMES)
def test_corruption_grows_with_severity(images, name):
    differences = [mean_absolute_difference(robustness.corrupt(images, name, s), images) for s in range(1, 6)]
    assert differences[0] < differences[-1], differences
    assert all(later >= earlier for earlier, later in zip(differences, differences[1:])), differences


def test_only_the_noise_depends_on_the_seed(images):
    for name in NAMES:
        first, second = robustness.corrupt(images, name, 3, seed=0), robustness.corrupt(images, name, 3, seed=1)
        assert np.array_equal(first, second) == (name != "gaussian_noise"), name


# ------------------------------------------------------------------------------------------------
# Each corruption against what it should do
# ------------------------------------------------------------------------------------------------
def test_brightness_raises_the_mean_and_matches_hsv(images):
    means = [images.mean()] + [robustness.brightness(images, s).mean() for s in range(1, 6)]
    assert all(later > earlier for earlier, later in zip(means, means[1:])), means
    shift = robustness.SEVERITY_PARAMETERS["brightness"][1][2]
    out = robustness.brightness(images[:, ::4, ::4], 3)  # an 8 x 8 sample of each image
    for pixel, result in zip(images[:, ::4, ::4].reshape(-1, 3), out.reshape(-1, 3)):
        h, s, v = colorsys.rgb_to_hsv(*(pixel / 255.0))
        expected = np.array(colorsys.hsv_to_rgb(h, s, min(v + shift, 1.0))) * 255.0
        np.testing.assert_allclose(result, expected, atol=0.51 + 1e-3)
    black = robustness.brightness(np.zeros((1, 2, 2, 3), np.uint8), 5)
    assert np.all(black == round(0.4 * 255))  # black has no hue: it turns grey


def test_contrast_lowers_the_spread_and_keeps_the_mean(images):
    stds = [images.std()] + [robustness.contrast(images, s).std() for s in range(1, 6)]
    assert all(later < earlier for earlier, later in zip(stds, stds[1:])), stds
    for severity, factor in enumerate(robustness.SEVERITY_PARAMETERS["contrast"][1], start=1):
        out = robustness.contrast(images, severity).astype(float)
        means = images.astype(float).mean(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(out, means + factor * (images - means), atol=0.51)
        np.testing.assert_allclose(out.mean(axis=(1, 2)), means[:, 0, 0], atol=0.51)


def test_blur_matches_an_explicit_mirrored_convolution():
    image = make_images()[1:2, :8, :8]
    sigma = robustness.SEVERITY_PARAMETERS["gaussian_blur"][1][4]
    radius = math.ceil(3 * sigma)
    weights = [math.exp(-0.5 * (d / sigma) ** 2) for d in range(-radius, radius + 1)]
    weights = [w / sum(weights) for w in weights]

    def mirror(i, n):  # ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...
        return -i - 1 if i < 0 else 2 * n - i - 1 if i >= n else i

    out = robustness.gaussian_blur(image, 5)
    for row in range(8):
        for col in range(8):
            for channel in range(3):
                value = sum(weights[a] * weights[b] * float(image[0, mirror(row + a - radius, 8),
                                                                  mirror(col + b - radius, 8), channel])
                            for a in range(len(weights)) for b in range(len(weights)))
                assert abs(float(out[0, row, col, channel]) - value) <= 0.51, (row, col, channel)


def test_noise_has_the_documented_standard_deviation():
    grey = np.full((4, 32, 32, 3), 128, np.uint8)
    for severity, sigma in enumerate(robustness.SEVERITY_PARAMETERS["gaussian_noise"][1], start=1):
        difference = robustness.gaussian_noise(grey, severity, seed=5).astype(float) - 128
        assert difference.std() == pytest.approx(sigma * 255, rel=0.06)
        assert abs(difference.mean()) < 1.5


def test_pixelate_makes_blocks(images):
    out = robustness.pixelate(images, 5)
    side = max(1, round(robustness.SEVERITY_PARAMETERS["pixelate"][1][4] * 32))
    for image in out:
        assert len(np.unique(image, axis=0)) <= side  # at most `side` distinct rows
        assert np.unique(image, axis=1).shape[1] <= side  # and columns
    flat = np.full((1, 32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(robustness.pixelate(flat, 5), flat)


@pytest.mark.parametrize("call, match", [
    (lambda x: robustness.corrupt(x, "fog", 1), "unknown corruption"),
    (lambda x: robustness.corrupt(x, "contrast", 0), "severity"),
    (lambda x: robustness.corrupt(x, "contrast", 6), "severity"),
    (lambda x: robustness.corrupt(x, "contrast", 2.0), "severity"),
    (lambda x: robustness.corrupt(x, "contrast", True), "severity"),
    (lambda x: robustness.jpeg(x.astype(np.float32) / 255, 1), "uint8"),
    (lambda x: robustness.gaussian_blur(x[0], 1), "shape"),
    (lambda x: robustness.pixelate(np.concatenate([x, x[..., :1]], axis=-1), 1), "shape"),
    (lambda x: robustness.gaussian_noise(x[:0], 1), "empty"),
])
def test_bad_images_and_severities_raise_value_error(images, call, match):
    with pytest.raises(ValueError, match=match):
        call(images)


# ------------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------------
def hand_case():
    """Eight predictions over 2 classes (label 0 is right when class 0 has the larger probability).

    With 5 bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]:
    bin (.4, .6]: confidences .55, .55, both right   -> accuracy 1,   confidence .55, gap .45
    bin (.6, .8]: confidences .7, .7, one right      -> accuracy .5,  confidence .7,  gap .2
    bin (.8, 1]:  confidences .85, .95, .9, .9, 3 right -> accuracy .75, confidence .9, gap .15
    ECE = 2/8 * .45 + 2/8 * .2 + 4/8 * .15 = .1125 + .05 + .075 = .2375
    """
    class0 = np.array([0.55, 0.55, 0.7, 0.7, 0.85, 0.95, 0.9, 0.9])
    probabilities = np.stack([class0, 1 - class0], axis=1)
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 1])
    return probabilities, labels


def test_ece_of_a_case_worked_out_by_hand():
    probabilities, labels = hand_case()
    assert robustness.expected_calibration_error(probabilities, labels, bins=5) == pytest.approx(0.2375)
    data = robustness.reliability_diagram_data(probabilities, labels, bins=5)
    np.testing.assert_allclose(data["edges"], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_array_equal(data["count"], [0, 0, 2, 2, 4])
    np.testing.assert_allclose(data["accuracy"], [np.nan, np.nan, 1.0, 0.5, 0.75])
    np.testing.assert_allclose(data["confidence"], [np.nan, np.nan, 0.55, 0.7, 0.9])
    assert data["ece"] == pytest.approx(0.2375)
    # Swapping the columns and the labels changes nothing.
    assert robustness.expected_calibration_error(probabilities[:, ::-1], 1 - labels, bins=5) == pytest.approx(0.2375)


def test_ece_extremes():
    certain = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert robustness.expected_calibration_error(certain, np.array([0, 1])) == 0.0
    assert robustness.expected_calibration_error(certain, np.array([1, 2])) == 1.0


def test_ece_matches_a_loop_over_samples():
    rng = np.random.default_rng(2)
    probabilities = robustness.softmax(rng.normal(scale=2.0, size=(200, 4)))
    labels = rng.integers(0, 4, size=200)
    bins = 10
    members = [[] for _ in range(bins)]
    for row, label in zip(probabilities.tolist(), labels.tolist()):
        confidence = max(row)
        b = next(b for b in range(bins) if b / bins < confidence <= (b + 1) / bins)
        members[b].append((confidence, row.index(confidence) == label))
    reference = sum(len(m) / 200 * abs(sum(c for _, c in m) / len(m) - sum(p for p, _ in m) / len(m))
                    for m in members if m)
    assert robustness.expected_calibration_error(probabilities, labels, bins=bins) == pytest.approx(reference, rel=1e-9)
    data = robustness.reliability_diagram_data(probabilities, labels, bins=bins)
    np.testing.assert_array_equal(data["count"], [len(m) for m in members])


def test_softmax_matches_its_formula_and_survives_large_logits():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    row = [math.exp(v) for v in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(robustness.softmax(logits)[0], [v / sum(row) for v in row], rtol=1e-12)
    np.testing.assert_allclose(robustness.softmax(logits)[1], [1 / 3] * 3)
    np.testing.assert_allclose(robustness.softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])
    np.testing.assert_allclose(robustness.softmax(logits.T, axis=0).sum(axis=0), 1.0)


@pytest.mark.parametrize("call, match", [
    (lambda p, y: robustness.expected_calibration_error(np.log(p), y), "softmax"),
    (lambda p, y: robustness.expected_calibration_error(p * 2, y), "softmax"),
    (lambda p, y: robustness.expected_calibration_error(p[:, 0], y), "shape"),
    (lambda p, y: robustness.expected_calibration_error(p, y[:-1]), "labels has"),
    (lambda p, y: robustness.expected_calibration_error(p, y + 2), "0..1"),
    (lambda p, y: robustness.expected_calibration_error(p, y.astype(float)), "integer"),
    (lambda p, y: robustness.expected_calibration_error(np.where(p > 0.9, np.nan, p), y), "NaN"),
    (lambda p, y: robustness.expected_calibration_error(p, y, bins=0), "bins"),
    (lambda p, y: robustness.reliability_diagram_data(p[:0], y[:0]), "empty"),
    (lambda p, y: robustness.softmax(np.array([np.inf, 0.0])), "NaN or infinite"),
])
def test_bad_calibration_inputs_raise_value_error(call, match):
    probabilities, labels = hand_case()
    with pytest.raises(ValueError, match=match):
        call(probabilities, labels)


# ------------------------------------------------------------------------------------------------
# The reliability diagram
# ------------------------------------------------------------------------------------------------
def test_plot_reliability_diagram_single_and_side_by_side():
    data = robustness.reliability_diagram_data(*hand_case(), bins=5)
    fig = viz.plot_reliability_diagram(data, title="one")
    assert len(fig.axes) == 2 and "ECE = 0.23" in fig.axes[0].get_title()  # 0.2375, to 3 decimals
    fig = viz.plot_reliability_diagram({"cross-entropy": data, "SupCon": data})
    assert len(fig.axes) == 4 and fig.axes[1].get_title().startswith("SupCon")
    with pytest.raises(ValueError, match="empty"):
        viz.plot_reliability_diagram({})
    with pytest.raises(ValueError, match="lacks"):
        viz.plot_reliability_diagram({"bad": {"edges": [0, 1]}})
    plt.close("all")
