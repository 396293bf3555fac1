#!/usr/bin/env bash
# The GPU measurements of the performance section, as one short script for a machine that has a
# GPU, JAX, numpy, scikit-learn and Pillow but no TensorFlow and no network (the H200 that this
# project's workplace sometimes lends). Prepare, on a machine with pip and the data (.data/ and
# .whl/ are git-ignored):
#
#   python -m supcon_lib pack --data-dir PATH/TO/cifar-10-batches-py --out .data/cifar10.npz
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree
#
# then run `bash benchmarks/device_check.sh` there with .whl and .data carried along. It writes,
# under $OUT (default build/device): full_recipe_jax.{json,md} (EPOCHS epochs of each method of
# the full recipe: epoch time, images/s, accuracy) and speed.{json,md} (benchmarks/speed.py with
# a BUDGET-second wall-clock budget per recipe), plus both logs. The defaults are meant to end
# within 10 minutes on an H200 (on 2026-11-30 all of the gpu profile's epochs, not EPOCHS, took
# about 2.5 minutes there for the three methods; speed.py did not end within 165 s, so give it
# more); the whole 500-epoch recipe needs a longer session.
set -euo pipefail
out=${OUT:-build/device}
data=${DATA:-.data/cifar10.npz}
mkdir -p "$out"
if [[ -d .whl ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
# The gpu profile (the notebooks' default on a GPU; its T4 time is an estimate;
# an H200 ran it on the 10k subset on 2026-11-30: README, Performance):
# EPOCHS epochs of each method give the epoch time to scale by the profile's epochs.
python3 benchmarks/full_recipe_jax.py --profile gpu --data "$data" --epochs "${EPOCHS:-15}" --probe-epochs 20 \
    --runs-dir /tmp/supcon-runs --out "$out" 2>&1 | tee "$out/full_recipe.log"
python3 benchmarks/speed.py --data-dir "$data" --budget-seconds "${BUDGET:-60}" --out "$out" 2>&1 | tee "$out/speed.log"
