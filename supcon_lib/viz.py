"""Figures: arrays in, matplotlib figures out, and one ``save_fig`` that files them.

Every function returns the ``matplotlib.figure.Figure`` it drew, with a title, axis labels and
legend a reader can follow without the code. ``save_fig(fig, name)`` writes ``figures/<name>.png``
(see ``supcon_lib.paths.figures_dir``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "plot_class_similarity",
    "plot_confusion_matrix",
    "plot_image_grid",
    "plot_neighbours",
    "plot_training_curves",
    "plot_tsne",
    "plot_views_grid",
    "save_fig",
]


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def save_fig(fig, name, dpi=120):
    """Save ``fig`` as ``figures/<name>.png`` and return the path."""
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
    """``per_class`` random images of every class, one row per class."""
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
    (``supcon_lib.augment.to_display`` converts a pipeline's output).
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

    ``points_by_method``: ``{panel title: (N, 2) array}``; ``labels``: (N,) shared by all panels.
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


def _matrix_plot(matrix, class_names, title, colorbar_label, fmt, cmap, xlabel, ylabel, vmin=None, vmax=None):
    plt = _pyplot()
    matrix = np.asarray(matrix)
    size = len(class_names)
    if matrix.shape != (size, size):
        raise ValueError(f"matrix must have shape ({size}, {size}), found {matrix.shape}")
    fig, ax = plt.subplots(figsize=(0.55 * size + 2.5, 0.55 * size + 1.8))
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_xticks(range(size), class_names, rotation=45, ha="right")
    ax.set_yticks(range(size), class_names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    threshold = (np.nanmax(matrix) + np.nanmin(matrix)) / 2
    for i in range(size):
        for j in range(size):
            ax.text(j, i, format(matrix[i, j], fmt), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix, class_names, title="Confusion matrix (test set)"):
    """A confusion matrix with counts: rows are true classes, columns predicted classes."""
    return _matrix_plot(matrix, class_names, title, "images", "d", "Blues", "predicted class", "true class")


def plot_class_similarity(matrix, class_names, title="Mean cosine similarity between classes"):
    """A class-by-class heatmap of mean cosine similarity between embeddings."""
    return _matrix_plot(matrix, class_names, title, "mean cosine similarity", ".2f", "viridis",
                        "class", "class", vmin=-1.0, vmax=1.0)


def plot_neighbours(query_images, neighbour_images, query_titles, neighbour_titles,
                    title="Nearest neighbours in embedding space"):
    """Each row: a query image, then its nearest neighbours (titles give their classes)."""
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
