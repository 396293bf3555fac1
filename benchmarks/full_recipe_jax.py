"""The full recipe on one GPU with the JAX backend, from the compact CIFAR-10 file.

    python -m supcon_lib pack --data-dir path/to/cifar-10-batches-py --out cifar10.npz   # ~30 MiB
    python benchmarks/full_recipe_jax.py --data cifar10.npz                               # the full recipe
    python benchmarks/full_recipe_jax.py --data cifar10.npz --epochs 20 --probe-epochs 10 # a short check

Runs Keras on JAX (the variable is set before Keras is imported; TensorFlow need not be
installed), reads the data from a packed file (:mod:`supcon_lib.packed`), and trains the
``--profile`` (default ``full``) of each method in ``--methods``: for ``full``, the cross-entropy baseline (CIFAR ResNet-18,
200 epochs) and two-phase SupCon (500 epochs + a 50-epoch probe), batch 512, mixed precision
and XLA chosen for the device. Explicit flags override the profile.

Each run lives in ``--runs-dir/<method>`` and resumes from its last finished epoch when started
again. At the end it writes ``--out``/full_recipe_jax.json and .md: per method, the epoch time
(the median epoch; the first, which compiles, is reported apart), images per second, test and
kNN accuracy, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

if os.environ.setdefault("KERAS_BACKEND", "jax") != "jax":
    sys.exit(f"error: KERAS_BACKEND={os.environ['KERAS_BACKEND']}; this script runs the JAX backend")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from speed import write_report  # noqa: E402

from supcon_lib import checkpoint, data, run_config, training  # noqa: E402


def integer_at_least(minimum):
    """An argparse type: an integer >= ``minimum``, else a usage error."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {text!r}")
        return value

    return parse


def parse_args(argv=None):
    positive, non_negative = integer_at_least(1), integer_at_least(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the packed CIFAR-10 file (or any CIFAR-10 copy)")
    parser.add_argument("--methods", nargs="+", choices=run_config.METHODS, default=list(run_config.METHODS))
    parser.add_argument("--profile", choices=("gpu", "full"), default="full",
                        help="the settings to start from: the one-session gpu profile or the paper-style full one")
    parser.add_argument("--epochs", type=positive, help="override the profile's epochs (phase 1 for supcon)")
    parser.add_argument("--probe-epochs", type=positive, help="override the probe's epochs")
    parser.add_argument("--train-size", type=positive, help="stratified training subset (default: all)")
    parser.add_argument("--test-size", type=positive, help="stratified test subset (default: all)")
    parser.add_argument("--batch-size", type=positive, help="override the batch size (default 512)")
    parser.add_argument("--encoder", help="override the encoder (default resnet18)")
    parser.add_argument("--seed", type=non_negative, default=0)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs") / "jax-full", help="one run folder per method")
    parser.add_argument("--out", type=Path, default=Path("benchmarks") / "results", help="where the report goes")
    return parser.parse_args(argv)


def machine():
    import jax

    devices = jax.devices()
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "keras": keras.__version__, "backend": keras.backend.backend(),
            "devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in devices]}


def summarise(metrics):
    phase = "pretrain" if "pretrain" in metrics["history"] else "train"  # ce and hybrid train in one phase
    seconds = metrics["history"][phase]["seconds"]
    steady = seconds[1:] or seconds  # the first epoch includes XLA's compilation
    epoch_seconds = float(np.median(steady))
    return {
        "method": metrics["method"], "encoder": metrics["encoder"], "epochs": metrics["epochs"],
        "probe_epochs": metrics["probe_epochs"], "batch_size": metrics["batch_size"], "views": metrics["views"],
        "train_size": metrics["train_size"], "test_size": metrics["test_size"],
        "first_epoch_seconds": float(seconds[0]), "epoch_seconds": epoch_seconds,
        "images_per_second": metrics["train_size"] // metrics["batch_size"] * metrics["batch_size"] / epoch_seconds,
        "seconds_per_50k_epoch": epoch_seconds * 50_000 / metrics["train_size"],
        "run_seconds": metrics["train_seconds"], "test_accuracy": metrics["test_accuracy"],
        "knn_accuracy": metrics["knn_accuracy"], "precision": metrics["precision"], "backend": metrics["backend"],
    }


def markdown(report):
    m = report["machine"]
    lines = [f"Measured {report['date']} on {', '.join(m['devices'])} (JAX {m['jax']}, Keras {m['keras']}, "
             f"backend {m['backend']}); data: {report['data']}.", "",
             "| method | encoder | epochs | batch | precision | first epoch s | epoch s | images/s | s per 50k epoch "
             "| test accuracy | kNN accuracy |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["runs"]:
        epochs = f"{r['epochs']} + {r['probe_epochs']} probe" if r["probe_epochs"] else str(r["epochs"])
        lines.append(f"| {r['method']} | {r['encoder']} | {epochs} | {r['batch_size']} | {r['precision']} | "
                     f"{r['first_epoch_seconds']:.1f} | {r['epoch_seconds']:.2f} | {r['images_per_second']:.0f} | "
                     f"{r['seconds_per_50k_epoch']:.1f} | {r['test_accuracy']:.4f} | {r['knn_accuracy']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    runs = []
    arrays = None
    for method in args.methods:
        try:
            config = run_config.RunConfig.from_profile(
                args.profile, method, data_dir=args.data, epochs=args.epochs, probe_epochs=args.probe_epochs,
                train_size=args.train_size, test_size=args.test_size, batch_size=args.batch_size,
                encoder=args.encoder, seed=args.seed, verbose=2)
            run_dir = args.runs_dir / method
            checkpoint.check_run_dir(run_dir, config)
            arrays = arrays or training.load_data(config)  # data errors surface before anything is written
        except (ValueError, TypeError, data.DataError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"[{method}] {config.epochs} epochs, batch {config.batch_size}, {len(arrays[0][0])} images", flush=True)
        runs.append(summarise(training.run(config, run_dir, arrays=arrays).metrics))
        print(json.dumps(runs[-1], indent=2), flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "runs": runs,
              "data": f"{args.data} ({len(arrays[0][0])} training, {len(arrays[1][0])} test images)"}
    write_report(args.out, "full_recipe_jax", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
