"""supcon_lib.training and what it runs on (run_config, checkpoint, input_pipeline, optim, runtime):
both recipes learn, resume is exact, settings are checked."""

import json
import pathlib

import keras
import numpy as np
import pytest

from backend_utils import (BACKEND, BFLOAT16_XLA, FLOAT16_XLA, assert_trained_with, to_numpy,
                           variables_created_while_tracing)
from supcon_lib import checkpoint, data, input_pipeline, optim, run_config, runtime, training

# A tiny, fixed slice of the offline digits: big enough to learn, small enough for seconds.
# float32 whatever the device: on a GPU, "auto" would pick mixed precision and loosen what the
# resume tests compare (the learning runs below force the GPU settings on purpose).
TINY = dict(train_size=300, test_size=100, batch_size=50, encoder="resnet_small", seed=0, verbose=0, precision="float32")


@pytest.fixture(scope="module")
def digits_arrays():
    config = run_config.RunConfig.from_profile("smoke", "ce", **TINY)
    return training.load_data(config)


# What a GPU reader runs: XLA on and mixed precision (float16 on a T4, bfloat16 from the A100 on),
# forced on the CPU, where XLA refuses the same operations as on a GPU (before the augmentation was
# written with gathers, both recipes failed here at their first step). The learning runs below use
# them: on TensorFlow float16 with XLA for both recipes; on JAX, which always compiles, float16
# for cross-entropy and bfloat16 for SupCon (what the JAX script picks on an A100 or H200). The
# CPU's own default (float32, and XLA off on TensorFlow) trains in test_interruptions.py (SupCon
# from the command line, both phases judged), test_budget.py and test_benchmarks.py
# (cross-entropy), test_hybrid_and_momentum.py (the momentum recipe; the hybrid on JAX) and the
# notebooks.
GPU_SETTINGS = {"ce": FLOAT16_XLA, "supcon": FLOAT16_XLA if BACKEND == "tensorflow" else BFLOAT16_XLA}
CE_SETTINGS = dict(TINY, epochs=6, **GPU_SETTINGS["ce"])


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory, digits_arrays):
    """One cross-entropy run of CE_SETTINGS, trained once for the tests that read it: its folder,
    its result, and the variables made while a step was traced (there should be none)."""
    run_dir = tmp_path_factory.mktemp("ce_run") / "ce"
    config = run_config.RunConfig.from_profile("smoke", "ce", **CE_SETTINGS)
    with variables_created_while_tracing() as created:
        result = training.run(config, run_dir, arrays=digits_arrays)
    return run_dir, result, created


def test_cross_entropy_baseline_learns(ce_run, digits_arrays):
    run_dir, result, created = ce_run
    assert created == []  # each traced step made once, not twice (TensorFlow)
    metrics = result.metrics
    assert_trained_with(metrics, GPU_SETTINGS["ce"])
    assert metrics["method"] == "ce" and metrics["epochs"] == 6
    assert len(metrics["history"]["train"]["loss"]) == 6 and np.all(np.isfinite(metrics["history"]["train"]["loss"]))
    assert metrics["history"]["train"]["loss"][-1] < metrics["history"]["train"]["loss"][0]
    assert metrics["test_accuracy"] > 0.5  # chance is 0.1
    assert metrics["knn_accuracy"] > 0.5
    # The geometry monitor's values, one per epoch; no projection head, so no projection values.
    history = metrics["history"]["train"]
    assert len(history["feature_alignment"]) == len(history["feature_uniformity"]) == 6
    assert all(0 <= a <= 4 for a in history["feature_alignment"])
    assert all(-8 <= u <= 0 for u in history["feature_uniformity"])
    assert "projection_alignment" not in history
    with pytest.raises(ValueError, match="no projection head"):
        result.project(digits_arrays[1][0][:4])
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    for key in ("method", "dataset", "encoder", "train_size", "test_size", "epochs", "test_accuracy",
                "knn_accuracy", "train_seconds", "history"):
        assert key in on_disk
    assert on_disk["test_accuracy"] == metrics["test_accuracy"]
    assert not list(run_dir.rglob("*.tmp*"))  # atomic writes leave no temporaries


