"""supcon_lib.data: loading CIFAR-10 from local copies, safely; the digits default; subsets."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from supcon_lib import data
from conftest import write_batch


def assert_same_split(loaded, expected):
    images, labels = loaded
    assert images.dtype == np.uint8 and images.shape == expected[0].shape
    assert labels.shape == (len(images),) and np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


@pytest.mark.parametrize("which", ["folder", "archive", "parent"])
def test_load_local_copy(cifar_copy, which):
    location = {"folder": cifar_copy["folder"], "archive": cifar_copy["archive"],
                "parent": cifar_copy["folder"].parent}[which]
    train, test = data.load_cifar10(location)
    assert_same_split(train, cifar_copy["train"])
    assert_same_split(test, cifar_copy["test"])


def test_channel_order_is_height_width_channel(tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 1, 2] = (10, 20, 30)  # row 1, column 2: red 10, green 20, blue 30
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0 * 1024 + 1 * 32 + 2], row[0, 1 * 1024 + 1 * 32 + 2], row[0, 2 * 1024 + 1 * 32 + 2] = 10, 20, 30
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch"):
        (folder / name).write_bytes(pickle.dumps({b"data": row, b"labels": [3]}, protocol=2))
    (x_train, y_train), _ = data.load_cifar10(folder)
    np.testing.assert_array_equal(x_train, image)
    assert y_train.tolist() == [3]


def test_environment_variable_is_used(cifar_copy, monkeypatch):
    monkeypatch.setenv(data.CIFAR10_ENV_VAR, str(cifar_copy["archive"]))
    (x_train, _), _ = data.load_cifar10()
    assert len(x_train) == 40


def test_argument_wins_over_environment(cifar_copy, monkeypatch, tmp_path):
    monkeypatch.setenv(data.CIFAR10_ENV_VAR, str(tmp_path / "does-not-exist"))
    (x_train, _), _ = data.load_cifar10(cifar_copy["folder"])
    assert len(x_train) == 40


def test_train_batches_are_read_in_numeric_order(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "copy"
    folder.mkdir()
    parts = {}
    for number in (10, 2, 1):  # data_batch_10 must come after data_batch_2
        parts[number] = (rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), [number % 10] * 3)
        write_batch(folder / f"data_batch_{number}", *parts[number])
    write_batch(folder / "test_batch", *parts[1])
    (x_train, y_train), _ = data.load_cifar10(folder)
    assert y_train.tolist() == [1] * 3 + [2] * 3 + [0] * 3
    np.testing.assert_array_equal(x_train[6:], parts[10][0])


def test_class_names_come_from_meta(cifar_copy):
    assert data.cifar10_class_names(cifar_copy["folder"])[:2] == ("plane", "car")
    assert data.class_names("cifar10") == data.CIFAR10_CLASS_NAMES
    assert data.class_names("digits") == tuple("0123456789")


def test_offline_without_copy_says_how_to_point_at_one(monkeypatch):
    monkeypatch.delenv(data.CIFAR10_ENV_VAR, raising=False)

    def no_network():
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data, "_download_cifar10", no_network)
    with pytest.raises(data.DataError) as info:
        data.load_cifar10()
    message = str(info.value)
    assert "Network is unreachable" in message and data.CIFAR10_ENV_VAR in message and "data_dir" in message


# ----------------------------------------------------------------------------- error cases
def test_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match="no such file or folder"):
        data.load_cifar10(tmp_path / "nowhere")


def test_folder_without_copy(tmp_path):
    with pytest.raises(data.DataError, match="holds no CIFAR-10 copy"):
        data.load_cifar10(tmp_path)


def test_missing_test_batch(cifar_copy):
    (cifar_copy["folder"] / "test_batch").unlink()
    with pytest.raises(data.DataError, match="missing file 'test_batch'"):
        data.load_cifar10(cifar_copy["folder"])


def test_missing_train_batches(cifar_copy):
    for path in cifar_copy["folder"].glob("data_batch_*"):
        path.unlink()
    with pytest.raises(data.DataError, match="no data_batch_N"):
        data.load_cifar10(cifar_copy["folder"])


def test_truncated_batch_names_the_file(cifar_copy):
    path = cifar_copy["folder"] / "data_batch_2"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(data.DataError, match=r"data_batch_2: truncated or corrupt"):
        data.load_cifar10(cifar_copy["folder"])


def test_garbage_batch_names_the_file(cifar_copy):
    (cifar_copy["folder"] / "test_batch").write_bytes(b"this is not a pickle at all")
    with pytest.raises(data.DataError, match="test_batch"):
        data.load_cifar10(cifar_copy["folder"])


@pytest.mark.parametrize(
    "batch, problem",
    [
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, r"0\.\.9"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels'"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_malformed_batches(cifar_copy, batch, problem):
    (cifar_copy["folder"] / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(data.DataError, match=problem) as info:
        data.load_cifar10(cifar_copy["folder"])
    assert "data_batch_1" in str(info.value)


@pytest.mark.parametrize("empty, message", [("data_batch_1", r"the training batches \(data_batch_1, data_batch_2\) hold no images"),
                                            ("test_batch", "test_batch: the test batch holds no images")])
def test_batches_of_no_images_are_refused(cifar_copy, empty, message):
    empty_batch = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}  # well-formed, but no image
    (cifar_copy["folder"] / empty).write_bytes(pickle.dumps(empty_batch, protocol=4))
    if empty == "data_batch_1":
        (cifar_copy["folder"] / "data_batch_2").write_bytes(pickle.dumps(empty_batch, protocol=4))
    with pytest.raises(data.DataError, match=message):
        data.load_cifar10(cifar_copy["folder"])


def test_one_empty_training_batch_among_others_is_fine(cifar_copy):
    (cifar_copy["folder"] / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=4))
    (x_train, y_train), _ = data.load_cifar10(cifar_copy["folder"])
    assert len(x_train) == 20 and y_train.dtype == np.int64


def test_corrupt_archive(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    with pytest.raises(data.DataError, match="truncated or corrupt archive"):
        data.load_cifar10(archive)


def test_truncated_archive(cifar_copy):
    archive = cifar_copy["archive"]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(data.DataError, match=str(archive.name)):
        data.load_cifar10(archive)


def test_archive_without_cifar(tmp_path):
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(data.DataError, match="no member named 'test_batch'"):
        data.load_cifar10(archive)


def test_non_archive_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(data.DataError, match="not a folder, a .tar.gz/.tgz/.tar archive or a packed .npz file"):
        data.load_cifar10(path)


# ----------------------------------------------------------------------------- safety
class _Exploit:
    """Unpickling this would run ``open(marker, 'w')`` (a stand-in for any command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _SystemExploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("exploit", [_Exploit, _SystemExploit])
def test_malicious_pickle_is_refused_without_side_effects(cifar_copy, tmp_path, exploit):
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": exploit(marker)}
    (cifar_copy["folder"] / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(data.DataError, match="is not allowed"):
        data.load_cifar10(cifar_copy["folder"])
    assert not marker.exists()


def test_malicious_pickle_inside_archive_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    archive = tmp_path / "evil.tar.gz"
    payload = pickle.dumps(_SystemExploit(marker), protocol=2)
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(data.DataError, match="is not allowed"):
        data.load_cifar10(archive)
    assert not marker.exists()


def test_archive_member_paths_cannot_escape(tmp_path):
    """Members named ../../x are read in memory by base name; nothing is written anywhere."""
    rng = np.random.default_rng(0)
    source = tmp_path / "src"
    source.mkdir()
    write_batch(source / "b", *((rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), [1, 2])))
    archive = tmp_path / "deep" / "a.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "b", arcname="../../escaped/data_batch_1")
        tar.add(source / "b", arcname="/abs/test_batch")
    before = sorted(p for p in tmp_path.rglob("*"))
    (x_train, y_train), (x_test, _) = data.load_cifar10(archive)
    assert y_train.tolist() == [1, 2] and x_test.shape == (2, 32, 32, 3)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "escaped").exists()


