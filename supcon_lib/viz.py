"""Figures: arrays in, matplotlib figures out, and one ``save_fig`` that files them.

Every function returns the ``matplotlib.figure.Figure`` it drew, with a title, axis labels and
legend a reader can follow without the code. ``save_fig(fig, name)`` writes ``figures/<name>.png``
(see ``supcon_lib.paths.figures_dir``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "plot_ablation",
    "plot_accuracy_against_budget",
    "plot_class_similarities",
    "plot_class_similarity",
    "plot_confusion_matrix",
    "plot_corruption_accuracy",
    "plot_geometry_history",
    "plot_image_grid",
    "plot_label_efficiency",
    "plot_neighbours",
    "plot_reliability_diagram",
    "plot_spectrum",
    "plot_training_curves",
    "plot_tsne",
    "plot_two_phase_curves",
    "plot_views_grid",
    "save_fig",
]


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def save_fig(fig, name, dpi=120):
    """Save ``fig`` as ``<paths.figures_dir()>/<name>.png`` and return that ``Path``. Raises
    ``ValueError`` for an empty name or one with a folder in it."""
    from supcon_lib import paths

    if not name or "/" in name or "\\" in name:
        raise ValueError(f"figure name must be a plain file name like '01_views', found {name!r}")
    path = paths.figures_dir() / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _as_display(images):
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(images, 0.0, 1.0)


def plot_image_grid(images, labels, class_names, per_class=8, title="One row per class", seed=0):
    """``per_class`` random images of every class, one row per class.

    ``images``: (N, H, W, 3) uint8 or floats in [0, 1]; ``labels``: int (N,) indexing
    ``class_names``. Raises ``ValueError`` when their lengths differ.
    """
    plt = _pyplot()
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    num_classes = len(class_names)
    fig, axes = plt.subplots(num_classes, per_class, figsize=(per_class * 0.9, num_classes * 0.95))
    axes = np.asarray(axes).reshape(num_classes, per_class)
    for row, name in enumerate(class_names):
        members = np.flatnonzero(labels == row)
        chosen = rng.choice(members, min(per_class, len(members)), replace=False) if len(members) else []
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([]), ax.set_yticks([])
            if col < len(chosen):
                ax.imshow(_as_display(images[chosen[col]]))
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return fig


def plot_views_grid(images, views, row_labels=None, title="Original and augmented views"):
    """Each row: an original image, then its views.

    ``images``: (N, H, W, 3) uint8 or [0, 1] floats; ``views``: (N, V, H, W, 3) in [0, 1]
    (``supcon_lib.augment.to_display`` converts a pipeline's output). Raises ``ValueError`` for
    views of another shape.
    """
    plt = _pyplot()
    images, views = np.asarray(images), np.asarray(views)
    if views.ndim != 5 or len(views) != len(images):
        raise ValueError(f"views must have shape (N, V, H, W, C) with N = {len(images)}, found {views.shape}")
    rows, num_views = views.shape[:2]
    fig, axes = plt.subplots(rows, num_views + 1, figsize=((num_views + 1) * 1.1, rows * 1.15))
    axes = np.asarray(axes).reshape(rows, num_views + 1)
    for row in range(rows):
        panels = [images[row]] + [views[row, v] for v in range(num_views)]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(_as_display(panel))
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if col == 0 else f"view {col}", fontsize=9)
        if row_labels is not None:
            axes[row, 0].set_ylabel(row_labels[row], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return fig


def plot_training_curves(histories, metrics=("loss",), title="Training curves"):
    """Curves of ``metrics`` per epoch for one or several runs.

    ``histories``: ``{run_name: {metric: [values per epoch]}}`` (a Keras ``History.history``).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        drawn = False
        for run_name, history in histories.items():
            for key in (metric, f"val_{metric}"):
                values = history.get(key)
                if values:
                    style = "--" if key.startswith("val_") else "-"
                    ax.plot(np.arange(1, len(values) + 1), values, style, marker=".", label=f"{run_name} {key}")
                    drawn = True
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        if drawn:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_tsne(points_by_method, labels, class_names, title="t-SNE of encoder embeddings"):
    """Side-by-side 2-D scatter plots, one per method, on the same points coloured by class.

    ``points_by_method``: ``{panel title: (N, 2) array}``; ``labels``: int (N,) shared by all
    panels. Raises ``ValueError`` for points of another shape.
    """
    plt = _pyplot()
    labels = np.asarray(labels)
    panels = list(points_by_method.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax, (panel_title, points) in zip(axes[0], panels):
        points = np.asarray(points)
        if points.shape != (len(labels), 2):
            raise ValueError(f"{panel_title}: points must have shape ({len(labels)}, 2), found {points.shape}")
        for class_id, name in enumerate(class_names):
            mask = labels == class_id
            ax.scatter(points[mask, 0], points[mask, 1], s=4, color=cmap(class_id), label=name, alpha=0.7)
        ax.set_title(panel_title)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, -1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _text_colour(rgba):
    """``"black"`` or ``"white"``, whichever contrasts more with the background colour ``rgba``.

    Uses the relative luminance of sRGB colours (WCAG 2): black text has the higher contrast
    ratio exactly when the luminance exceeds 0.179.
    """
    channels = np.asarray(rgba, dtype=float)[:3]
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return "black" if float(linear @ [0.2126, 0.7152, 0.0722]) > 0.179 else "white"


def _draw_matrix(ax, matrix, class_names, fmt, cmap, xlabel, ylabel, vmin=None, vmax=None):
    """A labelled heatmap of a (C, C) matrix on ``ax``, each cell printed in a readable colour."""
    matrix = np.asarray(matrix)
    size = len(class_names)
    if matrix.shape != (size, size):
        raise ValueError(f"matrix must have shape ({size}, {size}), found {matrix.shape}")
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(size), class_names, rotation=45, ha="right")
    ax.set_yticks(range(size), class_names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for i in range(size):
        for j in range(size):
            value = matrix[i, j]
            if np.isfinite(value):
                ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                        color=_text_colour(image.cmap(image.norm(value))))
            else:
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="black")
    return image


