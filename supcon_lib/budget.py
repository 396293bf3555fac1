"""Compute-matched comparisons: train a recipe for a wall-clock budget, and report what it reached.

Two recipes are compared fairly when each gets the same resources and one thing changes. Here the
resource is wall-clock time on one machine: a recipe whose step costs twice as much gets half the
steps. :func:`run_at_budget` measures a recipe's throughput, plans its learning-rate schedule for
the epochs that fit into the budget (so that every run ends its schedule, as a run planned for
that length would), stops training after the step that ends past the budget
(:class:`WallClockBudget`), then evaluates. Only the first ``fit`` of a run (the training of the
encoder) is budgeted; a SupCon run's linear probe on stored features is cheap and reported in the
run's total seconds.

Used by ``benchmarks/recipe_study.py`` (the study at 1-10 minute budgets on 2 CPU cores) and by
notebook 07 (a small version computed live).
"""

from __future__ import annotations

import math
import tempfile
import time

import keras
import numpy as np

from supcon_lib import input_pipeline, recipe_models, run_config, runtime, training

__all__ = ["WallClockBudget", "difference", "measure_throughput", "plan_epochs", "run_at_budget", "standard_error",
           "study_results"]


class WallClockBudget(keras.callbacks.Callback):
    """Stops the first ``fit`` it sees after the step that ends past ``seconds``; later fits
    (a SupCon run's probe) run untouched. After training: ``steps`` taken, ``used`` seconds."""

    def __init__(self, seconds):
        super().__init__()
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self.seconds, self.steps, self.used, self.finished = float(seconds), 0, 0.0, False

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.finished:
            return
        self.steps += 1
        self.used = time.perf_counter() - self.started
        if self.used >= self.seconds:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.finished = True


def measure_throughput(config, arrays, steps=10, warmup=2):
    """Training images per second of ``config``'s recipe: the median over ``steps`` steps after
    ``warmup`` steps (which include tracing). An image counts once, whatever its number of views.
    Measure on an idle machine: a busy one gives a low value, and runs planned from it end their
    schedule before their budget."""
    (x_train, y_train), _, class_names = arrays
    keras.utils.set_random_seed(config.seed)
    batch = min(config.batch_size, len(x_train))
    model, _, _ = recipe_models.build_compiled_model(config, x_train, len(class_names), max(1, len(x_train) // batch),
                                                     runtime.select_jit(config.jit_compile))
    inputs = (x_train, y_train) if config.queue_size else x_train
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.started)

    epochs = -(-(warmup + steps) // max(1, len(x_train) // batch))
    model.fit(input_pipeline.make_dataset(inputs, y_train, batch, config.seed, 0, epochs), epochs=1,
              steps_per_epoch=warmup + steps, verbose=0, callbacks=[Timer()], shuffle=False)
    keras.backend.clear_session()
    return batch / float(np.median(times[warmup:]))


def plan_epochs(budget_seconds, images_per_second, num_images):
    """Epochs (at least 1) that ``images_per_second`` fits into ``budget_seconds``, rounded up:
    the schedule a budgeted run is planned for."""
    return max(1, math.ceil(budget_seconds * images_per_second / num_images))


def standard_error(accuracy, n):
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` images."""
    if n < 1 or not 0 <= accuracy <= 1:
        raise ValueError(f"need 0 <= accuracy <= 1 and n >= 1, got {accuracy!r} and {n!r}")
    return math.sqrt(accuracy * (1.0 - accuracy) / n)


def run_at_budget(config, budget_seconds, arrays, images_per_second=None, run_dir=None):
    """Train ``config`` (its ``epochs`` replaced by the plan) for ``budget_seconds``; returns a
    dict: budget, planned epochs, steps taken, images through the encoder (views counted),
    training and total seconds, test and kNN accuracy with their standard errors.

    ``images_per_second`` defaults to :func:`measure_throughput`; ``run_dir`` to a temporary
    folder (deleted afterwards).
    """
    (x_train, _), (x_test, _), _ = arrays
    if images_per_second is None:
        images_per_second = measure_throughput(config, arrays)
    epochs = plan_epochs(budget_seconds, images_per_second, len(x_train))
    config = run_config.RunConfig(**{**config.to_dict(), "epochs": epochs}).validate()
    stop = WallClockBudget(budget_seconds)
    with tempfile.TemporaryDirectory() as folder:
        metrics = training.run(config, run_dir or folder, arrays=arrays, callbacks=[stop]).metrics
    keras.backend.clear_session()
    views = config.views if config.method != "ce" else 1
    n = len(x_test)
    return {"budget_seconds": budget_seconds, "seed": config.seed, "planned_epochs": epochs,
            "images_per_second": images_per_second, "steps": stop.steps,
            "images_through_encoder": stop.steps * min(config.batch_size, len(x_train)) * views,
            "train_seconds": stop.used, "run_seconds": metrics["train_seconds"],
            "test_accuracy": metrics["test_accuracy"], "knn_accuracy": metrics["knn_accuracy"],
            "test_accuracy_se": standard_error(metrics["test_accuracy"], n),
            "knn_accuracy_se": standard_error(metrics["knn_accuracy"], n), "test_images": n}


def study_results(path=None):
    """The results of ``benchmarks/recipe_study.py`` (a dict with ``cells``, ``date``, ``data``...).

    ``path`` defaults to ``benchmarks/results/recipe_study.json`` of the checkout; outside a checkout
    (an installed package, Colab) the file of the release the library belongs to is downloaded
    from the repository. Raises ``FileNotFoundError`` when neither is available.
    """
    import json
    import urllib.request

    from supcon_lib import paths

    if path is None and paths.repo_root() is not None:
        path = paths.repo_root() / "benchmarks" / "results" / "recipe_study.json"
    if path is not None:
        with open(path) as handle:
            return json.load(handle)
    url = (f"https://raw.githubusercontent.com/{paths.REPOSITORY}/{paths.RELEASE_TAG}/"
           "benchmarks/results/recipe_study.json")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except OSError as exc:
        raise FileNotFoundError(f"no checkout, and {url} could not be read ({exc})") from None


def difference(cells, recipe, baseline, budget_seconds, metric="test_accuracy"):
    """``(mean of recipe - mean of baseline, its standard error)`` at one budget, over the seeds
    each has; the standard error combines both sides' (binomial, or the seeds' spread when
    larger) as independent. Raises ``ValueError`` if either side has no cell at that budget."""
    def side(name):
        group = [c for c in cells if c["recipe"] == name and c["budget_seconds"] == budget_seconds]
        if not group:
            raise ValueError(f"no {name!r} cell at {budget_seconds:g} s")
        values = np.array([c[metric] for c in group])
        se = max(float(np.mean([c[f"{metric}_se"] for c in group])) / math.sqrt(len(group)),
                 float(values.std(ddof=1) / math.sqrt(len(group))) if len(group) > 1 else 0.0)
        return float(values.mean()), se

    (mean, se), (base, base_se) = side(recipe), side(baseline)
    return mean - base, math.sqrt(se ** 2 + base_se ** 2)