def test_restricted_unpickler_accepts_plain_numpy():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    value = data.RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": array, "b": [1.5, "s"]}, protocol=2))).load()
    np.testing.assert_array_equal(value["a"], array)
    assert value["b"] == [1.5, "s"]


# ----------------------------------------------------------------------------- digits, subsets
def test_digits32_shapes_and_split():
    (x_train, y_train), (x_test, y_test) = data.load_digits32()
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (32, 32, 3)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 359
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert x_train.max() > 200 and x_train.min() == 0
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 2])  # grey in all channels
    counts = np.bincount(y_test, minlength=10)
    assert counts.max() - counts.min() <= 2  # stratified
    (x_again, _), _ = data.load_digits32()
    np.testing.assert_array_equal(x_train, x_again)


def test_digits32_is_an_upsampled_copy_of_the_8x8_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    (x_train, y_train), (x_test, y_test) = data.load_digits32()
    images = np.concatenate([x_train, x_test])[..., 0].astype(float)
    small = images.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)) * 16 / 255  # back to 8x8, 0..16
    matches = [np.abs(digits.images - s).sum(axis=(1, 2)).argmin() for s in small[:50]]
    np.testing.assert_array_equal(digits.target[matches], np.concatenate([y_train, y_test])[:50])


def test_stratified_subset_is_balanced_and_seeded():
    labels = np.repeat(np.arange(10), [100, 90, 80, 100, 100, 100, 100, 100, 100, 100])
    chosen = data.stratified_subset(labels, 97, seed=3)
    assert len(chosen) == 97 == len(set(chosen.tolist()))
    counts = np.bincount(labels[chosen], minlength=10)
    expected = np.bincount(labels, minlength=10) * 97 / len(labels)
    assert np.all(np.abs(counts - expected) < 1)
    np.testing.assert_array_equal(chosen, data.stratified_subset(labels, 97, seed=3))
    assert not np.array_equal(chosen, data.stratified_subset(labels, 97, seed=4))