def _matrix_plot(matrix, class_names, title, colorbar_label, fmt, cmap, xlabel, ylabel, vmin=None, vmax=None):
    plt = _pyplot()
    size = len(class_names)
    fig, ax = plt.subplots(figsize=(0.55 * size + 2.5, 0.55 * size + 1.8))
    image = _draw_matrix(ax, matrix, class_names, fmt, cmap, xlabel, ylabel, vmin, vmax)
    fig.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix, class_names, title="Confusion matrix (test set)"):
    """A confusion matrix with counts: rows are true classes, columns predicted classes.
    ``matrix``: (C, C) ints with C = ``len(class_names)``, else ``ValueError``."""
    return _matrix_plot(matrix, class_names, title, "images", "d", "Blues", "predicted class", "true class")


def plot_class_similarity(matrix, class_names, title="Mean cosine similarity between classes", vmin=None, vmax=None):
    """A class-by-class heatmap of mean cosine similarity between embeddings.

    The colours span ``vmin .. vmax``, by default the matrix's own range (the similarities of
    ReLU features are all positive and often crowd into a narrow band). ``matrix``: (C, C) floats
    (NaN shown as n/a), else ``ValueError``.
    """
    return _matrix_plot(matrix, class_names, title, "mean cosine similarity", ".2f", "viridis",
                        "class", "class", vmin=vmin, vmax=vmax)


