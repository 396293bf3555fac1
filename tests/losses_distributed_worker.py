"""Helper for tests/test_losses_distributed.py, run in its own process (not a test module).

The CPU is split into two logical devices (this must happen before TensorFlow initialises its
devices, hence the separate process: tests/distributed_workers.py sets them up and runs
:func:`run` there, together with mirrored_training_worker.py's checks), then it compares, on the same global batch, the losses of
``supcon_lib.losses`` under a two-replica ``MirroredStrategy`` with the single-device ones:

* ``raw``: the functions under ``strategy.run``; the sum over replicas of the returned losses,
  the gradients w.r.t. each replica's slice of the embeddings, and the summed gradient w.r.t. a
  shared (mirrored) projection variable.
* ``fit``: ``model.compile(loss=SupConLoss(...))`` + one ``model.fit`` step: the reported
  first-step loss and the weights after one SGD step.

The results, one JSON object: for every check the largest absolute difference to the
single-device value (and the values themselves, for the messages).
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from supcon_lib import losses, runtime

GLOBAL_BATCH = 12
INPUT_DIM = 5
EMBEDDING_DIM = 8
LEARNING_RATE = 0.5


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _labels(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "classes":  # 3 classes, several images each.
        return rng.integers(0, 3, size=GLOBAL_BATCH).astype(np.int64)
    if kind == "singletons":  # Some classes appear once: with V = 1 those anchors drop out.
        return np.array([0, 0, 1, 2, 3, 3, 3, 4, 5, 6, 6, 7], dtype=np.int64)
    if kind == "distinct":  # No positive anywhere when V = 1.
        return np.arange(GLOBAL_BATCH, dtype=np.int64)
    raise ValueError(kind)


def _loss_fn(loss_name: str):
    if loss_name == "npairs":
        return lambda labels, features: losses.npairs_loss(labels, features, temperature=0.1)
    if loss_name == "simclr":
        return lambda labels, features: losses.supcon_loss(None, features, temperature=0.2)
    return lambda labels, features: losses.supcon_loss(
        labels, features, temperature=0.2, formulation=loss_name
    )


def _split(array: np.ndarray, sizes):
    bounds = np.cumsum([0, *sizes])
    return [array[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]


def _distribute(strategy, parts):
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(parts[context.replica_id_in_sync_group])
    )


def _raw_case(strategy, loss_name, num_views, label_kind, sizes, seed) -> dict:
    """Single-device reference values and the per-replica inputs of one raw case."""
    rng = np.random.default_rng(seed)
    shape = (GLOBAL_BATCH, num_views, INPUT_DIM) if num_views else (GLOBAL_BATCH, INPUT_DIM)
    inputs = rng.normal(size=shape).astype(np.float32)
    labels = _labels(label_kind, rng)
    projection0 = rng.normal(size=(INPUT_DIM, EMBEDDING_DIM)).astype(np.float32)
    loss_fn = _loss_fn(loss_name)

    # Single device, global batch: gradients w.r.t. the embeddings and the projection.
    projection = tf.Variable(projection0)
    with tf.GradientTape(persistent=True) as tape:
        embeddings = tf.constant(inputs) @ projection
        single_loss = loss_fn(tf.constant(labels), embeddings)
    case = {
        "loss_fn": loss_fn,
        "single_loss": single_loss.numpy(),
        "single_embedding_grad": tape.gradient(single_loss, embeddings).numpy(),
        "single_projection_grad": tape.gradient(single_loss, projection).numpy(),
        "inputs": _distribute(strategy, _split(inputs, sizes)),
        "labels": _distribute(strategy, _split(labels, sizes)),
    }
    with strategy.scope():
        case["projection"] = tf.Variable(projection0)  # Mirrored: shared by the replicas.
    return case


def raw_checks(strategy, cases: dict) -> dict:
    """Runs every raw case under one ``strategy.run`` (one trace) and compares."""
    prepared = {
        name: _raw_case(strategy, *spec, seed=index) for index, (name, spec) in enumerate(cases.items())
    }
    names = list(prepared)

    @tf.function(autograph=False)  # Plain Python control flow only; tracing stays fast.
    def step(all_inputs, all_labels):
        def replica_fn(all_inputs, all_labels):
            outputs = []
            for name, local_inputs, local_labels in zip(names, all_inputs, all_labels):
                case = prepared[name]
                with tf.GradientTape(persistent=True) as tape:
                    local_embeddings = local_inputs @ case["projection"]
                    loss = case["loss_fn"](local_labels, local_embeddings)
                outputs.append(
                    (loss, tape.gradient(loss, local_embeddings),
                     tape.gradient(loss, case["projection"]))
                )
            return outputs

        outputs = strategy.run(replica_fn, args=(all_inputs, all_labels))
        return [
            (
                strategy.experimental_local_results(loss),
                strategy.experimental_local_results(embedding_grad),
                strategy.reduce(tf.distribute.ReduceOp.SUM, projection_grad, axis=None),
            )
            for loss, embedding_grad, projection_grad in outputs
        ]

    outputs = step(
        tuple(prepared[name]["inputs"] for name in names),
        tuple(prepared[name]["labels"] for name in names),
    )
    results = {}
    for name, (replica_losses, replica_grads, summed_projection_grad) in zip(names, outputs):
        case = prepared[name]
        replica_losses = [float(value) for value in replica_losses]
        distributed_grad = np.concatenate([np.asarray(g) for g in replica_grads], axis=0)
        results[name] = {
            "single_loss": float(case["single_loss"]),
            "replica_losses": replica_losses,
            "loss_diff": abs(sum(replica_losses) - float(case["single_loss"])),
            "embedding_grad_diff": _max_abs(distributed_grad, case["single_embedding_grad"]),
            "projection_grad_diff": _max_abs(
                summed_projection_grad, case["single_projection_grad"]
            ),
            "single_grad_norm": float(np.linalg.norm(case["single_embedding_grad"])),
        }
    return results


def _tiny_model(num_views: int, projection0: np.ndarray):
    model = keras.Sequential(
        [keras.Input((num_views, INPUT_DIM)), keras.layers.Dense(EMBEDDING_DIM, use_bias=False)]
    )
    model.layers[0].kernel.assign(projection0)
    return model


def fit_check(strategy, formulation, num_views, label_kind, jit_compile, seed) -> dict:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(GLOBAL_BATCH, num_views, INPUT_DIM)).astype(np.float32)
    labels = _labels(label_kind, rng)
    projection0 = rng.normal(size=(INPUT_DIM, EMBEDDING_DIM)).astype(np.float32)

    # Single device: loss and one SGD step by hand.
    projection = tf.Variable(projection0)
    with tf.GradientTape() as tape:
        single_loss = losses.supcon_loss(
            labels, tf.constant(inputs) @ projection, temperature=0.2, formulation=formulation
        )
    expected_projection = projection0 - LEARNING_RATE * tape.gradient(single_loss, projection).numpy()

    with strategy.scope():
        model = _tiny_model(num_views, projection0)
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE),
            loss=losses.SupConLoss(temperature=0.2, formulation=formulation),
            jit_compile=jit_compile,
        )
    history = model.fit(
        inputs, labels, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0
    )
    fit_loss = history.history["loss"][0]
    return {
        "single_loss": float(single_loss),
        "fit_loss": float(fit_loss),
        "fit_loss_diff": abs(float(fit_loss) - float(single_loss)),
        "weights_diff": _max_abs(model.layers[0].kernel.numpy(), expected_projection),
        "weights_change": _max_abs(expected_projection, projection0),
    }


def run() -> dict:
    """The results above; two logical CPU devices must be set up."""
    # The library's strategy (one per process, shared with the training part when both run in one
    # process: tests/distributed_workers.py).
    strategy = runtime.select_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, strategy.extended.worker_devices
    results = {"num_replicas": strategy.num_replicas_in_sync, "raw": {}, "fit": {}}
    raw_cases = {
        # name: (loss, num_views (0: rank-2 features), labels, per-replica batch sizes)
        "out_v2": ("out", 2, "classes", (6, 6)),
        "in_v3_uneven": ("in", 3, "classes", (7, 5)),
        "simclr_v2_uneven": ("simclr", 2, "classes", (5, 7)),
        "in_rank2_singletons_uneven": ("in", 0, "singletons", (4, 8)),
        "out_v1_no_positive": ("out", 1, "distinct", (6, 6)),
        "npairs_uneven": ("npairs", 0, "singletons", (5, 7)),
    }
    started = time.perf_counter()
    results["raw"] = raw_checks(strategy, raw_cases)
    results["raw_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    fit_cases = {  # name: (formulation, num_views, labels, jit_compile)
        "out_v1_singletons": ("out", 1, "singletons", "auto"),
    }
    for index, (name, case) in enumerate(fit_cases.items()):
        results["fit"][name] = fit_check(strategy, *case, seed=100 + index)
    results["fit_seconds"] = time.perf_counter() - started
    return results
