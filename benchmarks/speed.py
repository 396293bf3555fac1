"""Speed of the collection, measured in one run on one machine and one data set.

Sections (each a table in the markdown report and an entry in the JSON):

1. ``recipes``: training throughput (images/s; an image is counted once however many views it
   has) of the original keras-io recipe (ResNet50V2, its in-model augmentation, the npairs loss,
   batch 265, Adam) against our default recipe (CIFAR ResNet-18, the SupCon augmentation, two
   views, SupConLoss, batch 256, SGD), and the epoch time on 50,000 images that follows.
2. ``budget``: with ``--budget-seconds S``, each recipe plans its learning-rate schedule for the
   epochs its measured throughput fits into S seconds, is stopped after the first step that ends
   past S seconds of pre-training, and then reports test (probe) and kNN accuracy.
3. ``input_pipeline``: seconds per training step fed from the real input pipeline against the
   same step on one synthetic batch already in memory (goal: within 10%). The two are measured
   in alternating rounds, so that a load change on the machine hits both alike.
4. ``loss_cost``: forward + backward of the loss next to one encoder step, batch 256 to 4096
   (``benchmarks/loss_cost.py``).
5. ``tsne``: 2-D t-SNE of 10,000 points of dimension 128 (goal: at most 60 s on 2 CPU cores).

Usage::

    python benchmarks/speed.py --quick                    # CPU-sized: a few steps of each
    python benchmarks/speed.py --data-dir DIR --budget-seconds 900   # on a GPU

Writes ``--out``/speed.json and speed.md. Timings never belong in tests; they live here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from supcon_lib import evaluation, input_pipeline, recipe_models, run_config, runtime, training  # noqa: E402
from supcon_lib.budget import WallClockBudget  # noqa: E402

RECIPES = {
    # The keras-io example (2020): ResNet50V2, its augmentation in the model, one view, npairs
    # loss at temperature 0.05, Dense(128, relu) projection, batch 265, Adam 1e-3.
    "original": dict(encoder="resnet50v2", augmentation="original", loss="npairs", views=1, temperature=0.05,
                     projection_head="original", batch_size=265, optimizer="adam", learning_rate=1e-3),
    # Ours: CIFAR ResNet-18, the paper's augmentation, two views, SupCon L_out at 0.1, MLP head, SGD.
    "ours": dict(encoder="resnet18", augmentation="supcon", loss="supcon", views=2, temperature=0.1,
                 projection_head="mlp", batch_size=256, optimizer="sgd"),
}


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training batch."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.started)


def _compiled_supcon_model(config, x_train):
    strategy = runtime.select_strategy(config.strategy)
    steps = max(1, len(x_train) // config.batch_size)
    with runtime.strategy_scope(strategy):
        model, _, _ = recipe_models.build_compiled_model(config, x_train, None, steps,
                                                         runtime.select_jit(config.jit_compile))
    return model


def time_steps(model, dataset, steps, warmup):
    """Median seconds per step over ``steps`` timed steps after ``warmup`` (tracing) steps."""
    timer = StepTimer()
    model.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    return float(np.median(timer.times[warmup:]))


def bench_recipes(arrays, steps, warmup):
    (x_train, y_train), _, _ = arrays
    rows = {}
    for name, settings in RECIPES.items():
        config = run_config.RunConfig.from_profile("full", "supcon", **settings)
        model = _compiled_supcon_model(config, x_train)
        dataset = input_pipeline.make_dataset(x_train, y_train, config.batch_size, config.seed, 0, 1000)
        seconds = time_steps(model, dataset, steps, warmup)
        rows[name] = {"encoder": config.encoder, "batch_size": config.batch_size, "views": config.views,
                      "jit_compile": runtime.select_jit(config.jit_compile),
                      "loss": config.loss, "seconds_per_step": seconds,
                      "images_per_second": config.batch_size / seconds,
                      "seconds_per_50k_epoch": 50_000 / (config.batch_size / seconds)}
        print(f"[recipes] {name}: {rows[name]['images_per_second']:.1f} images/s", flush=True)
        del model
        keras.backend.clear_session()
    return rows


def bench_budget(arrays, throughput, budget_seconds, probe_epochs):
    (x_train, _), _, _ = arrays
    rows = {}
    for name, settings in RECIPES.items():
        # Plan the schedule for what the measured throughput fits into the budget (at least one epoch).
        epochs = max(1, math.ceil(budget_seconds * throughput[name]["images_per_second"] / len(x_train)))
        config = run_config.RunConfig.from_profile("full", "supcon", epochs=epochs, probe_epochs=probe_epochs,
                                                 train_size=len(x_train), verbose=0, **settings)
        budget = WallClockBudget(budget_seconds)
        with tempfile.TemporaryDirectory() as folder:
            metrics = training.run(config, folder, arrays=arrays, callbacks=[budget]).metrics
        rows[name] = {"planned_epochs": epochs, "steps": budget.steps, "images_seen": budget.steps * config.batch_size,
                      "pretrain_seconds": budget.used, "run_seconds": metrics["train_seconds"],
                      "test_accuracy": metrics["test_accuracy"], "knn_accuracy": metrics["knn_accuracy"]}
        print(f"[budget] {name}: {rows[name]}", flush=True)
    return rows


def bench_input_pipeline(arrays, encoder, batch_size, steps, warmup, rounds=3):
    """The same SupCon step fed by the real pipeline and by one synthetic in-memory batch, in
    ``rounds`` alternating rounds of ``steps`` timed steps; medians over all timed steps."""
    (x_train, y_train), _, _ = arrays
    config = run_config.RunConfig.from_profile("full", "supcon", encoder=encoder, batch_size=batch_size)
    model = _compiled_supcon_model(config, x_train)
    real = input_pipeline.make_dataset(x_train, y_train, batch_size, 0, 0, 1000)
    synthetic = _repeat_one_batch(x_train[:batch_size], y_train[:batch_size])
    time_steps(model, synthetic, 1, warmup)  # trace once on the synthetic batch
    times = {"real": [], "synthetic": []}
    for _ in range(rounds):
        for name, dataset in (("real", real), ("synthetic", synthetic)):
            timer = StepTimer()
            model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
            times[name] += timer.times[1:]  # the first step of every fit waits for its iterator
    real_seconds, synthetic_seconds = float(np.median(times["real"])), float(np.median(times["synthetic"]))
    row = {"encoder": encoder, "batch_size": batch_size, "rounds": rounds, "steps_per_round": steps,
           "real_seconds_per_step": real_seconds, "synthetic_seconds_per_step": synthetic_seconds,
           "overhead": real_seconds / synthetic_seconds - 1}
    print(f"[input_pipeline] {row}", flush=True)
    return row


def _repeat_one_batch(images, labels):
    """An endless stream of the same in-memory batch, for any backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((images, labels)).repeat()

    class OneBatch(keras.utils.PyDataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, index):
            return images, labels

    return OneBatch()


