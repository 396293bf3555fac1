"""Datasets: CIFAR-10 from a local copy or a download, and an offline default.

Every loader returns ``(x_train, y_train), (x_test, y_test)`` with images as uint8 arrays of shape
``(N, 32, 32, 3)`` and integer labels of shape ``(N,)``.

* :func:`load_cifar10` reads the standard "python version" of CIFAR-10 (the ``cifar-10-batches-py``
  folder or the original ``cifar-10-python.tar.gz``) and falls back to Keras' own download.
  The batch files are pickles, so they are read with :class:`RestrictedUnpickler`, which admits
  only the handful of numpy constructors the format needs: a crafted file cannot run code.
  Archive members are read in memory, never extracted to disk.
  :mod:`supcon_lib.packed` writes and reads a compact (~30 MiB, JPEG q95) file of CIFAR-10 that
  ``load_cifar10`` accepts as well; :func:`pack_cifar10` packs a local copy into one.
* :func:`load_digits32` is the offline default: scikit-learn's 8x8 handwritten digits (1,797 real
  images that ship inside scikit-learn), upsampled to 32x32x3 with a fixed stratified split.
* :func:`stratified_subset` draws seeded, class-balanced subsets.

This module knows nothing of models; input pipelines live in ``supcon_lib.input_pipeline``.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from supcon_lib import packed
from supcon_lib.errors import DataError

CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
DIGITS_CLASS_NAMES = tuple(str(digit) for digit in range(10))

#: Environment variable naming a local CIFAR-10 copy (folder or archive).
CIFAR10_ENV_VAR = "SUPCON_CIFAR10_DIR"

IMAGE_SHAPE = (32, 32, 3)
_ROW_LENGTH = 32 * 32 * 3
_TRAIN_BATCH = re.compile(r"^data_batch_(\d+)$")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_PACKED_SUFFIX = ".npz"  # the compact file of supcon_lib.packed

__all__ = [
    "CIFAR10_CLASS_NAMES",
    "CIFAR10_ENV_VAR",
    "DIGITS_CLASS_NAMES",
    "DataError",
    "IMAGE_SHAPE",
    "RefusedPickle",
    "RestrictedUnpickler",
    "cifar10_class_names",
    "class_names",
    "load_cifar10",
    "load_dataset",
    "load_digits32",
    "pack_cifar10",
    "stratified_subset",
]


# --------------------------------------------------------------------------------------------
# Safe unpickling
# --------------------------------------------------------------------------------------------
def _numpy_reconstruct():
    # numpy >= 2 keeps it in numpy._core; older releases in numpy.core. Pickles written by either
    # name either module, and both names resolve to the same function.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


def _latin1_encode(text, encoding="latin1"):
    # Python 3 writes bytes at pickle protocol <= 2 as _codecs.encode(str, "latin1"); admit
    # exactly that, not arbitrary codecs.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedPickle(f"_codecs.encode with {encoding!r} is not allowed in a CIFAR-10 batch file")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RefusedPickle(pickle.UnpicklingError):
    """A batch file asked for something the CIFAR-10 format never needs."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10 batch files that refuses every global but numpy's array parts.

    Plain containers and scalars (dict, list, tuple, bytes, str, int, float) need no globals;
    bytes written by Python 3 at protocol 2 go through ``_codecs.encode(text, "latin1")``, which
    is admitted for that one encoding.
    Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) raises
    :class:`pickle.UnpicklingError` before it is ever called.
    """

    def find_class(self, module, name):
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise RefusedPickle(f"global '{module}.{name}' is not allowed in a CIFAR-10 batch file")
        return factory()

    def persistent_load(self, pid):
        raise RefusedPickle("persistent references are not allowed in a CIFAR-10 batch file")


def _unpickle(payload: bytes, source: str):
    try:
        return RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except RefusedPickle as exc:
        raise DataError(f"{source}: refused: {exc} (the file was not loaded)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise DataError(f"{source}: truncated or corrupt CIFAR-10 batch ({type(exc).__name__}: {exc})") from None


def _field(batch: dict, key: str, source: str):
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise DataError(f"{source}: not a CIFAR-10 batch: it has no '{key}' entry")


def _parse_batch(payload: bytes, source: str):
    batch = _unpickle(payload, source)
    if not isinstance(batch, dict):
        raise DataError(f"{source}: not a CIFAR-10 batch: expected a dict, found {type(batch).__name__}")
    data = _field(batch, "data", source)
    labels = _field(batch, "labels", source)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{source}: 'data' must be a uint8 array, found {kind}")
    if data.ndim != 2 or data.shape[1] != _ROW_LENGTH:
        raise DataError(
            f"{source}: 'data' must have shape (N, {_ROW_LENGTH}) (32x32x3 channel-major rows), "
            f"found {data.shape}"
        )
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: 'labels' is not a list of integers ({exc})") from None
    if labels.shape == (0,):  # an empty list reads as float64
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: 'labels' must be a flat list of integers, found {labels.dtype} {labels.shape}")
    if len(labels) != len(data):
        raise DataError(f"{source}: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _parse_meta(payload: bytes, source: str):
    meta = _unpickle(payload, source)
    names = meta.get(b"label_names", meta.get("label_names")) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{source}: batches.meta has no list of 10 'label_names'")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


# --------------------------------------------------------------------------------------------
# Finding the batch files in a folder or an archive
# --------------------------------------------------------------------------------------------
def _assemble(read, train_names, source):
    """Read the train batches (in numeric order) and the test batch with ``read(name)``."""
    if not train_names:
        raise DataError(f"{source}: no data_batch_N files (the CIFAR-10 training batches) found")
    parts = [_parse_batch(read(name), f"{source}/{name}") for name in train_names]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _parse_batch(read("test_batch"), f"{source}/test_batch")
    if len(x_train) == 0:
        raise DataError(f"{source}: the training batches ({', '.join(train_names)}) hold no images")
    if len(x_test) == 0:
        raise DataError(f"{source}/test_batch: the test batch holds no images")
    return (x_train, y_train), (x_test, y_test)


def _sorted_train_names(names):
    found = [(int(m.group(1)), n) for n in names if (m := _TRAIN_BATCH.match(n))]
    return [n for _, n in sorted(found)]


def _read_folder(folder: Path):
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if "test_batch" not in names:
        raise DataError(f"{folder}: missing file 'test_batch' (the CIFAR-10 test batch)")

    def read(name):
        path = folder / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None

    return _assemble(read, _sorted_train_names(names), str(folder))


def _read_archive(archive: Path):
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {}
            for member in tar.getmembers():
                if member.isfile():  # links, devices and folders are ignored, never followed
                    members.setdefault(Path(member.name).name, member)
            if "test_batch" not in members:
                raise DataError(f"{archive}: no member named 'test_batch' (is this a CIFAR-10 python archive?)")

            def read(name):
                handle = tar.extractfile(members[name])  # read in memory; nothing is written to disk
                return handle.read()

            return _assemble(read, _sorted_train_names(members), str(archive))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{archive}: truncated or corrupt archive ({type(exc).__name__}: {exc})") from None


def _class_names_from(location: Path):
    """The names in batches.meta when the copy has one, else the standard CIFAR-10 names."""
    meta = None
    if location.name.endswith(_PACKED_SUFFIX):
        meta = packed.class_names(location)
    elif location.is_dir():
        path = location / "batches.meta"
        if path.is_file():
            meta = _parse_meta(path.read_bytes(), str(path))
    return meta or CIFAR10_CLASS_NAMES


def _resolve_local_copy(path: Path) -> Path:
    """Turn what the user pointed at into a batch folder or an archive file."""
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder. Point data_dir (or ${CIFAR10_ENV_VAR}) at a "
            "'cifar-10-batches-py' folder, a folder holding it, a cifar-10-python.tar.gz archive "
            "or a packed .npz file (python -m supcon_lib pack)."
        )
    if path.is_file():
        if not path.name.endswith((*_ARCHIVE_SUFFIXES, _PACKED_SUFFIX)):
            raise DataError(f"{path}: not a folder, a .tar.gz/.tgz/.tar archive or a packed .npz file")
        return path
    if (path / "test_batch").exists() or any(_TRAIN_BATCH.match(p.name) for p in path.iterdir()):
        return path
    if (path / "cifar-10-batches-py").is_dir():
        return path / "cifar-10-batches-py"
    archives = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES))
    if len(archives) == 1:
        return archives[0]
    if len(archives) > 1:
        preferred = path / "cifar-10-python.tar.gz"
        if preferred in archives:
            return preferred
        listing = ", ".join(p.name for p in archives)
        raise DataError(f"{path}: several archives ({listing}); point at one of them")
    raise DataError(
        f"{path}: holds no CIFAR-10 copy (no data_batch_N/test_batch files, no 'cifar-10-batches-py' "
        "folder, no .tar.gz archive)"
    )


def _download_cifar10():
    """Keras' own download (works where the network allows, e.g. Colab)."""
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return (x_train, y_train.reshape(-1).astype(np.int64)), (x_test, y_test.reshape(-1).astype(np.int64))


