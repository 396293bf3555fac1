"""Shared test set-up: quiet TensorFlow logs, the markers of the two passes,
and a small CIFAR-10 copy written by the tests.

The library tests of losses, models, augment and training, and the benchmark tests, also run on
the JAX backend: ``make test`` runs that pass (the files and the ``-m`` expression are the
Makefile's ``JAX_TESTS`` and ``JAX_LEAVES_OUT``). Three markers leave a test out of that pass
(deselected, never skipped); each still runs in the TensorFlow pass:

* ``tensorflow_only``: about TensorFlow itself (tf.distribute, tf.function's dynamic shapes, ...);
* ``backend_independent``: checks nothing that depends on the backend (settings and argument
  validation, checkpoint and run-folder I/O, reports);
* ``jax_redundant``: what it runs on JAX another test of the JAX pass already runs (the JAX pass
  keeps the numerics, the compiled paths and one short training per recipe).

And one the other way round: ``tensorflow_redundant`` leaves a test out of the TensorFlow pass
(Makefile ``TF_LEAVES_OUT``) where other tests of that pass already run what it runs on
TensorFlow, and it runs in the JAX pass only.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if os.environ.get("KERAS_BACKEND") == "jax" and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    # Eager JAX compiles every primitive for every new shape, and these tests make hundreds of
    # small programs that each run a few times, so the CPU time of the JAX run is mostly LLVM
    # optimising code (Keras' initialisers alone compile a truncated normal per weight shape,
    # ~1 s each at XLA's default level 2). Level 0 skips LLVM's optimisations: a compiled
    # training step runs several times slower, but the tests' runs are a few steps long, so
    # compiling is what counts. Measured on 2 cores, 2026-11-30, each pair back to back:
    # test_augment, test_losses and test_models 55.0 s at level 1 against 46.7 s at level 0
    # (58.9 against 51.0 in the second pair); the training and benchmark modules 85.2 s at
    # level 1, 83.1 s at level 0. It changes how fast the code runs, not what it computes
    # (XLA's CPU fast-math stays off). It has to be set before JAX initialises its backend,
    # i.e. before the test modules import Keras.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # One compilation cache on disk for the whole JAX run, shared by its xdist workers (which
    # inherit this variable) and removed at its end: a program compiled once, by any worker, is
    # read back instead of compiled again. The resume tests build the same model twice, and
    # both workers compile the same small programs. The run's two training modules took 83 s
    # without it, 75 s with it (2 cores, back to back, 2026-11-29). XLA's output is the same.
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="supcon-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # by default only >= 1 s
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pickle  # noqa: E402
import tarfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow_only: about TensorFlow itself (tf.distribute, tf.function's dynamic shapes, "
        "the TensorFlow-only glue); deselected in the JAX pass",
    )
    config.addinivalue_line(
        "markers",
        "backend_independent: checks nothing that depends on the Keras backend (validation, "
        "checkpoint and run-folder I/O, reports); deselected in the JAX pass",
    )
    config.addinivalue_line(
        "markers",
        "jax_redundant(reason): on JAX it would repeat what another test of the JAX pass runs "
        "(the reason names it); deselected in the JAX pass",
    )
    config.addinivalue_line(
        "markers",
        "tensorflow_redundant(reason): on TensorFlow it would repeat what another test of the "
        "TensorFlow pass runs (the reason names it); runs in the JAX pass only",
    )


# -- a miniature CIFAR-10 copy -----------------------------------------------------------------------
def write_batch(path, images, labels, protocol=2):
    """Write one batch in the CIFAR-10 python layout: bytes keys, channel-major uint8 rows."""
    rows = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"batch_label": b"test batch", b"labels": [int(v) for v in labels], b"data": rows,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def make_split(rng, count):
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(count) % 10
    return images, labels


@pytest.fixture
def cifar_copy(tmp_path):
    """A miniature CIFAR-10 copy: two train batches of 20 and a test batch of 10, plus meta."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train = [make_split(rng, 20), make_split(rng, 20)]
    test = make_split(rng, 10)
    for number, (images, labels) in enumerate(train, start=1):
        write_batch(folder / f"data_batch_{number}", images, labels)
    write_batch(folder / "test_batch", *test)
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    x_train = np.concatenate([t[0] for t in train])
    y_train = np.concatenate([t[1] for t in train])
    return {"folder": folder, "archive": archive, "train": (x_train, y_train), "test": test}
