"""supcon_lib.packed: the compact CIFAR-10 file (JPEG mosaics in an .npz), written and read back."""

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from supcon_lib import data, packed


@pytest.fixture(scope="module")
def digits():
    """Real (if small) images: scikit-learn's digits at 32x32x3."""
    return data.load_digits32()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mean_abs_error(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_round_trip_keeps_labels_exactly_and_pixels_closely(tmp_path, digits):
    train, test = digits
    path = tmp_path / "digits.npz"
    summary = packed.pack(path, train, test, data.DIGITS_CLASS_NAMES)
    (x_train, y_train), (x_test, y_test) = packed.read(path)[0]
    assert x_train.shape == train[0].shape and x_train.dtype == np.uint8
    assert x_test.shape == test[0].shape and y_train.dtype == np.int64
    np.testing.assert_array_equal(y_train, train[1])
    np.testing.assert_array_equal(y_test, test[1])
    error = _mean_abs_error(x_train, train[0])
    assert 0 < error < 1.5  # JPEG q95 is lossy, but only just
    assert summary["splits"]["train"]["mean_abs_error"] == pytest.approx(error)
    assert summary["bytes"] == path.stat().st_size
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # an ordinary file, not mkstemp's 0600
    # Each image decodes on its own tile: the worst image is about as good as the average one.
    per_image = np.abs(x_train.astype(np.int16) - train[0].astype(np.int16)).mean(axis=(1, 2, 3))
    assert per_image.max() < 4 * error + 1


def test_many_mosaics_and_a_partial_last_one(tmp_path, digits):
    (images, labels), _ = digits
    count = packed.MOSAIC_IMAGES + 150  # two mosaics, the second with one and a half rows
    reps = -(-count // len(images))
    big = np.tile(images, (reps, 1, 1, 1))[:count]
    big_labels = np.tile(labels, reps)[:count]
    path = tmp_path / "big.npz"
    packed.pack(path, (big, big_labels), (images[:7], labels[:7]), data.DIGITS_CLASS_NAMES)
    with np.load(path) as stored:
        assert len(stored["train_offsets"]) == 3 and len(stored["test_offsets"]) == 2
    (x_train, y_train), (x_test, _) = packed.read(path)[0]
    assert len(x_train) == count and len(x_test) == 7
    np.testing.assert_array_equal(y_train, big_labels)
    # The images after the first mosaic are the right ones, not padding or a shifted tile.
    tail = slice(packed.MOSAIC_IMAGES, count)
    assert _mean_abs_error(x_train[tail], big[tail]) < 1.5
    assert _mean_abs_error(x_train[tail], np.roll(big[tail], 1, axis=0)) > 10


def test_load_cifar10_and_class_names_accept_a_packed_file(tmp_path, cifar_copy, monkeypatch):
    path = tmp_path / "small.npz"
    summary = data.pack_cifar10(cifar_copy["folder"], path)
    assert summary["splits"]["train"]["images"] == 40 and summary["splits"]["test"]["images"] == 10
    train, test = data.load_cifar10(path)
    np.testing.assert_array_equal(train[1], cifar_copy["train"][1])
    np.testing.assert_array_equal(test[1], cifar_copy["test"][1])
    assert data.cifar10_class_names(path)[:2] == ("plane", "car")  # from the copy's batches.meta
    monkeypatch.setenv(data.CIFAR10_ENV_VAR, str(path))
    assert data.load_dataset("cifar10", train_size=20)[0][0].shape == (20, 32, 32, 3)


def test_refuses_to_overwrite_and_writes_nothing_on_bad_input(tmp_path, digits):
    train, test = digits
    path = tmp_path / "out.npz"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="exists"):
        packed.pack(path, train, test, data.DIGITS_CLASS_NAMES)
    assert path.read_bytes() == b"precious"
    with pytest.raises(ValueError, match="must end in .npz"):
        packed.pack(tmp_path / "out.zip", train, test, data.DIGITS_CLASS_NAMES)
    with pytest.raises(ValueError, match="train images: expected uint8"):
        packed.pack(tmp_path / "f.npz", (train[0].astype(np.float32), train[1]), test, data.DIGITS_CLASS_NAMES)
    with pytest.raises(ValueError, match="test labels: expected shape"):
        packed.pack(tmp_path / "g.npz", train, (test[0], test[1][:-1]), data.DIGITS_CLASS_NAMES)
    for quality in (0, 101, 95.5, True):
        with pytest.raises(ValueError, match="quality must be in 1..100"):
            packed.pack(tmp_path / "h.npz", train, test, data.DIGITS_CLASS_NAMES, quality=quality)
    with pytest.raises(ValueError, match=r"train labels: expected integers in 0..9 .* found 0..10"):
        packed.pack(tmp_path / "i.npz", (train[0], np.where(train[1] == 9, 10, train[1])), test, data.DIGITS_CLASS_NAMES)
    with pytest.raises(ValueError, match="the test split holds no images"):
        packed.pack(tmp_path / "j.npz", train, (test[0][:0], test[1][:0]), data.DIGITS_CLASS_NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_quality_is_checked_before_the_copy_is_read(tmp_path):
    with pytest.raises(ValueError, match="quality must be in 1..100"):
        data.pack_cifar10(tmp_path / "nowhere", tmp_path / "x.npz", quality=101)


@pytest.mark.parametrize("quality", ["0", "101", "high"])
def test_command_line_pack_refuses_a_bad_quality(tmp_path, capsys, cifar_copy, quality):
    from supcon_lib import __main__ as cli

    with pytest.raises(SystemExit) as info:
        cli.main(["pack", "--data-dir", str(cifar_copy["folder"]), "--out", str(tmp_path / "c.npz"), "--quality", quality])
    assert info.value.code == 2
    assert f"--quality: expected a JPEG quality in 1..100, found '{quality}'" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()


def test_an_interrupted_write_leaves_no_file(tmp_path, digits, monkeypatch):
    def broken(stream, **arrays):
        stream.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(packed.np, "savez", broken)
    with pytest.raises(KeyboardInterrupt):
        packed.pack(tmp_path / "x.npz", *digits, data.DIGITS_CLASS_NAMES)
    assert list(tmp_path.iterdir()) == []


def _rewrite(source, target, **changes):
    with np.load(source) as stored:
        fields = {**dict(stored.items()), **changes}
    np.savez(target, **{k: v for k, v in fields.items() if v is not None})
    return target


@pytest.fixture
def packed_digits(tmp_path, digits):
    path = tmp_path / "digits.npz"
    packed.pack(path, *digits, data.DIGITS_CLASS_NAMES)
    return path


def test_malformed_files_are_refused_with_the_reason(tmp_path, packed_digits):
    with np.load(packed_digits) as stored:
        payload, offsets = stored["test_jpeg"].copy(), stored["test_offsets"]
        train_size, test_size = len(stored["train_labels"]), len(stored["test_labels"])
    corrupt = payload.copy()
    corrupt[len(corrupt) // 2:] = 0  # the second half of the mosaic's entropy-coded data zeroed
    truncated = payload[: len(payload) // 3]
    cases = {
        "not an .npz archive": lambda p: p.write_bytes(b"plain text"),
        "format": lambda p: _rewrite(packed_digits, p, format=np.array("something else")),
        "missing fields": lambda p: _rewrite(packed_digits, p, train_labels=None),
        "offsets do not describe": lambda p: _rewrite(packed_digits, p, test_jpeg=truncated),
        "cannot be decoded": lambda p: _rewrite(packed_digits, p, test_jpeg=corrupt),
        "expected JPEG": lambda p: _rewrite(packed_digits, p, test_labels=np.zeros(250, np.uint8)),
        r"test labels must lie in 0..9, found 0..12": lambda p: _rewrite(
            packed_digits, p, test_labels=np.where(np.arange(test_size) == 7, 12, 0).astype(np.uint8)),
        "train_labels must be a flat array of integers": lambda p: _rewrite(
            packed_digits, p, train_labels=np.zeros(train_size, np.float32)),
        "the test split holds no images": lambda p: _rewrite(
            packed_digits, p, test_labels=np.zeros(0, np.uint8), test_jpeg=np.zeros(0, np.uint8),
            test_offsets=np.zeros(1, np.int64)),
    }
    for number, (message, make) in enumerate(cases.items()):
        path = tmp_path / f"bad-{number}.npz"
        make(path)
        with pytest.raises(data.DataError, match=message) as caught:
            data.load_cifar10(path)
        assert str(path) in str(caught.value)
    assert offsets[-1] == len(payload)


def test_a_pickled_object_inside_is_never_unpickled(tmp_path, packed_digits):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    path = tmp_path / "evil.npz"
    with np.load(packed_digits) as stored:
        fields = dict(stored.items())
    fields["class_names"] = np.array([Boom()], dtype=object)
    np.savez(path, **fields)
    with pytest.raises(data.DataError, match="cannot be read"):
        packed.read(path)
    with pytest.raises(data.DataError, match="no readable class names"):
        data.cifar10_class_names(path)


def test_a_mosaic_claiming_a_huge_size_is_refused_before_it_is_decoded(tmp_path, packed_digits):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (packed.COLUMNS * 32, 128)).save(buffer, "JPEG")
    header = bytearray(buffer.getvalue())
    frame = header.index(b"\xff\xc0")  # start of frame: length (2), precision (1), height (2), width (2)
    header[frame + 5:frame + 9] = (9_000).to_bytes(2, "big") * 2  # claims 9,000 x 9,000 pixels (243 MB)
    bomb = np.frombuffer(bytes(header), np.uint8)
    path = _rewrite(packed_digits, tmp_path / "bomb.npz", test_jpeg=bomb, test_offsets=np.array([0, bomb.size], np.int64))
    with pytest.raises(data.DataError, match="JPEG 9000x9000, expected JPEG 3200x128"):
        packed.read(path)


def test_command_line_pack(tmp_path, cifar_copy):
    out = tmp_path / "c.npz"
    command = [sys.executable, "-m", "supcon_lib", "pack", "--data-dir", str(cifar_copy["archive"]), "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert '"mean_abs_error"' in first.stdout and zipfile.is_zipfile(out)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr
    missing = subprocess.run([*command[:5], str(tmp_path / "nowhere"), "--out", str(tmp_path / "d.npz")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    assert not (tmp_path / "d.npz").exists()