def load_cifar10(data_dir=None):
    """Load CIFAR-10 as ``(x_train, y_train), (x_test, y_test)``.

    Sources, in order: ``data_dir``; the environment variable ``SUPCON_CIFAR10_DIR``; Keras'
    download. A local copy may be the ``cifar-10-batches-py`` folder (or a folder holding it),
    the original ``cifar-10-python.tar.gz``, or the compact ``.npz`` file of
    :mod:`supcon_lib.packed`; every ``data_batch_N`` present is read, so partial copies (such as
    a 10,000-image subset) load too. Images are uint8 (N, 32, 32, 3), labels int64 (N,).

    Raises :class:`DataError` (a ``ValueError``) naming the file and the problem: nothing at the
    path, a missing, truncated or refused batch, wrong shapes, or a download that failed.
    """
    location = data_dir if data_dir is not None else os.environ.get(CIFAR10_ENV_VAR) or None
    if location is not None:
        resolved = _resolve_local_copy(Path(location).expanduser())
        if resolved.name.endswith(_PACKED_SUFFIX):
            return packed.read(resolved)[0]
        return _read_archive(resolved) if resolved.is_file() else _read_folder(resolved)
    try:
        return _download_cifar10()
    except Exception as exc:  # no network, proxy, HTTP error, corrupt cache...
        raise DataError(
            "CIFAR-10 could not be downloaded "
            f"({type(exc).__name__}: {exc}). Point at a local copy instead: "
            f"load_cifar10(data_dir='path/to/cifar-10-batches-py') or export {CIFAR10_ENV_VAR}=PATH "
            "(a 'cifar-10-batches-py' folder or the cifar-10-python.tar.gz archive)."
        ) from None


