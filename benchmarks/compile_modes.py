"""Training-step time with XLA on and off, for the backend Keras runs on: the measurement behind
``runtime.select_jit``.

For each recipe (cross-entropy, and SupCon with two views) at the ``cpu`` profile's size (its
encoder and batch), one model is compiled with ``jit_compile=True`` and one with ``False``; their
steps are then timed in alternating rounds, so that a change of load on the machine hits both
alike. The first step of each model (tracing and compiling) is reported apart.

Usage (once per backend; 32x32 digits stand in for CIFAR-10: a step costs the same)::

    python benchmarks/compile_modes.py
    KERAS_BACKEND=jax python benchmarks/compile_modes.py

Writes ``--out``/compile_modes_<backend>.json and .md. Timings never belong in tests; they live here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import speed  # noqa: E402
from supcon_lib import data, input_pipeline, recipe_models, run_config, runtime  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per compile mode")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the cpu profile's")
    parser.add_argument("--encoder", default=None, help="default: the cpu profile's")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def bench_method(method, arrays, args):
    """Median seconds per step with XLA on and off, and each mode's first (compiling) step."""
    (x_train, y_train), _ = arrays
    config = run_config.RunConfig.from_profile("cpu", method, dataset="digits", train_size=None, test_size=None,
                                             batch_size=args.batch_size, encoder=args.encoder)
    steps_per_epoch = len(x_train) // config.batch_size
    dataset = input_pipeline.make_dataset(x_train, y_train, config.batch_size, config.seed, 0, 10_000)
    modes = {}
    for jit in (True, False):
        keras.utils.set_random_seed(config.seed)
        model, _, _ = recipe_models.build_compiled_model(config, x_train, 10, steps_per_epoch, jit)
        started = time.perf_counter()
        model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
        modes[jit] = {"model": model, "first_step_seconds": time.perf_counter() - started, "rounds": []}
    for round_index in range(args.rounds):
        order = (True, False) if round_index % 2 == 0 else (False, True)
        for jit in order:
            modes[jit]["rounds"].append(speed.time_steps(modes[jit]["model"], dataset, args.steps, warmup=1))
    rows = {}
    for jit, mode in modes.items():
        rows["on" if jit else "off"] = {"first_step_seconds": mode["first_step_seconds"],
                                        "seconds_per_step": float(np.median(mode["rounds"])),
                                        "rounds": mode["rounds"]}
    row = {"encoder": config.encoder, "batch_size": config.batch_size,
           "views": config.views if method == "supcon" else 1, "xla": rows,
           "speed_up": rows["off"]["seconds_per_step"] / rows["on"]["seconds_per_step"]}
    print(f"[{method}] XLA on {rows['on']['seconds_per_step']:.3f} s/step, off {rows['off']['seconds_per_step']:.3f} "
          f"s/step: XLA {row['speed_up']:.2f}x as fast", flush=True)
    return row


def markdown(report):
    m = report["machine"]
    lines = [f"Measured {report['date']} on {m['cpu_count']} CPU cores ({m['processor']}), accelerator: "
             f"{m['accelerator']}; Keras {m['keras']} ({m['backend']} backend); median of "
             f"{report['rounds']} alternating rounds of {report['steps']} steps.", "",
             "| recipe | encoder | batch | views | XLA on: s/step | XLA off: s/step | off / on | "
             "first step on (s) | first step off (s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, r in report["methods"].items():
        on, off = r["xla"]["on"], r["xla"]["off"]
        lines.append(f"| {method} | {r['encoder']} | {r['batch_size']} | {r['views']} | {on['seconds_per_step']:.3f} | "
                     f"{off['seconds_per_step']:.3f} | {r['speed_up']:.2f} | {on['first_step_seconds']:.1f} | "
                     f"{off['first_step_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    arrays = data.load_digits32()
    report = {"date": time.strftime("%Y-%m-%d"), "machine": speed.machine(), "steps": args.steps,
              "rounds": args.rounds, "select_jit_auto": runtime.select_jit("auto"),
              "methods": {method: bench_method(method, arrays, args) for method in run_config.METHODS}}
    speed.write_report(args.out, f"compile_modes_{keras.backend.backend()}", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