def bench_tsne(points=10_000, dim=128, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(10, dim))
    labels = rng.integers(0, 10, points)
    data = (centres[labels] + rng.normal(size=(points, dim))).astype(np.float32)
    started = time.perf_counter()
    result = evaluation.tsne_2d(data, seed=seed, return_method=True)
    seconds = time.perf_counter() - started
    knn = evaluation.knn_accuracy(result.coordinates[:8000], labels[:8000], result.coordinates[8000:], labels[8000:], k=10)
    row = {"points": points, "dim": dim, "method": result.method, "seconds": seconds, "knn_accuracy_2d": knn}
    print(f"[tsne] {row}", flush=True)
    return row


def bench_loss_cost(sizes, with_step):
    import loss_cost

    args = loss_cost.parse_args(["--sizes", *map(str, sizes), "--repeats", "3"] + ([] if with_step else ["--skip-step"]))
    rng = np.random.default_rng(0)
    encoder = loss_cost.build_small_encoder()[0] if with_step else None
    rows = []
    for batch_size in sizes:
        row = {"batch_size": batch_size, "loss_ms": loss_cost.bench_loss(batch_size, args, rng)["median_ms"]}
        if with_step:
            row["step_ms"] = loss_cost.bench_step(batch_size, args, rng, encoder)["median_ms"]
        rows.append(row)
        print(f"[loss_cost] {row}", flush=True)
    return rows


def machine():
    kind, capabilities = runtime.accelerator_info()
    description = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                   "cpu_count": os.cpu_count(), "accelerator": kind, "keras": keras.__version__,
                   "backend": keras.backend.backend()}
    if kind == "gpu" and keras.backend.backend() == "jax":
        import jax

        description["gpus"] = [device.device_kind for device in jax.devices()]
    elif kind == "gpu":
        import tensorflow as tf

        description["gpus"] = [tf.config.experimental.get_device_details(g).get("device_name", "?")
                               for g in tf.config.list_physical_devices("GPU")]
    return description


