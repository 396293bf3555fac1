"""supcon_lib.geometry against reference computations written out here, loop by loop.

* alignment and uniformity against explicit double loops over pairs (Wang & Isola, 2020);
* uniformity on constructed cases (coinciding points: 0; two antipodal points: -4t, even for a t
  where exp underflows) and its seeded subsample;
* effective rank on constructed spectra (equal values: their count; one non-zero: 1; a two-value
  case worked out by hand) and on features of known rank;
* class spread on collapsed classes (within 0) and against a loop, with within + between = total;
* bad inputs raise ValueError.
"""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from supcon_lib import geometry, viz  # noqa: E402


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(23, 5)) * rng.uniform(0.5, 3.0, size=(23, 1))  # rows of varied length
    labels = rng.integers(0, 4, size=23)
    return features, labels


def unit(vector):
    return [x / math.sqrt(sum(v * v for v in vector)) for x in vector]


def distance(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


# ------------------------------------------------------------------------------------------------
# Alignment
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [2, 1, 3.5])
def test_alignment_matches_a_double_loop(data, alpha):
    features, labels = data
    z = [unit(row) for row in features.tolist()]
    total, pairs = 0.0, 0
    for i in range(len(z)):
        for j in range(len(z)):
            if i != j and labels[i] == labels[j]:
                total += distance(z[i], z[j]) ** alpha
                pairs += 1
    assert geometry.alignment(features, labels, alpha=alpha) == pytest.approx(total / pairs, rel=1e-9, abs=1e-12)


def test_alignment_without_normalising_and_with_string_labels(data):
    features, labels = data
    names = np.array(["cat", "dog", "ship", "frog"])[labels]
    assert geometry.alignment(features, names) == pytest.approx(geometry.alignment(features, labels), rel=1e-12)
    rows = features.tolist()
    total, pairs = 0.0, 0
    for i in range(len(rows)):
        for j in range(len(rows)):
            if i != j and labels[i] == labels[j]:
                total += distance(rows[i], rows[j]) ** 2
                pairs += 1
    assert geometry.alignment(features, labels, normalize=False) == pytest.approx(total / pairs, rel=1e-9)


def test_alignment_of_collapsed_classes_is_zero_and_singletons_are_skipped():
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.5], [-1.0, -1.0]])
    labels = np.array([0, 0, 1, 1, 2])  # class 2 has one point: no positive pair
    assert geometry.alignment(features, labels) == pytest.approx(0.0, abs=1e-12)
    # Two classes of two antipodal points: every positive pair is at distance 2.
    antipodal = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert geometry.alignment(antipodal, [0, 0, 1, 1]) == pytest.approx(4.0)
    assert geometry.alignment(antipodal, [0, 0, 1, 1], alpha=1) == pytest.approx(2.0)


def test_alignment_of_views_matches_a_loop(data):
    features, _ = data
    other = features + np.random.default_rng(1).normal(scale=0.3, size=features.shape)
    reference = sum(distance(unit(a), unit(b)) ** 2 for a, b in zip(features.tolist(), other.tolist())) / len(features)
    assert geometry.alignment_of_views(features, other) == pytest.approx(reference, rel=1e-9)
    assert geometry.alignment_of_views(features, 5.0 * features) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Uniformity
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [2, 0.5, 7])
def test_uniformity_matches_a_double_loop(data, t):
    features, _ = data
    z = [unit(row) for row in features.tolist()]
    terms = [math.exp(-t * distance(z[i], z[j]) ** 2) for i in range(len(z)) for j in range(i + 1, len(z))]
    reference = math.log(sum(terms) / len(terms))
    assert geometry.uniformity(features, t=t) == pytest.approx(reference, rel=1e-9)


def test_uniformity_on_constructed_cases():
    same = np.tile([[0.6, 0.8]], (5, 1)) * np.arange(1, 6)[:, None]  # one direction, different lengths
    assert geometry.uniformity(same) == pytest.approx(0.0, abs=1e-12)
    antipodal = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0]])
    assert geometry.uniformity(antipodal, t=2) == pytest.approx(-8.0)
    # exp(-4000) underflows to 0.0 in float64; the log-sum-exp does not.
    assert math.exp(-4000.0) == 0.0
    assert geometry.uniformity(antipodal, t=1000) == pytest.approx(-4000.0)
    # Square on the circle: 4 pairs at squared distance 2, 2 pairs at 4 -> log((4e^{-2t} + 2e^{-4t}) / 6).
    square = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    t = 300.0
    expected = -2 * t + math.log((4 + 2 * math.exp(-2 * t)) / 6)
    assert geometry.uniformity(square, t=t) == pytest.approx(expected, rel=1e-12)