def test_supcon_two_phase_learns(tmp_path, digits_arrays):
    config = run_config.RunConfig.from_profile("smoke", "supcon", epochs=4, probe_epochs=30,
                                               **dict(TINY, **GPU_SETTINGS["supcon"]))
    with variables_created_while_tracing() as created:
        result = training.run(config, tmp_path / "supcon", arrays=digits_arrays)
    assert created == []  # both phases' steps traced once (TensorFlow)
    metrics = result.metrics
    assert_trained_with(metrics, GPU_SETTINGS["supcon"])
    pretrain = metrics["history"]["pretrain"]["loss"]
    assert len(pretrain) == 4 and np.all(np.isfinite(pretrain)) and pretrain[-1] < pretrain[0]
    assert len(metrics["history"]["probe"]["loss"]) == 30
    assert metrics["test_accuracy"] > 0.5 and metrics["knn_accuracy"] > 0.5
    for key in ("feature_alignment", "feature_uniformity", "projection_alignment", "projection_uniformity"):
        assert len(metrics["history"]["pretrain"][key]) == 4
        assert key not in metrics["history"]["probe"]  # the monitor watches phase 1 only
    x_few = digits_arrays[1][0][:8]
    assert result.project(x_few).shape == (8, config.projection_dim)
    np.testing.assert_array_equal(result.predict(x_few), np.argmax(result.logits(x_few), axis=1))
    # The encoder is frozen in phase 2: the saved weights are the final ones, bit for bit, and
    # reproduce the embeddings. The reloaded encoder computes in float32 (the policy is restored
    # after the run); bfloat16 rounds embedding values of 2 to 4 to steps of 2 ** -6 = 0.0156
    # (measured: 0.0156 apart at most), while float16 keeps 1e-4.
    encoder, pipeline, saved_config = training.load_encoder(tmp_path / "supcon")
    assert saved_config.method == "supcon"
    assert [w.path for w in encoder.weights] == [w.path for w in result.encoder.weights]
    for saved, final in zip(encoder.weights, result.encoder.weights):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(final), err_msg=saved.path)
    x_test = digits_arrays[1][0][:16]
    reloaded = encoder(pipeline(x_test, training=False), training=False)
    tolerance = 0.02 if metrics["precision"] == BFLOAT16_XLA["precision"] else 1e-4
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded), result.embed(x_test), atol=tolerance)


class EpochLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


# Interruptions and resumes (real kills, each resume compared with an uninterrupted run) are in
# tests/test_interruptions.py; a finished run started again, and other settings in its folder:
@pytest.mark.backend_independent
def test_finished_run_started_again_trains_nothing(ce_run, digits_arrays):
    run_dir, result, _ = ce_run
    config = run_config.RunConfig.from_profile("smoke", "ce", **CE_SETTINGS)
    log = EpochLog()
    again = training.run(config, run_dir, callbacks=[log], arrays=digits_arrays)
    assert log.epochs == []
    assert again.metrics["history"] == result.metrics["history"]
    assert again.metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    # The monitor only reads the model: turning it off does not make the folder "other settings".
    quiet = run_config.RunConfig(**{**config.to_dict(), "monitor_geometry": 0})
    assert training.run(quiet, run_dir, arrays=digits_arrays).metrics["history"] == result.metrics["history"]


@pytest.mark.backend_independent
def test_other_settings_in_the_same_folder_are_refused(ce_run, digits_arrays):
    folder = ce_run[0]
    before = (folder / "config.json").read_text()
    other = run_config.RunConfig.from_profile("smoke", "ce", **dict(CE_SETTINGS, epochs=7))
    with pytest.raises(ValueError, match="other settings \\(epochs\\)"):
        training.run(other, folder, arrays=digits_arrays)
    assert (folder / "config.json").read_text() == before


