"""The run folder on disk: settings, per-epoch checkpoints, atomic writes, and its lock.

A run folder (``RUN_DIR``) holds::

    config.json          the settings of the run (a restart must use the same ones)
    checkpoints/         <phase>.json (epochs done, history) + the matching .npz of variables
    embedder.keras       pipeline + trained encoder (images -> features)
    metrics.json         written last: accuracies, times, history
    .lock                while a process trains into the folder

Everything is written whole or not at all (:func:`write_json`, :func:`save_model_atomically`: a
temporary file, then a rename), so a run killed at any moment leaves the files of its last
completed epoch. :class:`EpochCheckpointer` saves and restores one phase's variables (model,
optimizer, random-number states) with its history; :func:`check_run_dir` refuses a folder that
holds another run's settings or a damaged checkpoint before anything is written; :class:`RunLock`
keeps two processes from training into one folder (:class:`RunFolderBusy`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from supcon_lib import runtime

__all__ = [
    "CheckpointError",
    "EpochCheckpointer",
    "RunFolderBusy",
    "RunLock",
    "check_run_dir",
    "prepare_run_dir",
    "save_model_atomically",
    "write_json",
]


# ------------------------------------------------------------------------------------------------
# Writing files whole or not at all
# ------------------------------------------------------------------------------------------------
def _atomic_write_text(path, text):
    """Write ``text`` to ``path`` whole or not at all: a temporary file, then a rename. An error
    (or Ctrl-C) on the way leaves the old file as it was and removes the temporary one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path, value):
    """Write ``value`` to ``path`` as indented JSON with sorted keys, whole or not at all. NumPy
    scalars and arrays become numbers and lists."""
    _atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_model_atomically(model, path):
    """``model.save(path)`` (a ``.keras`` file), whole or not at all: the old file stays as it was
    until the new one is complete."""
    path = Path(path)
    temporary = path.with_name(f"{path.stem}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:  # the old file stays as it was; no half-written temporary is left
        temporary.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------
# Checkpoints of each epoch
# ------------------------------------------------------------------------------------------------
def _state_variables(model):
    """Every variable a resume needs: weights, batch-norm statistics, RNG states, optimizer slots."""
    return list(model.variables) + list(model.optimizer.variables)


class CheckpointError(ValueError):
    """A checkpoint that a run cannot resume from: damaged, incomplete, or another model's."""


def _checkpoint_keys(variables):
    """The name each variable is saved under: its ``path`` (``resnet_small/stem_conv/kernel``,
    ``sgd/iteration``, ...), made unique with ``#2``, ``#3``, ... should two share one."""
    keys, seen = [], {}
    for variable in variables:
        path = str(variable.path)
        seen[path] = seen.get(path, 0) + 1
        keys.append(path if seen[path] == 1 else f"{path}#{seen[path]}")
    return keys


def _without_numbering(key):
    """``key`` without the ``_<n>`` suffixes Keras gives automatic names (``sgd_1``, ``dense_3``,
    ``seed_generator_2``): they change each time a model is built again in one Python session."""
    import re

    return re.sub(r"_\d+(?=[/_#]|$)", "", key)


class EpochCheckpointer:
    """Saves (variables, epochs done, history) after each epoch of one phase; restores them.

    The ``.json`` file is the commit marker: it is replaced atomically after the ``.npz`` it
    names has been written completely, so a kill at any moment leaves the last complete epoch.
    The ``.npz`` holds every variable under its path (:func:`_checkpoint_keys`); a checkpoint
    whose variables are not the model's is refused (:class:`CheckpointError`) naming the first
    one that differs. Files written by earlier versions, keyed ``v0, v1, ...`` by position, are
    still read, matched by position and shape.
    """

    def __init__(self, run_dir, phase):
        self.folder = Path(run_dir) / "checkpoints"
        self.phase = phase
        self.marker = self.folder / f"{phase}.json"

    def _refuse(self, problem):
        return CheckpointError(f"{self.marker}: {problem}. The run cannot resume from it: use another output "
                               f"folder, or delete {self.folder.parent} to start this run again")

    def _state(self):
        """The marker's contents, checked (its ``.npz`` exists); None before the first epoch."""
        if not self.marker.exists():
            return None
        try:
            state = json.loads(self.marker.read_text())
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise self._refuse(f"unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict):
            raise self._refuse(f"expected a JSON object, found {type(state).__name__}")
        done, history, file = state.get("epochs_done"), state.get("history"), state.get("file")
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise self._refuse(f"epochs_done must be a non-negative integer, found {done!r}")
        if not isinstance(history, dict) or not all(
                isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                for values in history.values()):
            raise self._refuse("history must map each metric to a list of numbers")
        if not isinstance(file, str) or Path(file).name != file or not file.endswith(".npz"):
            raise self._refuse(f"file must name an .npz file in {self.folder}, found {file!r}")
        if not (self.folder / file).is_file():
            raise self._refuse(f"the variables file it names, {file}, is missing")
        return state

    def epochs_done(self):
        """The epochs this phase has completed (0 before the first); checks the checkpoint."""
        state = self._state()
        return 0 if state is None else state["epochs_done"]

    def _remove_leftovers(self, keep):
        """What a killed session may leave behind: temporaries, and an epoch's variables written
        but never committed by the marker (the next session writes that epoch again)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.glob(f"{self.phase}-epoch*.npz"):
            if path.name != keep:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(f".{self.phase}-epoch*.tmp.npz"):
            path.unlink(missing_ok=True)
        (self.folder / f".{self.marker.name}.tmp").unlink(missing_ok=True)

    def load(self, model):
        """Restore the last completed epoch into ``model``; return (epochs_done, history).

        Removes what a killed session left half-written. Raises :class:`CheckpointError` (and
        changes no variable) when the checkpoint is damaged or its variables are not the model's.
        """
        import zipfile

        # The optimizer's slots are part of what is restored, and they belong to the model's
        # strategy (TensorFlow), if any. Made here also when there is nothing to restore: Keras
        # would otherwise make them inside the first traced training step, and a variable made
        # there makes tf.function trace the step twice (and XLA compile it twice).
        if not model.optimizer.built:
            with runtime.strategy_scope(getattr(model, "distribute_strategy", None)):
                model.optimizer.build(model.trainable_variables)
        state = self._state()
        if state is None:
            self._remove_leftovers(keep=None)
            return 0, {}
        try:
            with np.load(self.folder / state["file"]) as stored:
                saved = {key: stored[key] for key in stored.files}  # in the order they were written
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self._refuse(f"its variables file {state['file']} is unreadable ({type(exc).__name__}: {exc})") from None
        variables = _state_variables(model)
        keys = _checkpoint_keys(variables)
        saved_keys = list(saved)
        if set(saved_keys) == set(keys):  # by path
            values = [saved[key] for key in keys]
        elif saved_keys == [f"v{i}" for i in range(len(saved_keys))]:  # an earlier version's file: by position
            if len(saved_keys) != len(variables):
                raise self._refuse(f"it holds {len(saved_keys)} variables (an earlier version's file, by position) "
                                   f"but the model has {len(variables)}")
            values = [saved[key] for key in saved_keys]
        else:  # the same model built again in this session: the same paths up to Keras' numbering, in order
            for index in range(max(len(keys), len(saved_keys))):
                key = keys[index] if index < len(keys) else None
                stored_key = saved_keys[index] if index < len(saved_keys) else None
                if key is None or stored_key is None or _without_numbering(key) != _without_numbering(stored_key):
                    break
            else:
                index = None
            if index is not None:
                if key is None:
                    problem = f"it holds {stored_key!r}, which the model does not have"
                elif stored_key is None:
                    problem = f"the model's variable {key!r} is not in it"
                else:
                    problem = f"the first variable that differs is {key!r} in the model, {stored_key!r} in the checkpoint"
                raise self._refuse(f"its variables are not the model's: {problem}")
            values = [saved[key] for key in saved_keys]
        for key, variable, value in zip(keys, variables, values):
            if tuple(value.shape) != tuple(variable.shape):
                raise self._refuse(f"its variables are not the model's: {key!r} has shape {tuple(value.shape)} "
                                   f"there and {tuple(variable.shape)} in the model")
        for variable, value in zip(variables, values):
            variable.assign(value)
        self._remove_leftovers(keep=state["file"])
        return state["epochs_done"], state["history"]

    def save(self, model, epochs_done, history):
        """Write ``model``'s state after ``epochs_done`` epochs with ``history``, then commit it
        with the marker (the previous epoch's variables are removed after that)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{self.phase}-epoch{epochs_done:04d}.npz"
        tmp = self.folder / f".{name}.tmp.npz"
        variables = _state_variables(model)
        arrays = {key: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                  for key, v in zip(_checkpoint_keys(variables), variables)}
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, self.folder / name)
        except BaseException:  # an error or Ctrl-C: no half-written file is left (a kill may leave one;
            tmp.unlink(missing_ok=True)  # the next load removes it)
            raise
        previous = json.loads(self.marker.read_text())["file"] if self.marker.exists() else None
        write_json(self.marker, {"epochs_done": epochs_done, "history": history, "file": name})
        if previous and previous != name:
            (self.folder / previous).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# The run folder: its settings and its lock
# ------------------------------------------------------------------------------------------------
# Settings that change how a run reports, not what it trains: a run may resume with other values.
_NOT_COMPARED = ("verbose", "monitor_geometry")


def _saved_settings(config):
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_COMPARED}


def check_run_dir(run_dir, config):
    """Raise ValueError if ``run_dir`` holds a run with other settings (resuming needs the same),
    an unreadable ``config.json``, or a damaged checkpoint (:class:`CheckpointError`): all of it
    before anything is written."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir} exists and is not a folder")
    config_path = run_dir / "config.json"
    if config_path.exists():
        try:
            existing = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"{config_path}: unreadable ({type(exc).__name__}: {exc}); "
                             "use another output folder") from None
        if not isinstance(existing, dict):
            raise ValueError(f"{config_path}: not the settings of a run (a JSON object), but a "
                             f"{type(existing).__name__}; use another output folder")
        for key in _NOT_COMPARED:
            existing.pop(key, None)
        wanted = _saved_settings(config)
        different = sorted(k for k in set(wanted) | set(existing) if wanted.get(k) != existing.get(k))
        if different:
            raise ValueError(
                f"{run_dir} holds a run with other settings ({', '.join(different)}); "
                "use another output folder, or the same settings to resume it"
            )
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir():
        for marker in sorted(checkpoints.glob("*.json")):
            EpochCheckpointer(run_dir, marker.stem).epochs_done()  # raises CheckpointError if damaged


def prepare_run_dir(run_dir, config):
    """Check ``run_dir`` (:func:`check_run_dir`), create it, and write ``config.json`` unless a
    resumed run's is there; returns the folder as a ``Path``."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if not config_path.exists():  # a resumed run's (checked above) stays as it is
        write_json(config_path, _saved_settings(config))
    return run_dir


class RunFolderBusy(RuntimeError):
    """The run folder is locked by another training process."""


class RunLock:
    """An exclusive lock on a run folder: two processes never train into the same one.

    While a run holds the folder, ``RUN_DIR/.lock`` exists and carries an advisory ``flock``,
    which the system releases when the process ends, however it ends (a kill included): a lock
    file left behind by a killed run never blocks the next one. A run that ends removes the file
    (while it still holds the lock; whoever locked the removed file tries again on a new one).
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / ".lock"
        self.handle = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; single use is the user's job there
            return self
        while True:
            handle = open(self.path, "a")  # "a": never truncates a file another process holds
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise RunFolderBusy(f"{self.path.parent} is in use by another training process (it holds "
                                    f"{self.path.name}); wait for it to end, or use another output folder") from None
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(handle.fileno()).st_ino:
                self.handle = handle
                return self
            handle.close()  # locked a file that its holder removed when it ended: lock the new one

    def __exit__(self, *exc):
        if self.handle is not None:
            self.path.unlink(missing_ok=True)  # before the lock is released (see the class docstring)
            self.handle.close()  # closing releases the lock
            self.handle = None
        return False

