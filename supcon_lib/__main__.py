"""Command line: run a whole experiment outside a notebook.

    python -m supcon_lib train --method {ce,supcon,hybrid} --dataset {cifar10,digits} --out RUN_DIR
        [--data-dir DIR] [--train-size N] [--test-size N] [--epochs E] [--probe-epochs E]
        [--batch-size B] [--encoder NAME] [--temperature T] [--views V] [--seed S]
        [--queue-size K] [--supcon-weight W] [--learning-rate LR] [--weight-decay WD]
        [--profile smoke|cpu|gpu|full]

The profile sets every default (``smoke``: offline digits in seconds; ``cpu``: a real CIFAR-10
subset in about 5 minutes per method on 2 cores; ``gpu``: all of CIFAR-10 in a Colab session; ``full``: the
paper-style GPU schedule); explicit
flags override it. ``RUN_DIR/metrics.json`` is written atomically at the end. Starting the same
command again after an interruption resumes from the last completed epoch.

    python -m supcon_lib pack --data-dir DIR --out FILE.npz [--quality Q] [--force]

packs a CIFAR-10 copy (``data.pack_cifar10``) into the compact file of ``supcon_lib.packed`` (about 30 MiB for all
60,000 images at the default quality 95), which ``--data-dir`` then accepts like the original.

Invalid arguments or data: a message on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _number(kind, minimum, strict, description):
    """An argparse type: ``kind(text)`` that must be > (strict) or >= ``minimum``."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"expected {description}, found {text!r}")
        return value

    return parse


_positive_int = _number(int, 0, True, "a positive integer")
_non_negative_int = _number(int, 0, False, "a non-negative integer")
_positive_float = _number(float, 0.0, True, "a positive number")


def _jpeg_quality(text):
    """An argparse type: a JPEG quality, an integer in 1..100."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality in 1..100, found {text!r}")
    return value


def build_parser():
    """The ``argparse.ArgumentParser`` of ``python -m supcon_lib`` (commands ``train`` and ``pack``)."""
    from supcon_lib.run_config import METHODS, PROFILES

    parser = argparse.ArgumentParser(prog="python -m supcon_lib", description="Supervised contrastive learning runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one method and write RUN_DIR/metrics.json")
    train.add_argument("--method", choices=METHODS, required=True, help="ce: cross-entropy baseline; supcon: two-phase SupCon; hybrid: cross-entropy + SupCon, one stage")
    train.add_argument("--dataset", choices=("cifar10", "digits"), help="default: the profile's")
    train.add_argument("--data-dir", help="local CIFAR-10 copy (folder, .tar.gz or packed .npz); default $SUPCON_CIFAR10_DIR or download")
    train.add_argument("--train-size", type=_positive_int, help="stratified training subset size")
    train.add_argument("--test-size", type=_positive_int, help="stratified test subset size")
    train.add_argument("--epochs", type=_positive_int, help="training epochs (phase 1 for supcon)")
    train.add_argument("--probe-epochs", type=_positive_int, help="supcon phase 2: classifier epochs")
    train.add_argument("--batch-size", type=_positive_int, help="global batch size")
    train.add_argument("--encoder", help="resnet18, resnet_small, resnet14 or resnet50v2")
    train.add_argument("--temperature", type=_positive_float, help="SupCon temperature (default 0.1)")
    train.add_argument("--views", type=_positive_int, help="augmented views per image (default 2)")
    train.add_argument("--seed", type=_non_negative_int, help="random seed (default 0)")
    train.add_argument("--queue-size", type=_non_negative_int,
                       help="supcon: a momentum encoder and a queue of this many labelled keys (default 0: none)")
    train.add_argument("--supcon-weight", type=_number(float, 0.0, False, "a number >= 0"),
                       help="hybrid: weight of the SupCon term next to cross-entropy (default 1)")
    train.add_argument("--learning-rate", type=_positive_float,
                       help="peak learning rate (default: the method's, scaled with the batch size)")
    train.add_argument("--weight-decay", type=_number(float, 0.0, False, "a number >= 0"),
                       help="decoupled weight decay (default: the method's; 0: none)")
    train.add_argument("--profile", choices=PROFILES, default="smoke", help="default settings (default: smoke)")
    train.add_argument("--out", required=True, help="run folder: config, checkpoints, metrics.json")
    pack = commands.add_parser("pack", help="write CIFAR-10 as one compact .npz file (JPEG mosaics)")
    pack.add_argument("--data-dir", required=True, help="the CIFAR-10 copy to pack (folder or .tar.gz)")
    pack.add_argument("--out", required=True, help="the file to write (name ending in .npz)")
    pack.add_argument("--quality", type=_jpeg_quality, default=95,
                      help="JPEG quality (default 95)")
    pack.add_argument("--force", action="store_true", help="replace --out if it exists")
    return parser


def _pack(args):
    from supcon_lib import data

    try:
        summary = data.pack_cifar10(args.data_dir, args.out, args.quality, overwrite=args.force)
    except (ValueError, OSError, data.DataError) as exc:
        return _fail(str(exc))
    print(json.dumps(summary, indent=2))
    return 0


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    """Run the command line on ``argv`` (a list of str; default ``sys.argv[1:]``) and return the
    exit status: 0, or 2 with a message on stderr for invalid arguments or data (argparse itself
    exits with 2 for unknown flags)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on invalid arguments
    if args.command == "pack":
        return _pack(args)
    from supcon_lib import quiet

    quiet.start()  # Keras and its backend, without TensorFlow's start-up log lines
    from supcon_lib import checkpoint, data, run_config, training

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} exists and is not a folder")
    try:
        config = run_config.RunConfig.from_profile(
            args.profile, args.method, dataset=args.dataset, data_dir=args.data_dir,
            train_size=args.train_size, test_size=args.test_size, epochs=args.epochs,
            probe_epochs=args.probe_epochs, batch_size=args.batch_size, encoder=args.encoder,
            temperature=args.temperature, views=args.views, seed=args.seed, queue_size=args.queue_size,
            supcon_weight=args.supcon_weight, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        )  # verbose "auto": a progress bar in a terminal, one line per epoch in a log
        checkpoint.check_run_dir(out, config)  # a folder holding a run with other settings
        arrays = training.load_data(config)  # data errors surface before anything is written
    except (ValueError, TypeError, data.DataError) as exc:
        return _fail(str(exc))
    try:
        result = training.run(config, out, arrays=arrays)
    except (checkpoint.RunFolderBusy, checkpoint.CheckpointError) as exc:  # another run holds the folder;
        return _fail(str(exc))  # a checkpoint that is not this model's (found once the model is built)
    summary = {k: result.metrics[k] for k in ("method", "dataset", "encoder", "train_size", "test_size",
                                              "epochs", "test_accuracy", "knn_accuracy", "train_seconds")}
    print(json.dumps(summary, indent=2))
    print(f"metrics written to {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
