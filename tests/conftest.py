"""Shared test set-up: quiet TensorFlow logs and a small CIFAR-10 copy written by the tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pickle  # noqa: E402
import tarfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