def markdown(report):
    m = report["machine"]
    lines = [f"Measured {report['date']} on {m['cpu_count']} CPU cores ({m['processor']}), accelerator: "
             f"{m['accelerator']}{' ' + ', '.join(m.get('gpus', [])) if m.get('gpus') else ''}; "
             f"Keras {m['keras']} ({m['backend']}), data: {report['data']}.", ""]
    rec = report["recipes"]
    lines += ["| recipe | encoder | batch | views | loss | images/s | s per 50k-image epoch |",
              "| --- | --- | ---: | ---: | --- | ---: | ---: |"]
    for name, r in rec.items():
        lines.append(f"| {name} | {r['encoder']} | {r['batch_size']} | {r['views']} | {r['loss']} | "
                     f"{r['images_per_second']:.1f} | {r['seconds_per_50k_epoch']:.0f} |")
    lines.append(f"\nThroughput ratio ours / original: {rec['ours']['images_per_second'] / rec['original']['images_per_second']:.2f}")
    modes = {r.get("jit_compile") for r in rec.values()}
    if len(modes) == 1 and None not in modes:
        lines.append(f"Both recipes compiled the same way: XLA {'on' if modes.pop() else 'off'}.")
    if report.get("budget"):
        lines += ["", f"Same wall-clock budget ({report['budget_seconds']:g} s of pre-training; then "
                  f"{report['budget_probe_epochs']} probe epochs on frozen features):", "",
                  "| recipe | planned epochs | steps | images seen | pre-training s | test accuracy | kNN accuracy |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in report["budget"].items():
            lines.append(f"| {name} | {r['planned_epochs']} | {r['steps']} | {r['images_seen']:,} | "
                         f"{r['pretrain_seconds']:.0f} | {r['test_accuracy']:.3f} | {r['knn_accuracy']:.3f} |")
    p = report["input_pipeline"]
    lines += ["", f"Input pipeline ({p['encoder']}, batch {p['batch_size']}, median of {p['rounds']} alternating "
              f"rounds of {p['steps_per_round']} steps): {p['real_seconds_per_step'] * 1e3:.0f} ms per step "
              f"on real data, {p['synthetic_seconds_per_step'] * 1e3:.0f} ms on one synthetic batch in memory "
              f"(overhead {100 * p['overhead']:+.1f}%; goal: within 10%)."]
    lines += ["", "| batch | loss fwd+bwd (ms) | small-encoder step (ms) |", "| ---: | ---: | ---: |"]
    for r in report["loss_cost"]:
        lines.append(f"| {r['batch_size']} | {r['loss_ms']:.1f} | {r['step_ms']:.0f} |" if "step_ms" in r
                     else f"| {r['batch_size']} | {r['loss_ms']:.1f} | not measured |")
    t = report["tsne"]
    lines += ["", f"t-SNE of {t['points']:,} points x {t['dim']}: {t['seconds']:.1f} s with {t['method']} "
              f"(10-NN accuracy on the 2-D map of 10 clusters: {t['knn_accuracy_2d']:.3f})."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: few steps, small loss sizes with a step")
    parser.add_argument("--data-dir", help="CIFAR-10 copy (default: $SUPCON_CIFAR10_DIR, the dev subset, or download)")
    parser.add_argument("--train-size", type=int, default=None, help="training images to use (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 3 quick, 20)")
    parser.add_argument("--budget-seconds", type=float, default=0, help="train both recipes this long (0: skip)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    steps = args.steps or (3 if args.quick else 20)
    keras.utils.set_random_seed(0)
    config = run_config.RunConfig.from_profile("cpu", "supcon", data_dir=args.data_dir, train_size=args.train_size,
                                             test_size=None)
    arrays = training.load_data(config)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": args.quick,
              "data": f"CIFAR-10, {len(arrays[0][0])} training images"}
    report["recipes"] = bench_recipes(arrays, steps, warmup=2)
    report["budget_seconds"], report["budget_probe_epochs"] = args.budget_seconds, 10
    report["budget"] = bench_budget(arrays, report["recipes"], args.budget_seconds, 10) if args.budget_seconds else {}
    report["input_pipeline"] = bench_input_pipeline(arrays, "resnet_small" if args.quick else "resnet18", 256, steps, 2)
    loss_sizes = [256, 512, 1024, 2048, 4096]
    report["loss_cost"] = bench_loss_cost(loss_sizes[:2], True) + bench_loss_cost(loss_sizes[2:], not args.quick)
    report["tsne"] = bench_tsne()
    write_report(args.out, "speed", report, markdown(report))
    return 0


def write_report(out, stem, report, text):
    """``out/stem.json`` (the whole report) and ``out/stem.md`` (its tables), then print the tables."""
    out.mkdir(parents=True, exist_ok=True)
    for path, content in ((out / f"{stem}.json", json.dumps(report, indent=2) + "\n"), (out / f"{stem}.md", text + "\n")):
        temporary = path.with_name(f".{path.name}.tmp")  # a kill while writing leaves the last report whole
        temporary.write_text(content)
        os.replace(temporary, path)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
