"""Accuracy against wall-clock budget, per recipe, on the 12,000 real CIFAR-10 images.

Every recipe trains the same encoder (the ``cpu`` profile's) from scratch for each budget: its
learning-rate schedule is planned for the epochs that its measured throughput fits into the
budget, and training stops after the step that ends past the budget (``speed.WallClockBudget``);
SupCon recipes then train their linear probe on stored features (cheap, reported in the run's
total time). Each (recipe, budget, seed) cell is one entry of the results file, written as soon
as it is done: start the study again and it skips the cells it has (resumable).

Recipes (one change at a time against ``ce``):

* ``ce``: cross-entropy, the baseline augmentation (pad-crop, flip);
* ``ce_supcon_aug``: cross-entropy with the SupCon augmentation (what the augmentation alone does);
* ``supcon_2views``: two-phase SupCon, two views per image (the paper's);
* ``supcon_1view``: two-phase SupCon, one view per image, positives from the labels only (the
  original keras-io example's choice: a step costs what a cross-entropy step costs).

Reported per cell: test accuracy (linear probe for SupCon) and kNN accuracy (k = 20) on the 2,000
held-out images, each with its binomial standard error sqrt(p (1 - p) / n); steps, images through
the encoder, training seconds and the run's total seconds.

Usage::

    python benchmarks/recipe_study.py --budgets 60 120 240            # about half an hour on 2 cores
    python benchmarks/recipe_study.py --recipes ce supcon_2views --budgets 600 --seeds 0 1

Writes ``--out``/recipe_study.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import speed  # noqa: E402
from supcon_lib import training  # noqa: E402

RECIPES = {
    "ce": dict(method="ce"),
    "ce_supcon_aug": dict(method="ce", augmentation="supcon"),
    "supcon_2views": dict(method="supcon", views=2),
    "supcon_1view": dict(method="supcon", views=1),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--budgets", nargs="+", type=float, default=[60.0, 120.0, 240.0],
                        help="seconds of training per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data-dir", help="CIFAR-10 copy (default: the cpu profile's)")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits"))
    parser.add_argument("--train-size", type=int, default=None, help="default: the cpu profile's 10,000")
    parser.add_argument("--test-size", type=int, default=None, help="default: the cpu profile's 2,000")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the cpu profile's")
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def config_for(recipe, args, seed, epochs=1):
    settings = dict(RECIPES[recipe])
    method = settings.pop("method")
    overrides = dict(dataset=args.dataset, data_dir=args.data_dir, train_size=args.train_size,
                     test_size=args.test_size, batch_size=args.batch_size, seed=seed, epochs=epochs,
                     probe_epochs=args.probe_epochs if method == "supcon" else None, verbose=0)
    for key, value in settings.items():  # the recipe's own settings, unless the command line sets them
        if overrides.get(key) is None:
            overrides[key] = value
    return training.RunConfig.from_profile("cpu", method, **overrides)


def throughput(recipe, arrays, args, steps=6):
    """Images per second of one training step of ``recipe`` (median of ``steps`` after a warm-up).

    It plans each run's schedule: measured while the machine is busy, it is too low, and the
    run ends its planned epochs before its budget (the report shows the share of the budget used).
    """
    (x_train, y_train), _, _ = arrays
    config = config_for(recipe, args, seed=0)
    keras.utils.set_random_seed(0)
    model, _, _ = training.build_compiled_model(config, x_train, 10, max(1, len(x_train) // config.batch_size),
                                                training.select_jit(config.jit_compile))
    dataset = training.make_dataset(x_train, y_train, config.batch_size, 0, 0, 1000)
    seconds = speed.time_steps(model, dataset, steps, warmup=1)
    keras.backend.clear_session()
    return config.batch_size / seconds


def run_cell(recipe, budget, seed, images_per_second, arrays, args):
    (x_train, _), (x_test, _), _ = arrays
    epochs = max(1, math.ceil(budget * images_per_second / len(x_train)))
    config = config_for(recipe, args, seed, epochs)
    stop = speed.WallClockBudget(budget)
    with tempfile.TemporaryDirectory() as folder:
        metrics = training.run(config, folder, arrays=arrays, callbacks=[stop]).metrics
    keras.backend.clear_session()
    n = len(x_test)
    return {"recipe": recipe, "budget_seconds": budget, "seed": seed, "planned_epochs": epochs,
            "steps": stop.steps, "images_through_encoder": stop.steps * config.batch_size * config.views
            if config.method == "supcon" else stop.steps * config.batch_size,
            "train_seconds": stop.used, "run_seconds": metrics["train_seconds"],
            "test_accuracy": metrics["test_accuracy"], "knn_accuracy": metrics["knn_accuracy"],
            "test_accuracy_se": standard_error(metrics["test_accuracy"], n),
            "knn_accuracy_se": standard_error(metrics["knn_accuracy"], n), "test_images": n}


def standard_error(accuracy, n):
    """Binomial standard error of an accuracy measured on ``n`` images."""
    return math.sqrt(accuracy * (1.0 - accuracy) / n)


def markdown(report):
    m = report["machine"]
    lines = [f"Measured {report['date']} on {m['cpu_count']} CPU cores ({m['processor']}), Keras {m['keras']} "
             f"({m['backend']}); data: {report['data']}; encoder {report['encoder']}, batch {report['batch_size']}. "
             "Accuracies on the held-out images, ± one binomial standard error.", "",
             "| recipe | budget (s) | seed | steps | images through encoder | budget used | run s | test accuracy "
             "| kNN accuracy |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in sorted(report["cells"], key=lambda c: (c["recipe"], c["budget_seconds"], c["seed"])):
        lines.append(f"| {c['recipe']} | {c['budget_seconds']:g} | {c['seed']} | {c['steps']} | "
                     f"{c['images_through_encoder']:,} | "
                     f"{c['train_seconds'] / c['budget_seconds'] if c['budget_seconds'] else 1:.0%} | "
                     f"{c['run_seconds']:.0f} | "
                     f"{c['test_accuracy']:.3f} ± {c['test_accuracy_se']:.3f} | "
                     f"{c['knn_accuracy']:.3f} ± {c['knn_accuracy_se']:.3f} |")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, metric, title in ((axes[0], "test_accuracy", "test accuracy (probe for SupCon)"),
                              (axes[1], "knn_accuracy", "kNN accuracy (k = 20)")):
        for index, recipe in enumerate(sorted({c["recipe"] for c in report["cells"]})):
            cells = sorted((c for c in report["cells"] if c["recipe"] == recipe), key=lambda c: c["run_seconds"])
            ax.errorbar([c["run_seconds"] for c in cells], [c[metric] for c in cells],
                        yerr=[c[f"{metric}_se"] for c in cells], marker="o", capsize=3, color=f"C{index}",
                        label=recipe)
        ax.set_title(title)
        ax.set_xlabel("wall-clock seconds of the whole run (2 CPU cores)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the held-out images")
    axes[0].legend()
    fig.suptitle(f"Accuracy against budget ({report['data']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "recipe_study.json"
    report = json.loads(results.read_text()) if results.exists() else {"cells": [], "throughput": {}}
    first = config_for(args.recipes[0], args, seed=0)
    arrays = training.load_data(first)
    report.update({"date": time.strftime("%Y-%m-%d"), "machine": speed.machine(), "encoder": first.encoder,
                   "batch_size": first.batch_size,
                   "data": f"{first.dataset}, {len(arrays[0][0])} training / {len(arrays[1][0])} held-out images"})
    done = {(c["recipe"], c["budget_seconds"], c["seed"]) for c in report["cells"]}
    for recipe in args.recipes:
        for budget in args.budgets:
            for seed in args.seeds:
                if (recipe, budget, seed) in done:
                    print(f"[{recipe}] budget {budget:g} s, seed {seed}: already done", flush=True)
                    continue
                if recipe not in report["throughput"]:
                    report["throughput"][recipe] = throughput(recipe, arrays, args)
                cell = run_cell(recipe, budget, seed, report["throughput"][recipe], arrays, args)
                report["cells"].append(cell)
                print(f"[{recipe}] budget {budget:g} s, seed {seed}: test {cell['test_accuracy']:.3f}, "
                      f"kNN {cell['knn_accuracy']:.3f}, {cell['steps']} steps", flush=True)
                speed.write_report(args.out, "recipe_study", report, markdown(report))  # after every cell
    speed.write_report(args.out, "recipe_study", report, markdown(report))
    plot(report, args.out / "recipe_study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
