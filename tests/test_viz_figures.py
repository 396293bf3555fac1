"""supcon_lib.viz: the figures used by notebooks 05 and 06 (arrays in, figures out)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from supcon_lib import viz  # noqa: E402

CLASS_NAMES = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def cell_texts(ax):
    return {(round(text.get_position()[1]), round(text.get_position()[0])): text for text in ax.texts}


def test_text_colour_contrasts_with_the_background():
    assert viz._text_colour((1.0, 1.0, 0.0, 1.0)) == "black"  # yellow: light
    assert viz._text_colour((1.0, 1.0, 1.0)) == "black"
    assert viz._text_colour((0.0, 0.0, 0.0)) == "white"
    assert viz._text_colour((0.27, 0.0, 0.33, 1.0)) == "white"  # viridis' dark purple end
    # The crossing point: black and white have equal contrast at relative luminance 0.179.
    assert viz._text_colour((0.47, 0.47, 0.47)) == "black" and viz._text_colour((0.45, 0.45, 0.45)) == "white"


def test_class_similarity_scales_colours_to_the_data_and_picks_readable_text():
    matrix = np.array([[0.86, 0.55, 0.60], [0.55, 0.80, 0.70], [0.60, 0.70, 0.84]])
    fig = viz.plot_class_similarity(matrix, CLASS_NAMES)
    ax = fig.axes[0]
    image = ax.images[0]
    assert image.norm.vmin == pytest.approx(0.55) and image.norm.vmax == pytest.approx(0.86)
    texts = cell_texts(ax)
    assert texts[(0, 0)].get_text() == "0.86" and texts[(0, 0)].get_color() == "black"  # top of viridis: yellow
    assert texts[(0, 1)].get_color() == "white"  # bottom of viridis: dark purple
    fixed = viz.plot_class_similarity(matrix, CLASS_NAMES, vmin=-1.0, vmax=1.0)
    assert fixed.axes[0].images[0].norm.vmin == -1.0


def test_class_similarities_share_one_scale_and_show_nan_cells():
    first = np.array([[0.9, 0.2, 0.3], [0.2, 0.8, 0.1], [0.3, 0.1, np.nan]])
    second = np.full((3, 3), 0.5)
    fig = viz.plot_class_similarities({"first": first, "second": second}, CLASS_NAMES, title="which separates more?")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["first", "second"]
    for ax in panels:
        assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == pytest.approx((0.1, 0.9))
    assert cell_texts(panels[0])[(2, 2)].get_text() == "n/a"
    assert len(fig.axes) == 3  # two panels and one shared colour bar
    with pytest.raises(ValueError, match="shape"):
        viz.plot_class_similarities({"wrong": np.zeros((2, 2))}, CLASS_NAMES)
    with pytest.raises(ValueError, match="empty"):
        viz.plot_class_similarities({}, CLASS_NAMES)


def test_confusion_matrix_text_is_readable_on_dark_cells():
    matrix = np.array([[50, 0, 1], [2, 45, 3], [0, 5, 40]])
    ax = viz.plot_confusion_matrix(matrix, CLASS_NAMES).axes[0]
    texts = cell_texts(ax)
    assert texts[(0, 0)].get_color() == "white" and texts[(0, 1)].get_color() == "black"


def test_two_phase_curves_put_each_loss_on_its_own_axes_with_reference_lines():
    pretrain = {"loss": [6.2, 6.1, 6.0], "seconds": [1.0, 1.0, 1.0]}
    probe = {"loss": [1.6, 1.5], "accuracy": [0.4, 0.5]}
    fig = viz.plot_two_phase_curves(pretrain, probe, {"start": 6.24, "floor": 3.9}, title="t")
    phase1, probe_loss, probe_accuracy = fig.axes
    lines = phase1.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), pretrain["loss"])
    assert [tuple(line.get_ydata()) for line in lines[1:]] == [(6.24, 6.24), (3.9, 3.9)]
    assert [text.get_text() for text in phase1.get_legend().get_texts()][1:] == ["start = 6.240", "floor = 3.900"]
    np.testing.assert_allclose(probe_loss.get_lines()[0].get_ydata(), probe["loss"])
    np.testing.assert_allclose(probe_accuracy.get_lines()[0].get_ydata(), probe["accuracy"])
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    with pytest.raises(ValueError, match="loss"):
        viz.plot_two_phase_curves({}, probe)


def test_geometry_history_draws_each_run_and_space_with_its_values():
    histories = {"ce": {"feature_alignment": [0.5, 0.4], "feature_uniformity": [-1.0, -1.5], "loss": [2, 1]},
                 "supcon": {"feature_alignment": [0.6, 0.3, 0.2], "feature_uniformity": [-2, -3, -3.5],
                            "projection_alignment": [0.7, 0.5, 0.4], "projection_uniformity": [-1, -2, -2.5]}}
    fig = viz.plot_geometry_history(histories)
    alignment, uniformity = fig.axes[:2]
    assert len(alignment.lines) == len(uniformity.lines) == 3  # ce features, supcon features + projections
    np.testing.assert_array_equal(alignment.lines[2].get_ydata(), [0.7, 0.5, 0.4])
    assert alignment.lines[2].get_linestyle() == "--"  # projections dashed
    with pytest.raises(ValueError, match="GeometryMonitor|monitor"):
        viz.plot_geometry_history({"old run": {"loss": [1.0]}})


def test_label_efficiency_plots_both_probes_on_a_log_axis():
    rows = [{"fraction": f, "labels": int(f * 100), "linear_accuracy": a, "knn_accuracy": k, "k": 1}
            for f, a, k in ((0.01, 0.3, 0.4), (0.1, 0.6, 0.5), (1.0, 0.8, 0.7))]
    fig = viz.plot_label_efficiency({"ce": rows, "supcon": rows[::-1][::-1]})
    linear, knn = fig.axes[:2]
    assert linear.get_xscale() == "log"
    np.testing.assert_array_equal(linear.lines[0].get_ydata(), [0.3, 0.6, 0.8])
    np.testing.assert_array_equal(knn.lines[0].get_ydata(), [0.4, 0.5, 0.7])
    with pytest.raises(ValueError, match="empty"):
        viz.plot_label_efficiency({})


def test_corruption_accuracy_has_a_panel_per_corruption_starting_from_clean():
    rows = [{"corruption": "clean", "severity": 0, "accuracy": 0.9},
            {"corruption": "jpeg", "severity": 1, "accuracy": 0.8}, {"corruption": "jpeg", "severity": 5, "accuracy": 0.5},
            {"corruption": "contrast", "severity": 5, "accuracy": 0.3}]
    fig = viz.plot_corruption_accuracy({"ce": rows})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["jpeg", "contrast"]
    np.testing.assert_array_equal(visible[0].lines[0].get_xdata(), [0, 1, 5])
    np.testing.assert_array_equal(visible[0].lines[0].get_ydata(), [0.9, 0.8, 0.5])
    with pytest.raises(ValueError, match="no corrupted rows"):
        viz.plot_corruption_accuracy({"ce": rows[:1]})


def test_ablation_draws_a_row_per_setting_and_a_column_per_metric_sorted_by_value():
    rows = {"temperature": [{"temperature": 0.5, "probe": 0.4, "knn": 0.3}, {"temperature": 0.05, "probe": 0.6, "knn": 0.5}],
            "batch_size": [{"batch_size": 64, "probe": 0.5, "knn": 0.45}, {"batch_size": 32, "probe": 0.55, "knn": 0.4}]}
    fig = viz.plot_ablation(rows, metrics=(("probe", "probe"), ("knn", "kNN")))
    assert len(fig.axes) == 4
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [0.05, 0.5])
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [0.6, 0.4])
    np.testing.assert_array_equal(fig.axes[3].lines[0].get_ydata(), [0.4, 0.45])
    with pytest.raises(ValueError, match="lacks"):
        viz.plot_ablation({"temperature": [{"probe": 0.5}]}, metrics=(("probe", "probe"),))
    with pytest.raises(ValueError, match="nothing to draw"):
        viz.plot_ablation({})
