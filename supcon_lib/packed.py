"""The compact CIFAR-10 file: the whole data set in about 30 MiB, to copy to a GPU machine.

The python version of CIFAR-10 is 163 MiB (184 MiB of raw pixels) and no lossless image codec
brings it much below 90 MiB. This file stores every split as JPEG mosaics instead: 10,000 images
as a 100 x 100 grid of 32 x 32 tiles, encoded at quality 95 without chroma subsampling. A tile
edge falls on JPEG's 8 x 8 block grid, so no block mixes two images: each image decodes as if it
had been compressed alone, without 60,000 file headers. Measured on the 12,000 real images of the
development subset: 5.3 MB per 10,000 images, a mean absolute error of 0.72 grey levels (of 255)
and at most 22; far less than any augmentation changes.

The container is a plain ``.npz`` (read with ``allow_pickle=False``: nothing in it can run code):

    format                 "supcon-cifar10-jpeg/1"
    class_names            (10,) str
    quality                JPEG quality used
    {split}_jpeg           (bytes,) uint8: the mosaics' JPEG files, one after another
    {split}_offsets        (mosaics + 1,) int64: where each mosaic starts and ends
    {split}_labels         (N,) uint8, in 0..9
    {split}_mean_abs_error the pixel error measured when the file was written

for ``split`` in ``train`` and ``test``. :func:`pack` writes one from arrays,
:func:`supcon_lib.data.pack_cifar10` from any CIFAR-10 copy (``python -m supcon_lib pack``), and
:func:`supcon_lib.data.load_cifar10` reads it like a folder or an archive (this module knows the
file, not the other copies, and imports nothing of ``data``). Decoding needs Pillow (already
installed with matplotlib).
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from supcon_lib.errors import DataError

__all__ = [
    "COLUMNS",
    "DEFAULT_QUALITY",
    "FORMAT",
    "MOSAIC_IMAGES",
    "NUM_CLASSES",
    "PackedFileError",
    "SPLITS",
    "TILE",
    "check_quality",
    "class_names",
    "pack",
    "read",
]

FORMAT = "supcon-cifar10-jpeg/1"
SPLITS = ("train", "test")
TILE = 32
COLUMNS = 100  # tiles per mosaic row
MOSAIC_IMAGES = COLUMNS * COLUMNS  # 10,000 images per mosaic: 3,200 x 3,200 pixels
DEFAULT_QUALITY = 95
NUM_CLASSES = 10  # labels lie in 0..9


class PackedFileError(DataError):
    """A packed file that is missing, malformed, or not one of ours."""


def _mosaic(images):
    """(n <= MOSAIC_IMAGES, 32, 32, 3) -> one (rows * 32, COLUMNS * 32, 3) image, black padding."""
    rows = -(-len(images) // COLUMNS)
    grid = np.zeros((rows * COLUMNS, TILE, TILE, 3), np.uint8)
    grid[: len(images)] = images
    return grid.reshape(rows, COLUMNS, TILE, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(rows * TILE, COLUMNS * TILE, 3)


def _tiles(mosaic, count):
    rows = mosaic.shape[0] // TILE
    grid = mosaic.reshape(rows, TILE, COLUMNS, TILE, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * COLUMNS, TILE, TILE, 3)[:count]


def _encode(images, quality):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_mosaic(images)).save(buffer, "JPEG", quality=quality, subsampling=0, optimize=True)
    return buffer.getvalue()


def _decode(payload, count, source):
    from PIL import Image

    rows = -(-count // COLUMNS)
    try:
        image = Image.open(io.BytesIO(payload))
        expected = (COLUMNS * TILE, rows * TILE)
        if image.format != "JPEG" or image.size != expected:  # checked before any pixel is decoded
            raise PackedFileError(f"{source}: a mosaic is {image.format} {image.size[0]}x{image.size[1]}, "
                                  f"expected JPEG {expected[0]}x{expected[1]} for {count} images")
        pixels = np.asarray(image.convert("RGB"))
    except PackedFileError:
        raise
    except Exception as exc:  # Pillow's errors for truncated or corrupt data vary by version
        raise PackedFileError(f"{source}: a mosaic cannot be decoded ({type(exc).__name__}: {exc})") from None
    return _tiles(pixels, count)


def _check_split(images, labels, name):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (TILE, TILE, 3):
        raise ValueError(f"{name} images: expected uint8 of shape (N, 32, 32, 3), found {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError(f"the {name} split holds no images")
    if labels.shape != (len(images),):
        raise ValueError(f"{name} labels: expected shape ({len(images)},) for {len(images)} images, found {labels.shape}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES or not np.all(labels == np.round(labels)):
        raise ValueError(f"{name} labels: expected integers in 0..{NUM_CLASSES - 1} (the CIFAR-10 classes), "
                         f"found {labels.min()}..{labels.max()}")
    return images, labels.astype(np.uint8)


def check_quality(quality):
    """``quality`` as an int if it is a JPEG quality in 1..100; else ``ValueError``."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100 (an integer), found {quality!r}")
    return int(quality)