def plot_class_similarities(matrices, class_names, title="Mean cosine similarity between classes"):
    """Class-similarity heatmaps side by side, on one colour scale so that they compare.

    ``matrices``: ``{panel title: (C, C) array}``. The shared scale spans the smallest to the
    largest finite entry over all panels. Raises ``ValueError`` for no panels or a matrix of
    another shape.
    """
    plt = _pyplot()
    panels = list(matrices.items())
    if not panels:
        raise ValueError("matrices is empty: pass at least one {panel title: matrix}")
    values = np.concatenate([np.asarray(matrix, dtype=float).ravel() for _, matrix in panels])
    values = values[np.isfinite(values)]
    vmin, vmax = (float(values.min()), float(values.max())) if len(values) else (None, None)
    size = len(class_names)
    fig, axes = plt.subplots(1, len(panels), figsize=((0.55 * size + 1.8) * len(panels) + 1.2, 0.55 * size + 2.0),
                             squeeze=False, layout="constrained")
    for ax, (panel_title, matrix) in zip(axes[0], panels):
        image = _draw_matrix(ax, matrix, class_names, ".2f", "viridis", "class", "class", vmin, vmax)
        ax.set_title(panel_title)
    fig.colorbar(image, ax=list(axes[0]), label="mean cosine similarity (shared scale)", shrink=0.85)
    fig.suptitle(title)
    return fig


