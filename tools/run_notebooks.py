"""Execute every notebook (py:percent sources) into a build folder and print a results summary.

    python tools/run_notebooks.py [--out build/notebooks] [--profile smoke] [NAMES...]

The sources in notebooks/ are never written: each executed copy lands in --out, runs land in
--out/../runs (``SUPCON_RUNS_DIR``) and figures in --out/../figures (``SUPCON_FIGURES_DIR``) unless
those variables are set. Exits non-zero if any notebook fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from supcon_lib.run_config import PROFILES  # reads no Keras

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all notebooks/NN_*.py)")
    parser.add_argument("--out", default="build/notebooks", help="folder for the executed notebooks")
    parser.add_argument("--profile", default="smoke", choices=PROFILES)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)

    import jupytext
    import nbformat
    from nbclient import NotebookClient

    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["SUPCON_PROFILE"] = args.profile
    os.environ.setdefault("SUPCON_RUNS_DIR", str(out.parent / "runs"))
    os.environ.setdefault("SUPCON_FIGURES_DIR", str(out.parent / "figures"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    if args.names:
        sources = [s for s in sources if s.stem in args.names or s.name in args.names]
    if not sources:
        print("no notebooks to run", file=sys.stderr)
        return 1
    rows, failed = [], False
    for source in sources:
        notebook = jupytext.read(source)
        started = time.perf_counter()
        status = "ok"
        try:
            NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(source.parent)}}).execute()
        except Exception as exc:  # report and go on with the next notebook
            status = f"FAILED: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
            failed = True
        seconds = time.perf_counter() - started
        nbformat.write(notebook, out / f"{source.stem}.ipynb")
        rows.append((source.stem, seconds, status))
        print(f"{source.stem}: {status} ({seconds:.0f} s)", flush=True)

    print(f"\nExecuted notebooks ({args.profile} profile) are in {out}\n")
    print("| notebook | seconds | status |\n| --- | ---: | --- |")
    for name, seconds, status in rows:
        print(f"| {name} | {seconds:.0f} | {status} |")
    runs_dir = Path(os.environ["SUPCON_RUNS_DIR"])
    metrics = sorted(runs_dir.rglob("metrics.json")) if runs_dir.exists() else []
    if metrics:
        print("\n| run | method | dataset | encoder | epochs | test accuracy | kNN accuracy | seconds |")
        print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
        for path in metrics:
            m = json.loads(path.read_text())
            print(f"| {path.parent.name} | {m.get('method')} | {m.get('dataset')} | {m.get('encoder')} | "
                  f"{m.get('epochs')} | {m.get('test_accuracy', float('nan')):.3f} | "
                  f"{m.get('knn_accuracy', float('nan')):.3f} | {m.get('train_seconds', float('nan')):.0f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