def pack(path, train, test, class_names, quality=DEFAULT_QUALITY, overwrite=False):
    """Write ``train`` = (images, labels) and ``test`` likewise to the packed file ``path``.

    The file appears whole or not at all (written to a temporary name, then renamed). Returns a
    summary: bytes written and each split's size and measured pixel error. Images are uint8
    (N, 32, 32, 3), labels integers (N,) in 0..255.

    Raises:
        ValueError: a name not ending in .npz, a quality outside 1..100, images or labels of
            another shape or range.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: a packed file's name must end in .npz")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
    quality = check_quality(quality)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder")
    arrays = {"format": np.array(FORMAT), "class_names": np.array(list(class_names)), "quality": np.array(int(quality))}
    summary = {"path": str(path), "quality": int(quality), "splits": {}}
    for name, split in zip(SPLITS, (train, test)):
        images, labels = _check_split(*split, name)
        mosaics = [_encode(images[i:i + MOSAIC_IMAGES], quality) for i in range(0, len(images), MOSAIC_IMAGES)]
        decoded = np.concatenate([_decode(m, len(images[i * MOSAIC_IMAGES:(i + 1) * MOSAIC_IMAGES]), name)
                                  for i, m in enumerate(mosaics)])
        error = np.abs(decoded.astype(np.int16) - images.astype(np.int16))
        arrays[f"{name}_jpeg"] = np.frombuffer(b"".join(mosaics), np.uint8)
        arrays[f"{name}_offsets"] = np.cumsum([0] + [len(m) for m in mosaics]).astype(np.int64)
        arrays[f"{name}_labels"] = labels
        arrays[f"{name}_mean_abs_error"] = np.array(float(error.mean()))
        summary["splits"][name] = {"images": len(images), "jpeg_bytes": int(arrays[f"{name}_jpeg"].size),
                                   "mean_abs_error": float(error.mean()), "max_abs_error": int(error.max())}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would make a file only we can read
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)  # JPEG data does not compress further: stored, not deflated
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    summary["bytes"] = path.stat().st_size
    return summary


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def class_names(path):
    """The class names (a tuple of str) stored in a packed file, without decoding any image.
    Raises :class:`PackedFileError` when they cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return tuple(str(n) for n in stored["class_names"])
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise PackedFileError(f"{path}: no readable class names ({type(exc).__name__}: {exc})") from None


def read(path):
    """``((x_train, y_train), (x_test, y_test)), class_names`` from a packed file: images uint8
    (N, 32, 32, 3), labels int64 (N,), names a tuple of str. Raises :class:`PackedFileError` (a
    ``DataError``) for a file that is not a complete, readable packed file."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise PackedFileError(f"{path}: not a packed CIFAR-10 file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            fields = dict(stored.items())
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise PackedFileError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if fields.get("format", np.array("")).item() != FORMAT:
        raise PackedFileError(f"{path}: not a packed CIFAR-10 file (format {fields.get('format')!r}, expected {FORMAT!r})")
    missing = [f"{s}_{k}" for s in SPLITS for k in ("jpeg", "offsets", "labels") if f"{s}_{k}" not in fields]
    if missing or "class_names" not in fields:
        raise PackedFileError(f"{path}: missing fields {missing or ['class_names']}")
    splits = []
    for name in SPLITS:
        payload, offsets, labels = fields[f"{name}_jpeg"], fields[f"{name}_offsets"], fields[f"{name}_labels"]
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise PackedFileError(f"{path}: {name}_labels must be a flat array of integers, "
                                  f"found {labels.dtype} {labels.shape}")
        count = len(labels)
        if count == 0:
            raise PackedFileError(f"{path}: the {name} split holds no images")
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise PackedFileError(f"{path}: {name} labels must lie in 0..{NUM_CLASSES - 1}, "
                                  f"found {labels.min()}..{labels.max()}")
        expected = -(-count // MOSAIC_IMAGES)
        if (offsets.ndim != 1 or len(offsets) != expected + 1 or offsets[0] != 0 or offsets[-1] != payload.size
                or np.any(np.diff(offsets) <= 0)):
            raise PackedFileError(f"{path}: {name}_offsets do not describe {expected} mosaics in {payload.size} bytes")
        images = [
            _decode(payload[offsets[i]:offsets[i + 1]].tobytes(), min(MOSAIC_IMAGES, count - i * MOSAIC_IMAGES),
                    f"{path} ({name}, mosaic {i})")
            for i in range(expected)
        ]
        splits.append((np.concatenate(images), labels.astype(np.int64)))
    return tuple(splits), tuple(str(n) for n in fields["class_names"])
