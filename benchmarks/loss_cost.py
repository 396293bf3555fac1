"""How much does the SupCon loss cost next to the network it trains?

For each batch size B (V = 2 views, D = 128), this script times on the TensorFlow backend

* ``loss``: forward + backward of ``supcon_loss`` alone on random (B, V, D) embeddings
  (its cost grows like (B V)^2 D: the (BV x BV) similarity matrix), and
* ``step``: one full SupCon training step of a small encoder on the same batch: the encoder and
  a linear projection head on the B * V augmented views (32x32x3 images), the loss, the
  gradients and an SGD update (its cost grows like B),

and prints a markdown table with the loss's share of the step, then writes everything as JSON.
The encoder is ``supcon_lib.models.build_encoder("resnet_small")`` when that exists, else a
small inline CNN. Both functions are ``tf.function``-compiled; each time is the median over
``--repeats`` runs after ``--warmup`` untimed runs.

Usage::

    python benchmarks/loss_cost.py                 # B = 256 ... 4096
    python benchmarks/loss_cost.py --quick         # B = 256, 512: a smoke test
    python benchmarks/loss_cost.py --sizes 128 1024 --out /tmp/cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"  # The timing code below uses tf.function / GradientTape.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from supcon_lib import losses  # noqa: E402

FULL_SIZES = (256, 512, 1024, 2048, 4096)
QUICK_SIZES = (256, 512)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "loss_cost.json"
IMAGE_SHAPE = (32, 32, 3)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only B in {QUICK_SIZES}, fewer repeats")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"batch sizes (default {FULL_SIZES})")
    parser.add_argument("--num-views", type=int, default=2)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=10, help="labels drawn from this many classes")
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--formulation", choices=losses.FORMULATIONS, default="out")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs after the first trace")
    parser.add_argument("--skip-step", action="store_true", help="time the loss only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    return args


def build_small_encoder() -> tuple[keras.Model, str]:
    """``resnet_small`` from supcon_lib.models if available, else a small inline CNN."""
    try:
        from supcon_lib import models

        if "resnet_small" in getattr(models, "ENCODERS", ()):
            return models.build_encoder("resnet_small", input_shape=IMAGE_SHAPE), "resnet_small"
    except ImportError:
        pass
    inputs = keras.Input(IMAGE_SHAPE)
    x = inputs
    for filters, strides in ((16, 1), (32, 2), (64, 2), (128, 2)):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="inline_cnn"), "inline_cnn"


def time_function(function, repeats: int, warmup: int) -> dict:
    """Milliseconds per call: the first call (tracing included), then median/min of ``repeats``."""
    started = time.perf_counter()
    _block(function())
    first_ms = 1e3 * (time.perf_counter() - started)
    for _ in range(warmup):
        _block(function())
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        _block(function())
        times.append(1e3 * (time.perf_counter() - started))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "first_call_ms": first_ms}


def _block(outputs):
    """Waits for the results (TF runs asynchronously) by fetching them to the host."""
    for value in tf.nest.flatten(outputs):
        value.numpy()


def bench_loss(batch_size: int, args, rng: np.random.Generator) -> dict:
    features = tf.constant(
        rng.normal(size=(batch_size, args.num_views, args.embedding_dim)).astype(np.float32)
    )
    labels = tf.constant(rng.integers(0, args.num_classes, size=batch_size))

    @tf.function
    def loss_forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(features)
            value = losses.supcon_loss(labels, features, args.temperature, args.formulation)
        return value, tape.gradient(value, features)

    return time_function(loss_forward_backward, args.repeats, args.warmup)


def bench_step(batch_size: int, args, rng: np.random.Generator, encoder: keras.Model) -> dict:
    projection = keras.layers.Dense(args.embedding_dim, name="projection")
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    views = tf.constant(
        rng.normal(size=(batch_size * args.num_views, *IMAGE_SHAPE)).astype(np.float32)
    )
    labels = tf.constant(rng.integers(0, args.num_classes, size=batch_size))
    projection.build((None, encoder.output_shape[-1]))
    variables = encoder.trainable_variables + projection.trainable_variables
    optimizer.build(variables)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            embeddings = projection(encoder(views, training=True))  # (B * V, D), image-major.
            embeddings = tf.reshape(embeddings, (batch_size, args.num_views, args.embedding_dim))
            value = losses.supcon_loss(labels, embeddings, args.temperature, args.formulation)
        gradients = tape.gradient(value, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return value

    return time_function(train_step, args.repeats, args.warmup)


def markdown_table(rows: list[dict], encoder_name: str) -> str:
    lines = [
        f"| B | anchors B*V | loss fwd+bwd (ms) | {encoder_name} train step (ms) | loss / step |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        step = row.get("step")
        step_text = "-" if step is None else (
            step.get("error", "") or f"{step['median_ms']:.1f}"
        )
        share = "-" if not row.get("loss_share_of_step") else f"{100 * row['loss_share_of_step']:.1f}%"
        loss_text = row["loss"].get("error", "") or f"{row['loss']['median_ms']:.1f}"
        lines.append(
            f"| {row['batch_size']} | {row['num_anchors']} | {loss_text} | {step_text} | {share} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    encoder, encoder_name = (None, "-") if args.skip_step else build_small_encoder()
    rows = []
    for batch_size in args.sizes:
        row = {"batch_size": batch_size, "num_anchors": batch_size * args.num_views}
        try:
            row["loss"] = bench_loss(batch_size, args, rng)
        except (tf.errors.ResourceExhaustedError, MemoryError) as error:
            row["loss"] = {"error": f"out of memory: {type(error).__name__}"}
        if not args.skip_step:
            try:
                row["step"] = bench_step(batch_size, args, rng, encoder)
            except (tf.errors.ResourceExhaustedError, MemoryError) as error:
                row["step"] = {"error": f"out of memory: {type(error).__name__}"}
            if "median_ms" in row["loss"] and "median_ms" in row["step"]:
                row["loss_share_of_step"] = row["loss"]["median_ms"] / row["step"]["median_ms"]
        rows.append(row)
        print(f"B={batch_size}: {json.dumps(row)}", file=sys.stderr, flush=True)

    table = markdown_table(rows, encoder_name)
    print(table)
    report = {
        "config": {
            "sizes": args.sizes, "num_views": args.num_views, "embedding_dim": args.embedding_dim,
            "num_classes": args.num_classes, "temperature": args.temperature,
            "formulation": args.formulation, "repeats": args.repeats, "warmup": args.warmup,
            "encoder": encoder_name, "image_shape": IMAGE_SHAPE,
        },
        "environment": {
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        },
        "results": rows,
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