def plot_two_phase_curves(pretrain_history, probe_history, reference_lines=None,
                          title="Two-phase training curves", pretrain_ylabel="contrastive loss"):
    """Phase 1's loss, and phase 2's (linear probe) loss and accuracy, each on its own axes.

    ``pretrain_history`` and ``probe_history``: ``{metric: [values per epoch]}``;
    ``reference_lines``: ``{label: value}`` drawn as horizontal lines on the phase-1 panel
    (e.g. where the loss starts and its floor). Raises ``ValueError`` when ``pretrain_history``
    has no ``"loss"``.
    """
    plt = _pyplot()
    pretrain_loss = pretrain_history.get("loss")
    if not pretrain_loss:
        raise ValueError("pretrain_history has no 'loss' values")
    fig, axes = plt.subplots(1, 3, figsize=(14.0, 3.6))
    epochs = np.arange(1, len(pretrain_loss) + 1)
    axes[0].plot(epochs, pretrain_loss, marker=".", color="C0", label="phase 1, mean per epoch")
    for (label, value), style in zip((reference_lines or {}).items(), ("--", ":", "-.", (0, (1, 3)))):
        axes[0].axhline(value, color="gray", linestyle=style, label=f"{label} = {value:.3f}")
    axes[0].set_title("phase 1: pretraining")
    axes[0].set_ylabel(pretrain_ylabel)
    for ax, metric, ylabel in ((axes[1], "loss", "cross-entropy"), (axes[2], "accuracy", "accuracy")):
        values = probe_history.get(metric) or []
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", color="C1", label=f"linear probe {metric}")
        ax.set_title(f"phase 2: linear probe, {metric} (training features)")
        ax.set_ylabel(ylabel)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_neighbours(query_images, neighbour_images, query_titles, neighbour_titles,
                    title="Nearest neighbours in embedding space"):
    """Each row: a query image, then its nearest neighbours (titles give their classes).

    ``query_images``: (Q, H, W, 3); ``neighbour_images``: (Q, k, H, W, 3), uint8 or [0, 1] floats;
    ``query_titles``: Q strings; ``neighbour_titles``: Q lists of k strings.
    """
    plt = _pyplot()
    neighbour_images = np.asarray(neighbour_images)
    rows, k = neighbour_images.shape[:2]
    fig, axes = plt.subplots(rows, k + 1, figsize=((k + 1) * 1.2, rows * 1.35))
    axes = np.asarray(axes).reshape(rows, k + 1)
    for row in range(rows):
        axes[row, 0].imshow(_as_display(query_images[row]))
        axes[row, 0].set_title(query_titles[row], fontsize=7, color="crimson")
        for col in range(k):
            axes[row, col + 1].imshow(_as_display(neighbour_images[row, col]))
            axes[row, col + 1].set_title(neighbour_titles[row][col], fontsize=7)
        for ax in axes[row]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy_against_budget(cells, metrics=(("test_accuracy", "test accuracy (linear probe for two-phase SupCon)"),
                                                 ("knn_accuracy", "kNN accuracy (k = 20) on encoder features")),
                                 title="Accuracy against wall-clock budget"):
    """One line per recipe: accuracy (± one standard error) against the run's total seconds.

    ``cells``: dicts with ``recipe``, ``run_seconds`` and, for each metric, ``<metric>`` and
    ``<metric>_se`` (what ``budget.run_at_budget`` returns, plus the recipe name). Several seeds
    of one (recipe, budget) are drawn as their mean, with their spread as the error bar when it
    exceeds the standard error. Raises ``ValueError`` when ``cells`` is empty.
    """
    plt = _pyplot()
    cells = list(cells)
    if not cells:
        raise ValueError("no cells to plot")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), sharey=True, squeeze=False)
    recipes = list(dict.fromkeys(c["recipe"] for c in cells))
    for ax, (metric, label) in zip(axes[0], metrics):
        for index, recipe in enumerate(recipes):
            budgets = sorted({c["budget_seconds"] for c in cells if c["recipe"] == recipe})
            xs, ys, errors = [], [], []
            for budget in budgets:
                group = [c for c in cells if c["recipe"] == recipe and c["budget_seconds"] == budget]
                values = np.array([c[metric] for c in group])
                xs.append(np.mean([c["run_seconds"] for c in group]))
                ys.append(values.mean())
                spread = values.std(ddof=1) if len(values) > 1 else 0.0
                errors.append(max(spread, np.mean([c[f"{metric}_se"] for c in group])))
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, color=f"C{index}", label=recipe)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("seconds per run (training + evaluation)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy on held-out images")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reliability_diagram(bin_data, title="Reliability diagram"):
    """Accuracy against confidence per confidence bin, with the diagonal of perfect calibration.

    ``bin_data``: what ``supcon_lib.robustness.reliability_diagram_data`` returns (a dict with
    ``edges`` (B + 1,), ``confidence``, ``accuracy`` and ``count`` (B,), optionally ``ece``), or
    ``{panel title: such a dict}`` for panels side by side (e.g. one per recipe). Each panel shows
    the accuracy of every non-empty bin as a bar, the gap to the bin's mean confidence in red
    (below the diagonal: over-confident), and under it the number of predictions per bin. Raises
    ``ValueError`` for no panels or a dict without those keys.
    """
    plt = _pyplot()
    keys = ("edges", "confidence", "accuracy", "count")
    panels = [("", bin_data)] if isinstance(bin_data, dict) and "count" in bin_data else list(bin_data.items())
    if not panels:
        raise ValueError("bin_data is empty: pass reliability_diagram_data(...) or {panel title: that}")
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 5.2), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})
    for column, (panel_title, data) in enumerate(panels):
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"bin data {panel_title!r} lacks {missing}; use robustness.reliability_diagram_data")
        edges = np.asarray(data["edges"], dtype=float)
        count = np.asarray(data["count"])
        accuracy = np.asarray(data["accuracy"], dtype=float)
        confidence = np.asarray(data["confidence"], dtype=float)
        if not (len(edges) == len(count) + 1 == len(accuracy) + 1 == len(confidence) + 1):
            raise ValueError(f"bin data {panel_title!r}: edges must have one entry more than the per-bin arrays")
        left, width = edges[:-1], np.diff(edges)
        used = count > 0
        ax, counts_ax = axes[0, column], axes[1, column]
        ax.bar(left[used], accuracy[used], width=width[used], align="edge", color="C0", edgecolor="black",
               linewidth=0.5, label="accuracy")
        ax.bar(left[used], (confidence - accuracy)[used], bottom=accuracy[used], width=width[used], align="edge",
               fill=False, edgecolor="C3", hatch="//", linewidth=0.8, label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy in bin")
        name = panel_title or "predictions"
        ax.set_title(f"{name}: ECE = {data['ece']:.3f}" if "ece" in data else name, fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
        counts_ax.bar(left, count, width=width, align="edge", color="gray", edgecolor="black", linewidth=0.5)
        counts_ax.set_xlabel("confidence (largest class probability)")
        counts_ax.set_ylabel("predictions")
        counts_ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_spectrum(singular_values_by_name, title="Singular-value spectrum of the features"):
    """Singular-value spectra of several feature sets, with their effective ranks.

    ``singular_values_by_name``: ``{label: (K,) non-negative singular values}`` (e.g. from
    ``supcon_lib.geometry.singular_values`` for features before and after the projection head).
    Left: each ``s_k / sum(s)`` against ``k`` on a log scale (shares below 1e-10, zeros up to
    rounding, left out), the distribution whose entropy gives the effective rank shown in the
    legend; right: the cumulative share of variance ``sum_{j <= k} s_j^2 / sum(s^2)``. Raises ``ValueError`` for no spectra or one that
    ``geometry.effective_rank`` rejects (empty, negative, NaN or all zero).
    """
    from supcon_lib import geometry

    plt = _pyplot()
    spectra = list(singular_values_by_name.items())
    if not spectra:
        raise ValueError("singular_values_by_name is empty: pass {label: singular values}")
    fig, (share_ax, cumulative_ax) = plt.subplots(1, 2, figsize=(11.0, 3.8))
    for index, (name, values) in enumerate(spectra):
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"{name}: singular values must be 1-D, found shape {values.shape}")
        rank = geometry.effective_rank(values)
        values = np.sort(values)[::-1]
        ks = np.arange(1, len(values) + 1)
        share = values / values.sum()
        positive = share > 1e-10  # zeros, and rounding noise of zeros, have no place on a log scale
        share_ax.plot(ks[positive], share[positive], marker=".", color=f"C{index}",
                      label=f"{name} (effective rank {rank:.1f})")
        cumulative_ax.plot(ks, np.cumsum(values ** 2) / np.sum(values ** 2), marker=".", color=f"C{index}",
                           label=name)
    share_ax.set_yscale("log")
    share_ax.set_xlabel("k (singular values, largest first)")
    share_ax.set_ylabel("s_k / sum(s)")
    share_ax.set_title("normalised spectrum")
    cumulative_ax.set_xlabel("k")
    cumulative_ax.set_ylabel("share of variance in the first k directions")
    cumulative_ax.set_ylim(0, 1.02)
    cumulative_ax.set_title("cumulative variance")
    for ax in (share_ax, cumulative_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_geometry_history(histories, title="Alignment and uniformity during training"):
    """Alignment and uniformity of held-out embeddings, per epoch, for several runs side by side.

    ``histories``: ``{label: history}``, each a run's history dict (``{metric: [value per
    epoch]}``) holding the keys that :class:`supcon_lib.callbacks.GeometryMonitor` records
    (``feature_alignment``, ``feature_uniformity``, and ``projection_*`` where the run had a
    projection head). Left: alignment (smaller: positives closer); right: uniformity (more
    negative: points spread more evenly). Solid lines are encoder features, dashed lines
    projections. Raises ``ValueError`` when no history holds these keys.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.8))
    drawn = 0
    for index, (label, history) in enumerate(histories.items()):
        for space, style in (("feature", "-"), ("projection", "--")):
            for ax, measure in zip(axes, ("alignment", "uniformity")):
                values = history.get(f"{space}_{measure}")
                if values:
                    ax.plot(np.arange(1, len(values) + 1), values, style, marker=".", color=f"C{index}",
                            label=f"{label}, {'encoder features' if space == 'feature' else 'projections'}")
                    drawn += 1
    if not drawn:
        raise ValueError("no history holds feature_alignment / feature_uniformity: train with the "
                         "geometry monitor on (RunConfig.monitor_geometry)")
    axes[0].set_ylabel("alignment: mean ||z_i - z_j||^2, same class")
    axes[0].set_title("alignment (lower: classes tighter)")
    axes[1].set_ylabel("uniformity: log mean exp(-2 ||z_i - z_j||^2)")
    axes[1].set_title("uniformity (lower: spread more evenly)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_label_efficiency(rows_by_name, title="Accuracy with a fraction of the training labels"):
    """Linear-probe and kNN test accuracy against the fraction of labelled training images.

    ``rows_by_name``: ``{label: rows}``, rows as :func:`supcon_lib.probes.label_efficiency`
    returns them. The x axis is logarithmic, each point annotated with the number of labels
    used. Raises ``ValueError`` for no rows.
    """
    plt = _pyplot()
    if not rows_by_name or not any(rows_by_name.values()):
        raise ValueError("rows_by_name is empty: pass {label: probes.label_efficiency(...)}")
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.8), sharey=True)
    for index, (label, rows) in enumerate(rows_by_name.items()):
        fractions = [row["fraction"] for row in rows]
        for ax, key in zip(axes, ("linear_accuracy", "knn_accuracy")):
            ax.plot(fractions, [row[key] for row in rows], marker="o", color=f"C{index}", label=label)
            if index == 0:
                for row in rows:
                    ax.annotate(f"{row['labels']} labels", (row["fraction"], row[key]), fontsize=7,
                                textcoords="offset points", xytext=(4, -10))
    for ax, name in zip(axes, ("linear probe", "kNN")):
        ax.set_xscale("log")
        ax.set_xlabel("fraction of training labels used")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_corruption_accuracy(rows_by_name, title="Accuracy under corruptions"):
    """Test accuracy against corruption severity, one panel per corruption, runs side by side.

    ``rows_by_name``: ``{label: rows}``, rows as
    :func:`supcon_lib.robustness.evaluate_under_corruptions` returns them (the clean row is drawn
    at severity 0 of every panel). Raises ``ValueError`` for no rows or no corrupted rows.
    """
    plt = _pyplot()
    names = []
    for rows in rows_by_name.values():
        for row in rows:
            if row["corruption"] != "clean" and row["corruption"] not in names:
                names.append(row["corruption"])
    if not names:
        raise ValueError("no corrupted rows: pass {label: robustness.evaluate_under_corruptions(...)}")
    columns = min(3, len(names))
    rows_count = -(-len(names) // columns)
    fig, axes = plt.subplots(rows_count, columns, figsize=(3.6 * columns, 2.8 * rows_count),
                             sharey=True, squeeze=False)
    for panel, name in enumerate(names):
        ax = axes.flat[panel]
        for index, (label, rows) in enumerate(rows_by_name.items()):
            points = [(r["severity"], r["accuracy"]) for r in rows if r["corruption"] in ("clean", name)]
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=f"C{index}", label=label)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("severity (0: clean)")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ablation(rows_by_setting, metrics=(("probe", "linear probe accuracy"), ("knn", "kNN accuracy")),
                  title="One setting changed at a time"):
    """Results of one-at-a-time ablations: one row of panels per changed setting, one column per metric.

    ``rows_by_setting``: ``{setting: rows}``, each row a dict holding ``setting`` (the value it
    was run with) and every key of ``metrics``. ``metrics``: ``(key, axis label)`` pairs. The x
    axes are logarithmic (temperatures and batch sizes are varied by factors). Raises
    ``ValueError`` for no rows, or a row without the setting or a metric.
    """
    plt = _pyplot()
    groups = [(setting, rows) for setting, rows in rows_by_setting.items() if rows]
    if not groups or not metrics:
        raise ValueError("nothing to draw: pass {setting: rows} and at least one metric")
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(3.3 * len(metrics), 2.8 * len(groups)),
                             squeeze=False)
    for row_index, (setting, rows) in enumerate(groups):
        for column, (key, label) in enumerate(metrics):
            missing = [r for r in rows if setting not in r or key not in r]
            if missing:
                raise ValueError(f"a row of {setting!r} lacks {setting!r} or {key!r}: {missing[0]}")
            points = sorted((r[setting], r[key]) for r in rows)
            ax = axes[row_index, column]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=f"C{column}")
            ax.set_xscale("log")
            ax.set_xticks([p[0] for p in points])
            ax.set_xticklabels([f"{p[0]:g}" for p in points])
            ax.minorticks_off()
            ax.set_xlabel(setting.replace("_", " "))
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