@pytest.mark.parametrize("batch_size", [300, 64])
def test_batch_norm_recalibration_averages_the_batch_statistics(batch_size):
    """Every batch-norm layer's moving mean and variance become the mean of its per-batch mean and
    (biased) variance over the full batches of the first max_images images; nothing else changes."""
    rng = np.random.default_rng(0)
    images = rng.normal(2.0, 3.0, size=(1200, 4, 4, 3)).astype("float32")
    inner = keras.Sequential([keras.layers.Conv2D(5, 3, padding="same"), keras.layers.BatchNormalization(momentum=0.9)])
    encoder = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(momentum=0.9), inner])
    pipeline = keras.layers.Rescaling(0.5)
    encoder(images[:2], training=False)
    first_norm, conv, second_norm = encoder.layers[0], inner.layers[0], inner.layers[1]
    weights = [keras.ops.convert_to_numpy(w) for w in encoder.trainable_weights]
    training.recalibrate_batch_norm(encoder, images, pipeline, batch_size, max_images=1000)

    used = (min(1000, len(images)) // batch_size) * batch_size
    batches = keras.ops.convert_to_numpy(pipeline(images[:used])).reshape(-1, batch_size, 4, 4, 3)
    expected_mean = np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0)
    expected_var = np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first_norm.moving_mean), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first_norm.moving_variance), expected_var, rtol=1e-4)
    # The nested layer sees the first layer's output in training mode (normalised by batch statistics).
    kernel, bias = keras.ops.convert_to_numpy(conv.kernel), keras.ops.convert_to_numpy(conv.bias)
    gamma, beta = keras.ops.convert_to_numpy(first_norm.gamma), keras.ops.convert_to_numpy(first_norm.beta)
    conv_out = []
    for b in batches:
        normed = (b - b.mean(axis=(0, 1, 2))) / np.sqrt(b.var(axis=(0, 1, 2)) + first_norm.epsilon) * gamma + beta
        conv_out.append(keras.ops.convert_to_numpy(keras.ops.conv(normed, kernel, padding="same")) + bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(second_norm.moving_mean),
                               np.mean([c.mean(axis=(0, 1, 2)) for c in conv_out], axis=0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(second_norm.moving_variance),
                               np.mean([c.var(axis=(0, 1, 2)) for c in conv_out], axis=0), rtol=1e-3)
    assert first_norm.momentum == second_norm.momentum == 0.9  # restored
    for before, after in zip(weights, encoder.trainable_weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))


