"""For test_distributed_training.py, in a fresh process (logical devices must be configured
before TensorFlow starts): one epoch of cross-entropy, then of SupCon, on two logical CPU devices
in one process, SupCon on one device, and the SupCon augmentation on both replicas.

tests/distributed_workers.py sets the devices up and runs :func:`run`, in one process together
with losses_distributed_worker.py's checks (one TensorFlow start for both).

The report: per strategy, the first step's loss, the replica count and the epochs
done; under "augment", whether the two replicas drew the same views of the same images.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from supcon_lib import augment, run_config, runtime, training


class FirstStepLoss(keras.callbacks.Callback):
    loss = None

    def on_train_batch_end(self, batch, logs=None):
        if self.loss is None:
            self.loss = float(logs["loss"])


def replica_views(jit_compile):
    """Both replicas augment the same 8 copies of one image."""
    strategy = runtime.select_strategy("mirrored")
    with strategy.scope():
        pipeline = augment.supcon_pipeline(seed=0)
        pipeline.build((None, 32, 32, 3))
    images = tf.constant(np.repeat(np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)), 8, 0), tf.float32)
    # As Keras' train function: the per-replica step compiled, strategy.run inside a tf.function.
    step = tf.function(lambda x: pipeline(x, training=True), jit_compile=jit_compile)
    views = tf.function(lambda x: strategy.run(step, args=(x,)))(images)
    first, second = (v.numpy() for v in strategy.experimental_local_results(views))
    return {"replicas": strategy.num_replicas_in_sync,
            "same_views": [bool(np.allclose(a, b)) for a, b in zip(first, second)],
            "distinct_within_replica": len({v.tobytes() for v in first})}


def config_for(strategy):
    return run_config.RunConfig.from_profile(
        "smoke", "supcon", train_size=128, test_size=100, batch_size=64, epochs=1, probe_epochs=1,
        augmentation="none", strategy=strategy, verbose=0, seed=0)


def run(folder):
    """The report above (a dict), training in ``folder``; two logical CPU devices must be set up."""
    # Graph mode only: XLA cannot run under MirroredStrategy on *logical* CPU devices (the CPU
    # cluster is placed on CPU:0 and refuses replica 1's variables, model weights included).
    report = {"augment": replica_views(jit_compile=False)}
    # A reader's kernel trains several recipes one after another on the same GPUs: cross-entropy
    # (its step all-reduces) first, then SupCon (its loss also all-gathers) under the same strategy.
    ce = training.run(run_config.RunConfig.from_profile(
        "smoke", "ce", train_size=128, test_size=100, batch_size=64, epochs=1, augmentation="none",
        strategy="mirrored", verbose=0, seed=0), os.path.join(folder, "ce_first"))
    report["ce_first"] = {"replicas": ce.metrics["replicas"], "epochs": len(ce.metrics["history"]["train"]["loss"]),
                          "loss_finite": bool(np.isfinite(ce.metrics["history"]["train"]["loss"]).all())}
    for strategy in ("mirrored", "default"):
        # No augmentation: both runs must see exactly the same global batch (the random layers'
        # draws are per replica under a strategy, so augmented views would differ).
        first = FirstStepLoss()
        result = training.run(config_for(strategy), os.path.join(folder, strategy), callbacks=[first])
        if strategy == "mirrored":
            result_for_mirrored = result.metrics
        report[strategy] = {"first_step_loss": first.loss, "replicas": result.metrics["replicas"],
                            "epochs": len(result.metrics["history"]["pretrain"]["loss"]),
                            "test_accuracy": result.metrics["test_accuracy"]}
    # Started again, the finished mirrored run restores its checkpoints (optimizer slots built
    # under the strategy) and trains nothing.
    restarted = training.run(config_for("mirrored"), os.path.join(folder, "mirrored"))
    report["mirrored"]["restart_history_equal"] = restarted.metrics["history"] == result_for_mirrored["history"]
    return report