def pack_cifar10(data_dir, path, quality=packed.DEFAULT_QUALITY, overwrite=False):
    """Pack a local CIFAR-10 copy (folder or archive; see :func:`load_cifar10`) into the compact
    file of :mod:`supcon_lib.packed` at ``path``; returns :func:`supcon_lib.packed.pack`'s summary.
    Raises ``ValueError`` without ``data_dir`` or for a quality outside 1..100 (before the copy is
    read), :class:`DataError` for an unreadable copy, and what ``packed.pack`` raises."""
    if data_dir is None:
        raise ValueError("pack_cifar10 needs data_dir: the CIFAR-10 copy to pack")
    packed.check_quality(quality)  # before reading the copy
    train, test = load_cifar10(data_dir)
    return packed.pack(path, train, test, cifar10_class_names(data_dir), quality, overwrite)


def cifar10_class_names(data_dir=None):
    """Class names of a local copy (from its batches.meta) or the standard ones."""
    location = data_dir if data_dir is not None else os.environ.get(CIFAR10_ENV_VAR) or None
    if location is None:
        return CIFAR10_CLASS_NAMES
    return _class_names_from(_resolve_local_copy(Path(location).expanduser()))


# --------------------------------------------------------------------------------------------
# The offline default: scikit-learn's digits at 32x32x3
# --------------------------------------------------------------------------------------------
def load_digits32(test_fraction=0.2, seed=0):
    """scikit-learn's 1,797 handwritten digits as 32x32x3 uint8 images, split 80/20 by class.

    The 8x8 images (values 0..16) are scaled to 0..255 and upsampled bilinearly; the grey value is
    copied into three channels so the same models and augmentations apply as for CIFAR-10. The
    split is stratified and fixed by ``seed``.
    """
    import keras  # here: the CIFAR-10 readers need no Keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)  # (N, 8, 8, 1)
    grey = keras.ops.convert_to_numpy(keras.ops.image.resize(grey, (32, 32), interpolation="bilinear", antialias=False))
    images = np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8), 3, axis=-1)
    labels = digits.target.astype(np.int64)
    test_size = int(round(len(labels) * test_fraction))
    test_idx = stratified_subset(labels, test_size, seed=seed)
    train_mask = np.ones(len(labels), bool)
    train_mask[test_idx] = False
    train_idx = np.flatnonzero(train_mask)
    train_idx = np.random.default_rng(seed).permutation(train_idx)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