@pytest.mark.backend_independent
def test_checkpoint_marker_is_the_commit_point(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    saver = checkpoint.EpochCheckpointer(tmp_path, "phase")
    saver.save(model, 1, {"loss": [1.0]})
    saved = [v.numpy().copy() for v in model.variables]
    # A kill after writing the next .npz but before the marker: the marker still names epoch 1.
    for variable in model.variables:
        variable.assign(variable.numpy() + 1)
    np.savez(tmp_path / "checkpoints" / "phase-epoch0002.npz", v0=np.zeros(1))
    (tmp_path / "checkpoints" / ".phase-epoch0003.npz.tmp.npz").write_bytes(b"half")  # more of a kill's leftovers
    (tmp_path / "checkpoints" / ".phase.json.tmp").write_text('{"epochs_do')
    done, history = saver.load(model)
    assert done == 1 and history == {"loss": [1.0]}
    for variable, value in zip(model.variables, saved):
        np.testing.assert_array_equal(variable.numpy(), value)
    # The leftovers are gone: the next epoch writes them again.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["phase-epoch0001.npz", "phase.json"]


@pytest.mark.backend_independent
def test_epoch_order_depends_only_on_seed_and_epoch():
    np.testing.assert_array_equal(input_pipeline.epoch_order(50, 3, 7), input_pipeline.epoch_order(50, 3, 7))
    assert not np.array_equal(input_pipeline.epoch_order(50, 3, 7), input_pipeline.epoch_order(50, 3, 8))
    assert not np.array_equal(input_pipeline.epoch_order(50, 3, 7), input_pipeline.epoch_order(50, 4, 7))
    assert sorted(input_pipeline.epoch_order(50, 3, 7)) == list(range(50))


class _Recorder(keras.layers.Layer):
    """Identity that writes down every concrete batch it sees (the model runs eagerly)."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.built = True  # no weights to create

    def call(self, inputs):
        try:  # symbolic tensors and JAX tracers (Keras' build pass) have no values
            values = keras.ops.convert_to_numpy(inputs)
        except Exception:
            return inputs
        self.seen.append(values[:, 0].astype(int))  # if nothing converts, the test fails on len(seen)
        return inputs

    def compute_output_shape(self, input_shape):  # so building the model never calls call()
        return input_shape


def test_fit_visits_every_epoch_in_epoch_order():
    # What fit really consumes, on whichever backend runs the tests (tf.data on TensorFlow,
    # EpochBatches elsewhere): epochs 7 and 8 of seed 3, full batches of 10 out of 53 items.
    items = np.arange(53, dtype=np.float32)[:, None]
    recorder = _Recorder()
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(recorder(inputs)))
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    model.fit(input_pipeline.make_dataset(items, items, 10, seed=3, first_epoch=7, last_epoch=9),
              initial_epoch=7, epochs=9, steps_per_epoch=5, verbose=0, shuffle=False)
    assert len(recorder.seen) == 10 and all(len(batch) == 10 for batch in recorder.seen)
    np.testing.assert_array_equal(np.concatenate(recorder.seen[:5]), input_pipeline.epoch_order(53, 3, 7)[:50])
    np.testing.assert_array_equal(np.concatenate(recorder.seen[5:]), input_pipeline.epoch_order(53, 3, 8)[:50])


def test_unshuffled_dataset_is_one_pass_in_order():
    items = np.arange(23)
    dataset = input_pipeline.make_dataset(items, items, 10, shuffle=False)
    batches = [keras.ops.convert_to_numpy(x) for x, _ in (dataset if hasattr(dataset, "element_spec")
                                                          else (dataset[i] for i in range(len(dataset))))]
    assert [len(b) for b in batches] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate(batches), items)


def test_warmup_then_cosine_schedule():
    config = run_config.RunConfig.from_profile("cpu", "supcon", batch_size=256, epochs=10)
    schedule = optim.learning_rate_schedule(config, steps_per_epoch=10, epochs=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 99)]
    peak = config.base_learning_rate
    assert peak == pytest.approx(0.125)  # 0.5 at batch 1024, scaled to 256
    assert rates[0] < rates[1] < rates[2] == pytest.approx(peak)  # one warm-up epoch of ten
    assert rates[2] > rates[3] > rates[4] > 0


def test_device_choices(monkeypatch):
    # Whatever this machine has: the choices are made from what accelerator_info reports.
    cases = {("cpu", ()): "float32", ("gpu", (6.1,)): "float32", ("gpu", (7.5,)): "mixed_float16",
             ("gpu", (8.0,)): "mixed_bfloat16", ("gpu", (9.0, 9.0)): "mixed_bfloat16", ("gpu", (7.5, 8.0)): "mixed_float16",
             ("tpu", ()): "mixed_bfloat16"}
    for (kind, capabilities), expected in cases.items():
        monkeypatch.setattr(runtime, "accelerator_info", lambda k=kind, c=capabilities: (k, list(c)))
        assert runtime.select_precision() == expected
        # XLA: always on JAX (jax.jit), on accelerators with TensorFlow, off for TensorFlow on a CPU.
        assert runtime.select_jit() is (keras.backend.backend() == "jax" or kind != "cpu")
    assert runtime.select_precision("float32") == "float32"
    assert runtime.select_jit("on") is True and runtime.select_jit("off") is False


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=-1), "batch_size"),
        (dict(encoder="vgg"), "encoder"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=float("inf")), "finite"),
        (dict(temperature=float("nan")), "finite"),
        (dict(temperature=1e-5), "temperature must be >= "),
        (dict(formulation="median"), "formulation"),
        (dict(loss="simclr", views=1), "two views"),
        (dict(loss="npairs", views=2), "one view"),
        (dict(dataset="mnist"), "dataset"),
        (dict(train_size=5), "train_size"),
        (dict(optimizer="lamb"), "optimizer"),
        (dict(learning_rate=float("inf")), "learning_rate must be a finite number > 0"),
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number > 0"),
        (dict(learning_rate=0.0), "learning_rate must be a finite number > 0"),
        (dict(learning_rate=True), "learning_rate must be a finite number > 0"),
        (dict(weight_decay=float("inf")), "weight_decay must be a finite number >= 0"),
        (dict(weight_decay=-1e-4), "weight_decay must be a finite number >= 0"),
        (dict(probe_learning_rate=float("nan")), "probe_learning_rate must be a finite number > 0"),
        (dict(warmup_epochs=float("inf")), "warmup_epochs must be a finite number >= 0"),
        (dict(monitor_geometry=1), "monitor_geometry"),
        (dict(monitor_geometry=-5), "monitor_geometry"),
        (dict(monitor_geometry=True), "monitor_geometry"),
        (dict(bogus=1), "unknown settings"),
    ],
)
def test_invalid_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        run_config.RunConfig.from_profile("smoke", "supcon", **overrides)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name, value, message", [
    ("temperature", float("inf"), "finite"), ("temperature", 1e-5, "temperature must be >= "),
    ("temperature", float("nan"), "finite"), ("formulation", "median", "formulation"), ("views", 0, "views"),
    ("learning_rate", float("inf"), "learning_rate must be a finite number"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number"),
    ("weight_decay", float("nan"), "weight_decay must be a finite number"),
])
def test_run_refuses_bad_settings_before_writing_anything(tmp_path, name, value, message):
    config = run_config.RunConfig.from_profile("smoke", "supcon", **TINY)
    setattr(config, name, value)  # a config changed after it was checked
    with pytest.raises(ValueError, match=message):
        training.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy", ["mirrored", "tpu"])
def test_tensorflow_strategies_are_refused_on_other_backends_before_writing_anything(tmp_path, monkeypatch, strategy):
    # The JAX pass runs this on JAX itself; the TensorFlow pass stands in for another backend.
    if keras.backend.backend() == "tensorflow":
        monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match=f"strategy '{strategy}' needs the TensorFlow backend"):
        run_config.RunConfig.from_profile("smoke", "supcon", strategy=strategy, **TINY)
    config = run_config.RunConfig.from_profile("smoke", "supcon", **TINY)
    config.strategy = strategy  # a config changed after it was checked
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        training.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # no config.json, no lock


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.backend_independent
@pytest.mark.parametrize("contents, message", [
    (b"{not json", "config.json: unreadable"),
    (b"\xff\xfe\x00", "config.json: unreadable"),
    (b"[1, 2]", "not the settings of a run .* but a list"),
    (b'"supcon"', "not the settings of a run .* but a str"),
    (b'{"method": "ce", "epochs": "three"}', "other settings"),
])
def test_corrupt_config_json_is_refused_and_left_alone(tmp_path, digits_arrays, contents, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_bytes(contents)
    config = run_config.RunConfig.from_profile("smoke", "ce", **dict(TINY, epochs=1))
    with pytest.raises(ValueError, match=message):
        training.run(config, run_dir, arrays=digits_arrays)
    assert _files(run_dir) == {"config.json": contents}  # no lock file, nothing else


def _dense_model(units=2, extra_layer=False):
    layers = [keras.Input((3,)), keras.layers.Dense(units)] + ([keras.layers.Dense(2)] if extra_layer else [])
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    for index, variable in enumerate(model.variables):
        variable.assign(np.full(variable.shape, index + 1.5, variable.dtype))
    return model


def _values(model):
    return [np.array(v.numpy()) for v in checkpoint._state_variables(model)]


@pytest.mark.backend_independent
def test_checkpoints_are_keyed_by_variable_path_and_survive_a_rebuild(tmp_path):
    model = _dense_model()
    saver = checkpoint.EpochCheckpointer(tmp_path, "phase")
    saver.save(model, 1, {"loss": [1.0]})
    with np.load(tmp_path / "checkpoints" / "phase-epoch0001.npz") as stored:
        assert list(stored.files) == [v.path for v in checkpoint._state_variables(model)]
    # Built again in this session: Keras numbers its automatic names anew (dense_1, sgd_1, ...).
    rebuilt = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    rebuilt.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    assert {v.path for v in rebuilt.variables}.isdisjoint(v.path for v in model.variables)
    assert saver.load(rebuilt) == (1, {"loss": [1.0]})
    for got, want in zip(_values(rebuilt), _values(model)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.backend_independent
def test_checkpoint_of_another_model_is_refused_naming_the_first_difference(tmp_path):
    saver = checkpoint.EpochCheckpointer(tmp_path, "phase")
    saver.save(_dense_model(), 1, {})
    other = _dense_model(extra_layer=True)  # one layer more: its kernel is where the two part
    before = _values(other)
    with pytest.raises(checkpoint.CheckpointError, match="its variables are not the model's") as caught:
        saver.load(other)
    assert f"the first variable that differs is {other.variables[2].path!r} in the model" in str(caught.value)
    wider = _dense_model(units=4)
    with pytest.raises(checkpoint.CheckpointError, match=r"kernel' has shape \(3, 2\) there and \(3, 4\) in the model"):
        saver.load(wider)
    for got, want in zip(_values(other), before):  # refused before any variable changed
        np.testing.assert_array_equal(got, want)


@pytest.mark.backend_independent
def test_position_keyed_checkpoints_of_earlier_versions_still_load(tmp_path):
    model = _dense_model()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    np.savez(folder / "phase-epoch0002.npz", **{f"v{i}": value for i, value in enumerate(_values(model))})
    (folder / "phase.json").write_text(json.dumps({"epochs_done": 2, "history": {}, "file": "phase-epoch0002.npz"}))
    fresh = _dense_model()
    for variable in fresh.variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    assert checkpoint.EpochCheckpointer(tmp_path, "phase").load(fresh) == (2, {})
    for got, want in zip(_values(fresh), _values(model)):
        np.testing.assert_array_equal(got, want)
    bigger = _dense_model(extra_layer=True)
    with pytest.raises(checkpoint.CheckpointError,
                       match=f"holds {len(_values(model))} variables .* but the model has {len(_values(bigger))}"):
        checkpoint.EpochCheckpointer(tmp_path, "phase").load(bigger)


@pytest.mark.backend_independent
@pytest.mark.parametrize("damage, message", [
    ("missing npz", "the variables file it names, phase-epoch0001.npz, is missing"),
    ("marker not JSON", "unreadable"),
    ("marker a list", "expected a JSON object, found list"),
    ("epochs_done text", "epochs_done must be a non-negative integer, found '1'"),
    ("history not numbers", "history must map each metric to a list of numbers"),
    ("file outside", "file must name an .npz file"),
])
def test_damaged_checkpoints_are_refused_before_anything_is_written(tmp_path, damage, message):
    saver = checkpoint.EpochCheckpointer(tmp_path, "phase")
    saver.save(_dense_model(), 1, {"loss": [0.5]})
    state = json.loads(saver.marker.read_text())
    if damage == "missing npz":
        (saver.folder / state["file"]).unlink()
    elif damage == "marker not JSON":
        saver.marker.write_text('{"epochs_done": 1, "hist')
    elif damage == "marker a list":
        saver.marker.write_text("[1]")
    else:
        key, value = {"epochs_done text": ("epochs_done", "1"), "history not numbers": ("history", {"loss": ["x"]}),
                      "file outside": ("file", "../phase-epoch0001.npz")}[damage]
        saver.marker.write_text(json.dumps({**state, key: value}))
    before = _files(tmp_path)
    config = run_config.RunConfig.from_profile("smoke", "ce")
    for attempt in (saver.epochs_done, lambda: saver.load(_dense_model()),
                    lambda: checkpoint.check_run_dir(tmp_path, config)):
        with pytest.raises(checkpoint.CheckpointError, match=message):
            attempt()
    assert _files(tmp_path) == before


@pytest.mark.backend_independent
def test_unreadable_checkpoint_variables_are_refused(tmp_path):
    saver = checkpoint.EpochCheckpointer(tmp_path, "phase")
    saver.save(_dense_model(), 1, {})
    (saver.folder / "phase-epoch0001.npz").write_bytes(b"PK\x03\x04 not a whole zip file")
    with pytest.raises(checkpoint.CheckpointError, match="phase-epoch0001.npz is unreadable"):
        saver.load(_dense_model())


# -- atomic writes: a crash half-way leaves the old file and no temporary ----------------------------
def _write_half_then_crash(target, payload):
    pathlib.Path(target).write_bytes(payload[: len(payload) // 2])
    raise KeyboardInterrupt("simulated crash half-way through a write")


@pytest.mark.backend_independent
def test_json_write_crashing_half_way_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    checkpoint.write_json(path, {"accuracy": 0.5})
    old = path.read_bytes()
    monkeypatch.setattr(pathlib.Path, "write_text", lambda self, text, *a, **k: _write_half_then_crash(self, text.encode()))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write_json(path, {"accuracy": 0.9, "history": list(range(100))})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


@pytest.mark.backend_independent
def test_checkpoint_write_crashing_half_way_keeps_the_last_epoch(tmp_path, monkeypatch):
    model = _dense_model()
    saver = checkpoint.EpochCheckpointer(tmp_path, "phase")
    saver.save(model, 1, {"loss": [1.0]})
    saved = _values(model)
    for variable in model.variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))

    def savez(file, **arrays):
        _write_half_then_crash(file, b"PK\x03\x04" + b"x" * 1000)

    monkeypatch.setattr(checkpoint.np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        saver.save(model, 2, {"loss": [1.0, 0.5]})
    monkeypatch.undo()
    assert sorted(p.name for p in saver.folder.iterdir()) == ["phase-epoch0001.npz", "phase.json"]
    assert saver.load(model) == (1, {"loss": [1.0]})
    for got, want in zip(_values(model), saved):
        np.testing.assert_array_equal(got, want)


@pytest.mark.backend_independent
def test_model_save_crashing_half_way_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "embedder.keras"
    model = _dense_model()
    checkpoint.save_model_atomically(model, path)
    old = path.read_bytes()
    monkeypatch.setattr(keras.Model, "save", lambda self, filepath, *a, **k: _write_half_then_crash(filepath, old))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_model_atomically(model, path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["embedder.keras"]


# -- the run-folder lock (two processes: tests/test_interruptions.py) -------------------------------
@pytest.mark.backend_independent
def test_run_lock_is_exclusive_and_leaves_no_file(tmp_path):
    (tmp_path / ".lock").write_text("")  # left by a killed run: nobody holds it
    with checkpoint.RunLock(tmp_path):
        assert (tmp_path / ".lock").exists()
        with pytest.raises(checkpoint.RunFolderBusy, match="in use by another training process"):
            with checkpoint.RunLock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    with checkpoint.RunLock(tmp_path):  # and the folder can be taken again
        pass


@pytest.mark.backend_independent
def test_profiles():
    smoke = run_config.RunConfig.from_profile("smoke", "ce")
    assert smoke.dataset == "digits" and smoke.augmentation_kind == "baseline"
    gpu_ce, gpu_supcon = (run_config.RunConfig.from_profile("gpu", method) for method in ("ce", "supcon"))
    assert gpu_ce.dataset == "cifar10" and gpu_ce.train_size is None and gpu_ce.encoder == "resnet18"
    # Compute-matched: as many images through the encoder in both recipes.
    assert gpu_ce.epochs * 1 == gpu_supcon.epochs * gpu_supcon.views
    full = run_config.RunConfig.from_profile("full", "supcon")
    assert full.dataset == "cifar10" and full.encoder == "resnet18" and full.augmentation_kind == "supcon"
    assert run_config.RunConfig.from_profile("cpu", "ce", epochs=2).epochs == 2  # flags override
    with pytest.raises(ValueError, match="profile"):
        run_config.RunConfig.from_profile("huge", "ce")
    assert data.DIGITS_CLASS_NAMES == tuple("0123456789")


@pytest.mark.tensorflow_only  # tf.function's trace counter
def test_embeddings_and_predictions_trace_once(ce_run, digits_arrays):
    # Every call pads to whole batches of one model: no new trace for other numbers of images
    # (retracing filled the notebooks' outputs with TensorFlow warnings). The trained run of
    # test_cross_entropy_baseline_learns serves: the trace counts are taken here, before and after.
    _, result, _ = ce_run
    x_test = digits_arrays[1][0]
    traces = (result.embedder.predict_function.experimental_get_tracing_count(),
              result.classifier.predict_function.experimental_get_tracing_count())
    for count in (1, 37, 100, 61):
        assert result.embed(x_test[:count]).shape == (count, 128)
        assert result.predict(x_test[:count]).shape == (count,)
    assert (result.embedder.predict_function.experimental_get_tracing_count(),
            result.classifier.predict_function.experimental_get_tracing_count()) == traces
    np.testing.assert_allclose(result.embed(x_test[:5]), result.embed(x_test[:50])[:5], atol=1e-5)
