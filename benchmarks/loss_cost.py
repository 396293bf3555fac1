"""How much does the SupCon loss cost next to the network it trains?

For each batch size B (V = 2 views, D = 128), this script times, on the Keras backend that
``KERAS_BACKEND`` selects (TensorFlow by default; JAX works too)

* ``loss``: forward + backward of ``supcon_loss`` alone on random (B, V, D) embeddings
  (its cost grows like (B V)^2 D: the (BV x BV) similarity matrix), and
* ``step``: one full SupCon training step of a small encoder on the same batch: the encoder and
  a linear projection head on the B * V augmented views (32x32x3 images), the loss, the
  gradients and an SGD update (its cost grows like B),

and prints a markdown table with the loss's share of the step, then writes everything as JSON.
The encoder is ``supcon_lib.models.build_encoder("resnet_small")`` when that exists, else a
small inline CNN. The loss's forward + backward is compiled (``tf.function`` or ``jax.jit``), the
step is Keras' own compiled ``train_on_batch``; each time is the median over ``--repeats`` runs
after ``--warmup`` untimed runs.

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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from supcon_lib import losses, recipe_models, runtime  # noqa: E402

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
    """Waits for the results (TF and JAX run asynchronously) by fetching them to the host."""
    for value in keras.tree.flatten(outputs):
        keras.ops.convert_to_numpy(value)


def _loss_value_and_gradient(labels, features, args):
    """A compiled function: (loss, d loss / d features) on the current backend."""

    def loss(f):
        return losses.supcon_loss(labels, f, args.temperature, args.formulation)

    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(jax.value_and_grad(loss))
        return lambda: compiled(features)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function
        def forward_backward():
            with tf.GradientTape() as tape:
                tape.watch(features)
                value = loss(features)
            return value, tape.gradient(value, features)

        return forward_backward
    raise NotImplementedError(f"backend {keras.backend.backend()!r}: use tensorflow or jax")


def bench_loss(batch_size: int, args, rng: np.random.Generator) -> dict:
    features = keras.ops.convert_to_tensor(
        rng.normal(size=(batch_size, args.num_views, args.embedding_dim)).astype(np.float32))
    labels = keras.ops.convert_to_tensor(rng.integers(0, args.num_classes, size=batch_size))
    return time_function(_loss_value_and_gradient(labels, features, args), args.repeats, args.warmup)


def bench_step(batch_size: int, args, rng: np.random.Generator, encoder: keras.Model) -> dict:
    """One compiled SupCon training step: views (B, V, 32, 32, 3) -> encoder -> linear head -> loss."""
    inputs = keras.Input((args.num_views, *IMAGE_SHAPE))
    flat = recipe_models.MergeViews()(inputs)
    embeddings = keras.layers.Dense(args.embedding_dim, name="projection")(encoder(flat))
    model = keras.Model(inputs, recipe_models.SplitViews(args.num_views)(embeddings))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=losses.SupConLoss(args.temperature, args.formulation),
                  jit_compile=runtime.select_jit("auto"))
    views = rng.normal(size=(batch_size, args.num_views, *IMAGE_SHAPE)).astype(np.float32)
    labels = rng.integers(0, args.num_classes, size=batch_size)
    return time_function(lambda: model.train_on_batch(views, labels), args.repeats, args.warmup)


def _out_of_memory(error):
    """TensorFlow's ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED, or a host MemoryError."""
    return isinstance(error, MemoryError) or "ResourceExhausted" in type(error).__name__ or \
        "RESOURCE_EXHAUSTED" in str(error)


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
        except Exception as error:
            if not _out_of_memory(error):
                raise
            row["loss"] = {"error": f"out of memory: {type(error).__name__}"}
        if not args.skip_step:
            try:
                row["step"] = bench_step(batch_size, args, rng, encoder)
            except Exception as error:
                if not _out_of_memory(error):
                    raise
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
            "backend": keras.backend.backend(), "keras": keras.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "accelerator": runtime.accelerator(),
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