# --------------------------------------------------------------------------------------------
# Subsets and the one entry point the notebooks use
# --------------------------------------------------------------------------------------------
def stratified_subset(labels, size, seed=0):
    """Indices of a seeded, class-stratified subset of ``size`` items, in shuffled order.

    Each class gets ``size`` times its share of ``labels``, rounded by largest remainder (ties
    go to the smaller class id), so a balanced set gives counts that differ by at most one.
    ``labels``: (N,) class ids; returns integer indices (size,). Raises ``ValueError`` for labels
    that are not one-dimensional or a size outside 1..N, ``TypeError`` for a non-integer size.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, found shape {labels.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an integer, found {type(size).__name__}")
    if not 1 <= size <= len(labels):
        raise ValueError(f"size must lie in 1..{len(labels)} (the number of items), found {size}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(int)
    remainder_order = np.lexsort((classes, -(exact - quota)))
    quota[remainder_order[: size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(chosen))


def class_names(dataset: str, data_dir=None):
    """Class names (a tuple of 10 str) for ``"cifar10"`` or ``"digits"``; raises ``ValueError``
    for another name and :class:`DataError` for an unreadable local CIFAR-10 copy."""
    if dataset == "digits":
        return DIGITS_CLASS_NAMES
    if dataset == "cifar10":
        return cifar10_class_names(data_dir)
    raise ValueError(f"unknown dataset {dataset!r}; expected 'cifar10' or 'digits'")


def load_dataset(dataset="digits", data_dir=None, train_size=None, test_size=None, seed=0):
    """Load ``"cifar10"`` or ``"digits"`` and optionally draw stratified subsets of each split.

    Returns ``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 32, 32, 3), int64 labels
    (N,). Raises ``ValueError`` for an unknown dataset or a subset size outside 1..N, and
    :class:`DataError` when CIFAR-10 can be neither read nor downloaded.
    """
    if dataset == "digits":
        (x_train, y_train), (x_test, y_test) = load_digits32()
    elif dataset == "cifar10":
        (x_train, y_train), (x_test, y_test) = load_cifar10(data_dir)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'cifar10' or 'digits'")
    for split, labels, size in (("training", y_train, train_size), ("test", y_test, test_size)):
        if len(labels) == 0:  # every loader refuses this already; a last guard for other sources
            raise DataError(f"the {dataset} {split} split holds no images")
        name = "train_size" if split == "training" else "test_size"
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer))
                                 or not 1 <= size <= len(labels)):
            raise DataError(f"{name} must lie in 1..{len(labels)} (the images of the {dataset} {split} split), "
                            f"found {size!r}")
    if train_size is not None:
        idx = stratified_subset(y_train, train_size, seed=seed)
        x_train, y_train = x_train[idx], y_train[idx]
    if test_size is not None:
        idx = stratified_subset(y_test, test_size, seed=seed + 1)
        x_test, y_test = x_test[idx], y_test[idx]
    return (x_train, y_train), (x_test, y_test)
