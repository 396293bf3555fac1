"""Accuracy against wall-clock budget, per recipe, on the 12,000 real CIFAR-10 images.

Every recipe trains the same encoder (the ``cpu`` profile's) from scratch for each budget: its
learning-rate schedule is planned for the epochs that its measured throughput fits into the
budget, and training stops after the step that ends past the budget (``supcon_lib.budget``);
SupCon recipes then train their linear probe on stored features (cheap, reported in the run's
total time). Each (recipe, budget, seed) cell is one entry of the results file, written as soon
as it is done: start the study again and it skips the cells it has (resumable).

Recipes (one change at a time against ``ce``):

* ``ce``: cross-entropy, the baseline augmentation (pad-crop, flip);
* ``ce_supcon_aug``: cross-entropy with the SupCon augmentation (what the augmentation alone does);
* ``supcon_2views``: two-phase SupCon, two views per image (the paper's);
* ``supcon_1view``: two-phase SupCon, one view per image, positives from the labels only (the
  original keras-io example's choice: a step costs what a cross-entropy step costs);
* ``hybrid``: ``ce`` plus SupCon on a projection head of the same views, one stage (only the loss
  changes against ``ce``: same augmentation, one view, the classifier trained end to end);
* ``supcon_momentum``: ``supcon_2views`` with a momentum encoder and a queue of 4,096 earlier keys
  and their labels (MoCo-style SupCon: one view is encoded with gradient, the other by the
  momentum encoder at inference).

Reported per cell: test accuracy (linear probe for SupCon) and kNN accuracy (k = 20) on the 2,000
held-out images, each with its binomial standard error sqrt(p (1 - p) / n); steps, images through
the encoder, training seconds and the run's total seconds.

Usage::

    python benchmarks/recipe_study.py --budgets 60 150 300            # about an hour on 2 cores
    python benchmarks/recipe_study.py --recipes ce supcon_2views --budgets 600 --seeds 0 1

Writes ``--out``/recipe_study.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed  # noqa: E402
from supcon_lib import budget, run_config, training, viz  # noqa: E402

RECIPES = {
    "ce": dict(method="ce"),
    "ce_supcon_aug": dict(method="ce", augmentation="supcon"),
    "supcon_2views": dict(method="supcon", views=2),
    "supcon_1view": dict(method="supcon", views=1),
    "hybrid": dict(method="hybrid"),
    "supcon_momentum": dict(method="supcon", views=2, queue_size=4096),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--budgets", nargs="+", type=float, default=[60.0, 150.0, 300.0],
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
    return run_config.RunConfig.from_profile("cpu", method, **overrides)


def run_cell(recipe, budget_seconds, seed, images_per_second, arrays, args):
    """One (recipe, budget, seed) cell: ``budget.run_at_budget`` with the recipe's settings."""
    cell = budget.run_at_budget(config_for(recipe, args, seed), budget_seconds, arrays, images_per_second)
    return {"recipe": recipe, **cell}


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
    fig = viz.plot_accuracy_against_budget(report["cells"], title=f"Accuracy against budget ({report['data']})")
    fig.savefig(path, dpi=120)


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
        for seconds in args.budgets:
            for seed in args.seeds:
                if (recipe, seconds, seed) in done:
                    print(f"[{recipe}] budget {seconds:g} s, seed {seed}: already done", flush=True)
                    continue
                if recipe not in report["throughput"]:
                    report["throughput"][recipe] = budget.measure_throughput(config_for(recipe, args, 0), arrays)
                cell = run_cell(recipe, seconds, seed, report["throughput"][recipe], arrays, args)
                report["cells"].append(cell)
                print(f"[{recipe}] budget {seconds:g} s, seed {seed}: test {cell['test_accuracy']:.3f}, "
                      f"kNN {cell['knn_accuracy']:.3f}, {cell['steps']} steps", flush=True)
                speed.write_report(args.out, "recipe_study", report, markdown(report))  # after every cell
    speed.write_report(args.out, "recipe_study", report, markdown(report))
    plot(report, args.out / "recipe_study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