def test_blocks_of_rows_give_the_same_result(monkeypatch, data):
    features, _ = data
    labels = np.arange(len(features)) % 2
    whole, aligned = geometry.uniformity(features), geometry.alignment(features, labels)
    monkeypatch.setattr(geometry, "_BLOCK_ENTRIES", 30)  # blocks of one to three rows
    assert geometry.uniformity(features) == pytest.approx(whole, rel=1e-12)
    assert geometry.alignment(features, labels) == pytest.approx(aligned, rel=1e-12)


def test_uniformity_subsample_is_seeded(data):
    features, _ = data
    assert geometry.uniformity(features, max_points=100) == geometry.uniformity(features)
    first = geometry.uniformity(features, max_points=10, seed=3)
    assert geometry.uniformity(features, max_points=10, seed=3) == first
    assert first != geometry.uniformity(features, max_points=10, seed=4)
    assert -4 * 2 <= first <= 0


# ------------------------------------------------------------------------------------------------
# Spectrum and effective rank
# ------------------------------------------------------------------------------------------------
def test_effective_rank_of_constructed_spectra():
    assert geometry.effective_rank(np.ones(7)) == pytest.approx(7.0)
    assert geometry.effective_rank(np.full(4, 0.3)) == pytest.approx(4.0)
    assert geometry.effective_rank(np.array([5.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)
    # s = (3, 1): p = (3/4, 1/4), H = -(3/4) ln(3/4) - (1/4) ln(1/4), exp(H) = (4/3)^(3/4) * 4^(1/4)
    assert geometry.effective_rank(np.array([3.0, 1.0])) == pytest.approx((4 / 3) ** 0.75 * 4 ** 0.25)
    assert geometry.effective_rank(np.array([1.0, 3.0, 0.0])) == pytest.approx(1.7547654, rel=1e-6)
    assert geometry.effective_rank(np.array([30.0, 10.0])) == pytest.approx(geometry.effective_rank([3, 1]))


def test_singular_values_and_effective_rank_of_constructed_features():
    rng = np.random.default_rng(0)
    left, _ = np.linalg.qr(rng.normal(size=(40, 3)))
    right, _ = np.linalg.qr(rng.normal(size=(6, 3)))
    spectrum = np.array([2.0, 5.0, 1.0])
    features = left @ np.diag(spectrum) @ right.T
    values = geometry.singular_values(features, center=False)
    assert values.shape == (6,) and values.dtype == np.float64
    np.testing.assert_allclose(values[:3], [5.0, 2.0, 1.0], rtol=1e-10)
    np.testing.assert_allclose(values[3:], 0.0, atol=1e-10)
    # Centring removes a shift common to all points.
    shifted = features + rng.normal(size=(1, 6)) * 10
    np.testing.assert_allclose(geometry.singular_values(shifted), geometry.singular_values(features), atol=1e-9)
    # Rank one: every point on one line through the mean.
    line = np.outer(rng.normal(size=30), rng.normal(size=8)) + 3.0
    assert geometry.effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert geometry.effective_rank(np.eye(5) * 2, center=False) == pytest.approx(5.0)


# ------------------------------------------------------------------------------------------------
# Class spread
# ------------------------------------------------------------------------------------------------
def test_class_spread_of_collapsed_classes():
    basis = np.eye(3)
    labels = np.repeat([0, 1, 2], 4)
    features = basis[labels] * np.arange(1, 13)[:, None]  # lengths differ; directions collapsed
    spread = geometry.class_spread(features, labels)
    assert spread.within == pytest.approx(0.0, abs=1e-12)
    # mu = (1/3, 1/3, 1/3); ||e_c - mu||^2 = (2/3)^2 + 2 (1/3)^2 = 2/3 for every class
    assert spread.between == pytest.approx(2 / 3)
    assert spread.ratio == pytest.approx(0.0, abs=1e-12)
    assert spread.total == pytest.approx(2 / 3)
    assert spread.num_classes == 3
    assert spread._asdict()["within"] == spread.within


def test_class_spread_matches_a_loop(data):
    features, labels = data
    z = [unit(row) for row in features.tolist()]
    classes = sorted(set(labels.tolist()))
    dim = len(z[0])
    means = {c: [sum(z[i][k] for i in range(len(z)) if labels[i] == c) / sum(labels == c) for k in range(dim)]
             for c in classes}
    overall = [sum(row[k] for row in z) / len(z) for k in range(dim)]
    within = sum(distance(z[i], means[labels[i]]) ** 2 for i in range(len(z))) / len(z)
    between = sum(distance(means[labels[i]], overall) ** 2 for i in range(len(z))) / len(z)
    total = sum(distance(row, overall) ** 2 for row in z) / len(z)
    spread = geometry.class_spread(features, labels)
    assert spread.within == pytest.approx(within, rel=1e-9)
    assert spread.between == pytest.approx(between, rel=1e-9)
    assert spread.total == pytest.approx(total, rel=1e-9)
    assert spread.within + spread.between == pytest.approx(spread.total, rel=1e-9)
    assert spread.ratio == pytest.approx(within / between, rel=1e-9)


def test_class_spread_when_class_means_coincide():
    features = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    spread = geometry.class_spread(features, [0, 0, 1, 1])
    assert spread.between == pytest.approx(0.0, abs=1e-12) and spread.ratio == math.inf
    same = geometry.class_spread(np.ones((4, 2)), [0, 0, 1, 1])
    assert math.isnan(same.ratio)


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda f, y: geometry.alignment(f[0], y), "2-D"),
    (lambda f, y: geometry.alignment(f, y[:-1]), "entries"),
    (lambda f, y: geometry.alignment(f, y[:, None]), "1-D"),
    (lambda f, y: geometry.alignment(f, np.arange(len(f))), "no class"),
    (lambda f, y: geometry.alignment(f, y, alpha=0), "alpha"),
    (lambda f, y: geometry.alignment(f[:1], y[:1]), "at least 2"),
    (lambda f, y: geometry.alignment(np.where(np.eye(*f.shape) > 0, np.nan, f), y), "NaN"),
    (lambda f, y: geometry.alignment(f, np.where(np.arange(len(y)) == 2, np.nan, y.astype(float))), "NaN"),
    (lambda f, y: geometry.alignment_of_views(f, f[:, :-1]), "same shape"),
    (lambda f, y: geometry.alignment_of_views(f, f * np.array([[0.0]] + [[1.0]] * (len(f) - 1))), "zeros"),
    (lambda f, y: geometry.uniformity(f[:1]), "at least 2"),
    (lambda f, y: geometry.uniformity(np.where(f > 1, np.inf, f)), "infinite"),
    (lambda f, y: geometry.uniformity(f, t=-1), "t must"),
    (lambda f, y: geometry.uniformity(f, max_points=1), "max_points"),
    (lambda f, y: geometry.uniformity(np.zeros((3, 2))), "zeros"),
    (lambda f, y: geometry.uniformity(np.array([["a", "b"], ["c", "d"]])), "real numbers"),
    (lambda f, y: geometry.singular_values(f[0]), "2-D"),
    (lambda f, y: geometry.singular_values(np.zeros((0, 3))), "at least 2"),
    (lambda f, y: geometry.effective_rank(np.array([1.0, -0.5])), "non-negative"),
    (lambda f, y: geometry.effective_rank(np.zeros(3)), "zero"),
    (lambda f, y: geometry.effective_rank(np.array([])), "empty"),
    (lambda f, y: geometry.effective_rank(np.array([1.0, np.nan])), "NaN"),
    (lambda f, y: geometry.effective_rank(np.ones((2, 2, 2))), "shape"),
    (lambda f, y: geometry.effective_rank(np.ones((4, 3))), "zero"),  # centred: all points equal
    (lambda f, y: geometry.class_spread(f, np.zeros(len(f))), "single class"),
    (lambda f, y: geometry.class_spread(f, y[1:]), "entries"),
])
def test_bad_inputs_raise_value_error(data, call, match):
    features, labels = data
    with pytest.raises(ValueError, match=match):
        call(features, labels)


# ------------------------------------------------------------------------------------------------
# The spectrum figure
# ------------------------------------------------------------------------------------------------
def test_plot_spectrum_draws_one_line_per_spectrum_with_its_effective_rank():
    fig = viz.plot_spectrum({"before head": np.array([4.0, 2.0, 1.0, 0.0]), "after head": np.ones(4)}, title="t")
    share_ax, cumulative_ax = fig.axes
    labels = [line.get_label() for line in share_ax.get_lines()]
    assert labels == ["before head (effective rank 2.6)", "after head (effective rank 4.0)"]
    np.testing.assert_allclose(cumulative_ax.get_lines()[1].get_ydata(), [0.25, 0.5, 0.75, 1.0])
    assert len(share_ax.get_lines()[0].get_xdata()) == 3  # the zero is left off the log scale
    with pytest.raises(ValueError, match="empty"):
        viz.plot_spectrum({})
    with pytest.raises(ValueError):
        viz.plot_spectrum({"bad": np.zeros(3)})
    plt.close("all")
