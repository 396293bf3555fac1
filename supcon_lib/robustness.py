"""Robustness and calibration: corrupted test images, and how far confidence can be trusted.

Test accuracy on clean images says little about what happens when the images are noisier, blurrier
or more compressed than the training set. Hendrycks & Dietterich (2019, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations", arXiv:1903.12261) built CIFAR-10-C:
the CIFAR-10 test set under 15 corruptions at 5 severities. This module generates six of those
corruption *types* in code, on any uint8 images, so that no extra download is needed:

==================  =============================================================  =============================
name                what it does (severity 1 .. 5)                                 parameter per severity 1 .. 5
==================  =============================================================  =============================
``gaussian_noise``  adds independent N(0, sigma^2) noise to every pixel value      sigma (of [0, 1] values):
                                                                                   0.04, 0.06, 0.08, 0.10, 0.13
``gaussian_blur``   convolves with a Gaussian kernel (separable, mirrored edges)   sigma in pixels:
                                                                                   0.5, 0.75, 1.0, 1.25, 1.5
``contrast``        pulls every value towards its image's mean (per channel)       factor: 0.75, 0.55, 0.4, 0.3,
                                                                                   0.2
``brightness``      raises the HSV value V by c (hue and saturation kept)          c (of V in [0, 1]): 0.05, 0.1,
                                                                                   0.2, 0.3, 0.4
``jpeg``            JPEG-encodes and decodes (Pillow, 4:2:0 chroma subsampling)    quality: 80, 60, 40, 25, 10
``pixelate``        shrinks with box averaging, then enlarges (nearest neighbour)  side fraction: 0.9, 0.75,
                                                                                   0.6, 0.45, 0.3
==================  =============================================================  =============================

The parameters are ours, chosen in the spirit of the paper (each severity visibly worse than the
last on 32 x 32 images); they are not those of the released CIFAR-10-C files, so accuracies here
are not comparable number for number with published CIFAR-10-C results. ``SEVERITY_PARAMETERS``
holds the table. Every corruption takes uint8 images ``(N, H, W, 3)`` and returns new uint8 images
of the same shape (values rounded and clipped to 0..255); it is deterministic: only
``gaussian_noise`` is random, and it draws from ``numpy.random.default_rng(seed)``.

*Calibration.* A classifier is calibrated when, among the images it labels with confidence 0.8,
80% are right. :func:`reliability_diagram_data` sorts predictions into ``bins`` equal-width
confidence bins (confidence = the largest class probability) and reports each bin's mean
confidence, accuracy and count; :func:`expected_calibration_error` (ECE; Guo et al., 2017,
arXiv:1706.04599) is the average gap ``|accuracy - confidence|`` over the bins, weighted by the
fraction of predictions in each. Both need probabilities: convert logits with :func:`softmax`.

Inputs are checked; anything else raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import io
import numbers

import numpy as np

__all__ = [
    "CORRUPTIONS",
    "SEVERITY_PARAMETERS",
    "brightness",
    "contrast",
    "corrupt",
    "evaluate_under_corruptions",
    "expected_calibration_error",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "pixelate",
    "reliability_diagram_data",
    "softmax",
]

#: ``{corruption name: (what the parameter is, (its value at severity 1, ..., 5))}``.
SEVERITY_PARAMETERS = {
    "gaussian_noise": ("standard deviation of the added noise, on the [0, 1] scale of pixel values",
                       (0.04, 0.06, 0.08, 0.10, 0.13)),
    "gaussian_blur": ("standard deviation of the Gaussian kernel, in pixels", (0.5, 0.75, 1.0, 1.25, 1.5)),
    "contrast": ("factor multiplying each value's distance from its image's channel mean",
                 (0.75, 0.55, 0.4, 0.3, 0.2)),
    "brightness": ("amount added to the HSV value V (in [0, 1]), clipped at 1", (0.05, 0.1, 0.2, 0.3, 0.4)),
    "jpeg": ("JPEG quality given to Pillow (1 worst .. 95 best)", (80, 60, 40, 25, 10)),
    "pixelate": ("side of the shrunken image as a fraction of the original side", (0.9, 0.75, 0.6, 0.45, 0.3)),
}


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------

def _check_images(images) -> np.ndarray:
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (values 0..255), got dtype {array.dtype}")
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"images is empty (shape {array.shape})")
    return array


def _parameter(name: str, severity) -> float:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer from 1 to 5, got {severity!r}")
    return SEVERITY_PARAMETERS[name][1][int(severity) - 1]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Float pixel values on the 0..255 scale, rounded and clipped to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _pillow():
    from PIL import Image

    return Image, getattr(Image, "Resampling", Image)  # Pillow < 9.1 has no Image.Resampling


# --------------------------------------------------------------------------------------------------
# Corruptions
# --------------------------------------------------------------------------------------------------

def gaussian_noise(images, severity: int, seed: int = 0) -> np.ndarray:
    """Add Gaussian noise: ``x + N(0, sigma^2)`` per value, on the [0, 1] scale, then clip.

    ``sigma`` = 0.04, 0.06, 0.08, 0.10, 0.13 at severity 1..5. ``images``: uint8 ``(N, H, W, 3)``;
    returns new uint8 images of the same shape. The noise comes from
    ``numpy.random.default_rng(seed)``: the same seed gives the same images.

    Raises:
        ValueError: images not uint8 ``(N, H, W, 3)`` or empty; severity not an integer 1..5.
    """
    array = _check_images(images)
    sigma = _parameter("gaussian_noise", severity)
    noise = np.random.default_rng(seed).standard_normal(array.shape, dtype=np.float32)
    return _to_uint8(array.astype(np.float32) + noise * np.float32(sigma * 255.0))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _convolve_axis(values: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = len(kernel) // 2
    padding = [(0, 0)] * values.ndim
    padding[axis] = (radius, radius)
    padded = np.pad(values, padding, mode="symmetric")  # mirror, repeating the edge pixel
    size = values.shape[axis]
    out = np.zeros_like(values)
    for offset, weight in enumerate(kernel):
        out += weight * np.take(padded, np.arange(offset, offset + size), axis=axis)
    return out


def gaussian_blur(images, severity: int, seed: int = 0) -> np.ndarray:
    """Blur with a Gaussian kernel of standard deviation sigma pixels (separable convolution).

    ``sigma`` = 0.5, 0.75, 1.0, 1.25, 1.5 at severity 1..5; the kernel reaches ``ceil(3 sigma)``
    pixels each way and the image is mirrored at its edges. ``images``: uint8 ``(N, H, W, 3)``;
    returns new uint8 images of the same shape. ``seed`` is accepted for a uniform signature and
    not used (the blur is deterministic).

    Raises:
        ValueError: images not uint8 ``(N, H, W, 3)`` or empty; severity not an integer 1..5.
    """
    array = _check_images(images)
    kernel = _gaussian_kernel(_parameter("gaussian_blur", severity))
    values = array.astype(np.float32)
    values = _convolve_axis(values, kernel, axis=1)
    values = _convolve_axis(values, kernel, axis=2)
    return _to_uint8(values)


def contrast(images, severity: int, seed: int = 0) -> np.ndarray:
    """Lower the contrast: ``mean + factor (x - mean)``, the mean per image and channel.

    ``factor`` = 0.75, 0.55, 0.4, 0.3, 0.2 at severity 1..5, so the standard deviation of each
    image shrinks by that factor while its mean stays (up to rounding). ``images``: uint8
    ``(N, H, W, 3)``; returns new uint8 images of the same shape. ``seed`` is not used.

    Raises:
        ValueError: images not uint8 ``(N, H, W, 3)`` or empty; severity not an integer 1..5.
    """
    array = _check_images(images)
    factor = np.float32(_parameter("contrast", severity))
    values = array.astype(np.float32)
    means = values.mean(axis=(1, 2), keepdims=True)
    return _to_uint8(means + factor * (values - means))


def brightness(images, severity: int, seed: int = 0) -> np.ndarray:
    """Brighten: add ``c`` to the HSV value ``V = max(R, G, B)`` (on [0, 1]), keeping hue and saturation.

    ``c`` = 0.05, 0.1, 0.2, 0.3, 0.4 at severity 1..5; ``V`` is clipped at 1. For fixed hue and
    saturation, RGB is proportional to V, so every pixel is scaled by ``min(V + c, 1) / V`` (a
    black pixel becomes grey ``c``), which is what converting to HSV and back would give.
    ``images``: uint8 ``(N, H, W, 3)``; returns new uint8 images of the same shape. ``seed`` is
    not used.

    Raises:
        ValueError: images not uint8 ``(N, H, W, 3)`` or empty; severity not an integer 1..5.
    """
    array = _check_images(images)
    shift = np.float32(_parameter("brightness", severity))
    values = array.astype(np.float32) / np.float32(255.0)
    value = values.max(axis=-1, keepdims=True)
    new_value = np.minimum(value + shift, np.float32(1.0))
    scale = new_value / np.maximum(value, np.float32(1e-12))
    brighter = np.where(value > 0, values * scale, new_value)
    return _to_uint8(brighter * np.float32(255.0))


def jpeg(images, severity: int, seed: int = 0) -> np.ndarray:
    """JPEG compression artefacts: encode each image as JPEG with Pillow and decode it again.

    ``quality`` = 80, 60, 40, 25, 10 at severity 1..5, with 4:2:0 chroma subsampling (pinned, so
    that it does not depend on Pillow's default). ``images``: uint8 ``(N, H, W, 3)``; returns new
    uint8 images of the same shape. ``seed`` is not used.

    Raises:
        ValueError: images not uint8 ``(N, H, W, 3)`` or empty; severity not an integer 1..5.
    """
    array = _check_images(images)
    quality = int(_parameter("jpeg", severity))
    Image, _ = _pillow()
    out = np.empty_like(array)
    for index, image in enumerate(array):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=2)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[index] = np.asarray(decoded.convert("RGB"))
    return out


def pixelate(images, severity: int, seed: int = 0) -> np.ndarray:
    """Pixelate: shrink each image with box averaging, then enlarge it back with nearest neighbour.

    The shrunken side is ``max(1, round(fraction * side))`` with ``fraction`` = 0.9, 0.75, 0.6,
    0.45, 0.3 at severity 1..5 (for 32 x 32 images: 29, 24, 19, 14 and 10 pixels), so the picture
    is made of visible blocks. ``images``: uint8 ``(N, H, W, 3)``; returns new uint8 images of the
    same shape. ``seed`` is not used.

    Raises:
        ValueError: images not uint8 ``(N, H, W, 3)`` or empty; severity not an integer 1..5.
    """
    array = _check_images(images)
    fraction = _parameter("pixelate", severity)
    Image, Resampling = _pillow()
    height, width = array.shape[1:3]
    small = (max(1, int(round(fraction * width))), max(1, int(round(fraction * height))))
    out = np.empty_like(array)
    for index, image in enumerate(array):
        shrunk = Image.fromarray(image).resize(small, Resampling.BOX)
        out[index] = np.asarray(shrunk.resize((width, height), Resampling.NEAREST))
    return out


#: ``{name: function(images, severity, seed=0)}`` for every corruption of this module.
CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "brightness": brightness,
    "jpeg": jpeg,
    "pixelate": pixelate,
}


def corrupt(images, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply the corruption ``name`` (a key of :data:`CORRUPTIONS`) at ``severity`` 1..5.

    ``images``: uint8 ``(N, H, W, 3)``; returns new uint8 images of the same shape, the same for
    the same ``seed`` (which only ``gaussian_noise`` uses). The input is not modified.

    Raises:
        ValueError: an unknown ``name``; images not uint8 ``(N, H, W, 3)`` or empty; severity not
            an integer 1..5.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[name](images, severity, seed=seed)


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------

def softmax(logits, axis: int = -1) -> np.ndarray:
    """Probabilities from logits: ``exp(x - max) / sum(exp(x - max))`` along ``axis`` (float64).

    Subtracting the maximum first keeps large logits from overflowing. ``logits``: a real array of
    any shape with at least one dimension. Raises ``ValueError`` for non-numeric, empty, or
    NaN/inf logits.
    """
    array = np.asarray(logits)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"logits must be real numbers, got dtype {array.dtype}")
    if array.ndim == 0 or array.size == 0:
        raise ValueError(f"logits must be a non-empty array, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("logits contain NaN or infinite values")
    exps = np.exp(array - array.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def _confidence_and_correct(probabilities, labels):
    array = np.asarray(probabilities)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (N, C) with C >= 2 classes, got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("probabilities is empty")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"probabilities must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("probabilities contain NaN or infinite values")
    if array.min() < -1e-6 or not np.allclose(array.sum(axis=1), 1.0, rtol=0.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative with rows summing to 1; "
                         "for logits, pass robustness.softmax(logits)")
    label_array = np.asarray(labels)
    if label_array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array (N,), got shape {label_array.shape}")
    if len(label_array) != len(array):
        raise ValueError(f"probabilities has {len(array)} rows but labels has {len(label_array)} entries")
    if not np.issubdtype(label_array.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {label_array.dtype}")
    if label_array.min() < 0 or label_array.max() >= array.shape[1]:
        raise ValueError(f"labels must lie in 0..{array.shape[1] - 1}, found {label_array.min()}.."
                         f"{label_array.max()}")
    confidence = np.clip(array.max(axis=1), 0.0, 1.0)
    correct = (array.argmax(axis=1) == label_array).astype(np.float64)
    return confidence, correct


def reliability_diagram_data(probabilities, labels, bins: int = 15) -> dict:
    """Per-bin mean confidence, accuracy and count: the numbers behind a reliability diagram.

    Confidence is each row's largest probability, the prediction its argmax. Bin ``b`` holds the
    confidences in ``(edges[b], edges[b + 1]]`` of the equal-width edges ``0, 1/bins, ..., 1``
    (bin 0 also takes a confidence of exactly 0).

    Args:
        probabilities: real array ``(N, C)``, ``C >= 2``, non-negative rows summing to 1 (within
            1e-3); convert logits with :func:`softmax` first.
        labels: integer array ``(N,)`` of true classes in ``0..C-1``.
        bins: number of equal-width bins.

    Returns:
        ``{"edges": float64 (bins + 1,), "confidence": float64 (bins,), "accuracy": float64
        (bins,), "count": int64 (bins,), "ece": float}``; confidence and accuracy are NaN for empty
        bins, and ``ece`` is :func:`expected_calibration_error` of the same input.

    Raises:
        ValueError: probabilities not ``(N, C)``, empty, NaN/inf, negative or rows not summing
            to 1; labels not 1-D integers in range or of another length; bins not a positive
            integer.
    """
    bins = _check_bins(bins)
    confidence, correct = _confidence_and_correct(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted on the inner edges: the number of inner edges strictly below the confidence
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, minlength=bins).astype(np.int64)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, confidence_sum / count, np.nan)
        accuracy = np.where(count > 0, correct_sum / count, np.nan)
    ece = float(np.sum(np.abs(correct_sum - confidence_sum)) / len(confidence))
    return {"edges": edges, "confidence": mean_confidence, "accuracy": accuracy, "count": count, "ece": ece}


def expected_calibration_error(probabilities, labels, bins: int = 15) -> float:
    """Expected calibration error: ``sum_b (n_b / N) |accuracy_b - confidence_b|``, a float in [0, 1].

    Over ``bins`` equal-width confidence bins (see :func:`reliability_diagram_data` for the bins
    and the checks); ``n_b`` is the number of predictions in bin ``b``, and empty bins add 0. It
    is 0 when in every bin the fraction of correct predictions equals their mean confidence.
    Needs probabilities ``(N, C)``; pass ``softmax(logits)`` for logits.

    Raises:
        ValueError: as :func:`reliability_diagram_data`.
    """
    return reliability_diagram_data(probabilities, labels, bins)["ece"]


# --------------------------------------------------------------------------------------------------
# A classifier under every corruption
# --------------------------------------------------------------------------------------------------

def evaluate_under_corruptions(logits_fn, images, labels, corruptions=None, severities=(1, 3, 5),
                               seed: int = 0, bins: int = 15) -> list[dict]:
    """Accuracy and calibration of a classifier on clean and corrupted copies of ``images``.

    Args:
        logits_fn: callable, uint8 images ``(N, H, W, 3)`` -> logits ``(N, C)`` (e.g. a run's
            ``RunResult.logits``).
        images: uint8 ``(N, H, W, 3)``; labels: integer ``(N,)``.
        corruptions: names from :data:`CORRUPTIONS` (default: all six, in that table's order).
        severities: integers 1..5.
        seed: passed to :func:`corrupt` (only ``gaussian_noise`` draws).
        bins: confidence bins of the ECE.

    Returns:
        One row per evaluation, the clean images first: ``{"corruption": "clean" or a name,
        "severity": 0 for clean, "accuracy", "ece", "mean_confidence"}``.

    Raises:
        ValueError: an unknown corruption, a bad severity, images or labels as :func:`corrupt` and
            :func:`expected_calibration_error` refuse them, or logits of the wrong shape.
    """
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    for name in names:
        if name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}")
    severities = list(severities)
    for severity in severities:
        _parameter(names[0] if names else "jpeg", severity)  # the severity check
    images = _check_images(images)
    labels = np.asarray(labels)

    def row(name, severity, batch):
        logits = np.asarray(logits_fn(batch))
        if logits.ndim != 2 or len(logits) != len(batch):
            raise ValueError(f"logits_fn must return logits (N, C) for N images; got shape {logits.shape} "
                             f"for {len(batch)} images")
        probabilities = softmax(logits)
        data = reliability_diagram_data(probabilities, labels, bins)
        return {"corruption": name, "severity": severity,
                "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
                "ece": data["ece"], "mean_confidence": float(probabilities.max(axis=1).mean())}

    rows = [row("clean", 0, images)]
    for name in names:
        for severity in severities:
            rows.append(row(name, severity, corrupt(images, name, severity, seed=seed)))
    return rows