@pytest.mark.parametrize("size, error", [(0, ValueError), (1001, ValueError), (2.5, TypeError)])
def test_stratified_subset_errors(size, error):
    with pytest.raises(error, match="size"):
        data.stratified_subset(np.zeros(1000, int), size)


def test_load_dataset_subsets(cifar_copy):
    (x_train, y_train), (x_test, y_test) = data.load_dataset("cifar10", cifar_copy["folder"], 20, 10, seed=0)
    assert x_train.shape == (20, 32, 32, 3) and np.bincount(y_train).tolist() == [2] * 10
    assert len(x_test) == 10
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("mnist")
    for train_size, test_size, message in ((41, None, r"train_size must lie in 1..40 \(the images of the cifar10 training split\), found 41"),
                                           (0, None, "train_size must lie in 1..40"),
                                           (None, 11, "test_size must lie in 1..10"),
                                           (2.5, None, "train_size must lie in 1..40 .*found 2.5")):
        with pytest.raises(data.DataError, match=message):
            data.load_dataset("cifar10", cifar_copy["folder"], train_size, test_size)


def test_full_standard_layout(tmp_path):
    """Five training batches of 10,000 and a test batch of 10,000, as in the real archive."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # One random block of 10,000 images, shifted by the batch's number (uint8, modulo 256) so
    # that every batch holds other pixels; the labels are drawn for each batch.
    block = rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for number, name in enumerate(names):
        labels = rng.integers(0, 10, 10_000)
        write_batch(folder / name, block + np.uint8(number), labels)
        written[name] = labels
    (x_train, y_train), (x_test, y_test) = data.load_cifar10(tmp_path)
    assert x_train.shape == (50_000, 32, 32, 3) and y_train.shape == (50_000,)
    assert x_test.shape == (10_000, 32, 32, 3) and y_test.shape == (10_000,)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.min() >= 0 and y_train.max() <= 9
    # Each batch in its place, in order: its labels, and one of its rows (a random one).
    np.testing.assert_array_equal(y_train, np.concatenate([written[name] for name in names[:5]]))
    np.testing.assert_array_equal(y_test, written["test_batch"])
    for number, (images, start) in enumerate([(x_train, 10_000 * i) for i in range(5)] + [(x_test, 0)]):
        row = int(rng.integers(0, 10_000))
        np.testing.assert_array_equal(images[start + row], block[row] + np.uint8(number))
