"""Run by test_distributed_training.py in a fresh process (logical devices must be configured
before TensorFlow starts): one epoch of SupCon on two logical CPU devices and on one device.

Prints one JSON line: per strategy, the first step's loss, the replica count and the epochs done.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from supcon_lib import training  # noqa: E402


class FirstStepLoss(keras.callbacks.Callback):
    loss = None

    def on_train_batch_end(self, batch, logs=None):
        if self.loss is None:
            self.loss = float(logs["loss"])


def main(folder):
    report = {}
    for strategy in ("mirrored", "default"):
        # No augmentation: both runs must see exactly the same global batch (the random layers'
        # draws are per replica under a strategy, so augmented views would differ).
        config = training.RunConfig.from_profile(
            "smoke", "supcon", train_size=128, test_size=100, batch_size=64, epochs=1, probe_epochs=1,
            augmentation="none", strategy=strategy, verbose=0, seed=0)
        first = FirstStepLoss()
        result = training.run(config, os.path.join(folder, strategy), callbacks=[first])
        report[strategy] = {"first_step_loss": first.loss, "replicas": result.metrics["replicas"],
                            "epochs": len(result.metrics["history"]["pretrain"]["loss"]),
                            "test_accuracy": result.metrics["test_accuracy"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
