# %% [markdown]
# # 04 · The cross-entropy baseline
#
# *Train the standard supervised recipe first: it is the number SupCon has to beat.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/04_cross_entropy_baseline.ipynb)
#
# **In this notebook we will**
# - build the baseline: augmentation inside the model, a CIFAR ResNet encoder, a linear classifier;
# - train it with SGD + momentum, a warm-up and cosine learning-rate schedule and weight decay;
# - look at the training curves, the test accuracy and the confusion matrix.
#
# **Prerequisites:** notebooks 01 and 02; softmax cross-entropy.
#
# **Run time:** `smoke` (digits, 5 epochs) under a minute on a CPU; `cpu` (10,000 CIFAR-10
# images, 27 epochs, small ResNet) under 5 minutes on 2 CPU cores (measured; see the README). On a GPU: `gpu`,
# the default there (all of CIFAR-10, ResNet-18, 50 epochs), about 16 minutes on a Colab T4;
# `full` (200 epochs) about 63 minutes on a T4. Both GPU times are *estimates* (multiply-adds
# counted from the model, divided by a T4's measured throughput on a similar network; see the
# README's profile table), not yet measured. A finished run is not trained again: its saved
# checkpoint is reused.

# %% [markdown]
# ## Setup

# %%
import subprocess
import sys

IS_COLAB = "google.colab" in sys.modules
KEEP_RUNS_ON_DRIVE = False  # Colab: True keeps the runs on Google Drive, so that a new runtime resumes them
INSTALL_SOURCE = "git+https://github.com/supcon-teaching/supcon@v0.2.0"  # a release: supcon_lib.paths.INSTALL_SOURCE
if IS_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", INSTALL_SOURCE], check=True)

from supcon_lib import quiet  # noqa: E402

quiet.start()  # Keras and TensorFlow, without TensorFlow's start-up log lines

import json  # noqa: E402

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from supcon_lib import evaluation, optim, paths, run_config, runtime, training, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=True, runs_on_drive=KEEP_RUNS_ON_DRIVE)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; default: gpu on a GPU, else smoke
print(PROFILE, "-", runtime.PROFILE_DESCRIPTIONS[PROFILE])

# %% [markdown]
# ## The recipe
# Every setting comes from the profile; `gpu` and `full` train on all of CIFAR-10, the others are
# the same code at a smaller scale. The encoder of `smoke` and `cpu`, `resnet_small`, is the CIFAR
# ResNet-18 recipe at a quarter of the width (16/32/64/128 channels) with one block per stage
# instead of two (notebook 02, section "A small CIFAR ResNet for CPUs": [02 · Encoder and heads](02_encoder_and_heads.ipynb));
# `gpu` and `full` train ResNet-18 itself. We state the budget instead of hiding it:

# %%
config = run_config.RunConfig.from_profile(PROFILE, "ce")
(x_train, y_train), (x_test, y_test), class_names = training.load_data(config)
print(f"data: {config.dataset}, {len(x_train)} training and {len(x_test)} test images")
print(f"encoder: {config.encoder}, classifier head: {config.classifier_head}, augmentation: {config.augmentation_kind}")
print(f"budget: {config.epochs} epochs of batch {config.batch_size}, optimizer {config.optimizer}, "
      f"peak learning rate {config.base_learning_rate:.3g}, weight decay {config.decay:g}")

# %% [markdown]
# **Augmentation inside the model.** The augmentation layers of notebook 01 (here the standard
# CIFAR recipe: pad by 4, random 32x32 crop, flip) are the first layers of the model, so they run
# on the accelerator and are switched off at inference.
#
# **Optimizer.** SGD with momentum 0.9. The learning rate starts at a tenth of its peak and grows
# linearly to the peak during a warm-up of 10% of the epochs, at most 10 epochs (unless
# `warmup_epochs` is set; large early steps on a randomly initialised network with batch norm are
# unstable), then follows a cosine down to zero (`optim.learning_rate_schedule`). Weight decay
# is decoupled and skips biases and batch-norm scales and shifts. The peak rate grows with the
# batch size (0.1 per 256 images); the smoke profile sets a higher one, because a handful of steps
# is all it has.

# %%
steps_per_epoch = len(x_train) // config.batch_size
warmup_epochs = config.warmup_epochs if config.warmup_epochs is not None else min(10, 0.1 * config.epochs)
warmup_steps = min(steps_per_epoch * config.epochs - 1, int(round(warmup_epochs * steps_per_epoch)))
schedule = optim.learning_rate_schedule(config, steps_per_epoch, config.epochs)
steps = np.arange(steps_per_epoch * config.epochs)
rates = np.array([float(schedule(step)) for step in steps])
print(f"warm-up {warmup_epochs:g} epochs = {warmup_steps} of {len(steps)} steps, from {rates[0]:.3g} "
      f"to the peak {config.base_learning_rate:.3g}; last step {rates[-1]:.2g}")
np.testing.assert_allclose(rates[0], config.base_learning_rate / 10, rtol=1e-5)
np.testing.assert_allclose(rates.max(), config.base_learning_rate, rtol=1e-5)
assert int(np.argmax(rates)) == warmup_steps and np.all(np.diff(rates[warmup_steps:]) <= 1e-6 * rates.max())

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(steps / steps_per_epoch, rates, label="learning rate")
ax.axvline(warmup_steps / steps_per_epoch, color="gray", linestyle="--", label="end of warm-up")
ax.set_xlabel("epoch")
ax.set_ylabel("learning rate")
ax.set_title(f"Warm-up ({warmup_epochs:g} epochs), then cosine decay")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)

# %% [markdown]
# ## Train
# `training.run` checkpoints every epoch into the run folder; if this cell is interrupted (or the
# Colab runtime disconnects), running it again continues from the last completed epoch. A
# finished run is loaded, not retrained.
#
# The run's history holds training metrics only. To see the test accuracy grow as well, a small
# Keras callback classifies the test images after every epoch. It only watches (no epoch is
# chosen by it), and since a finished run is not retrained, it stores what it measured in a JSON
# file next to the run, which this notebook reads back.

# %%
class TestAccuracyPerEpoch(keras.callbacks.Callback):
    """Accuracy of the model at inference on (images, labels) after every epoch, kept in a JSON file."""

    def __init__(self, images, labels, path):
        super().__init__()
        self.images, self.labels, self.path = images, labels, path
        self.by_epoch = json.loads(path.read_text()) if path.exists() else {}  # a resumed run keeps earlier epochs

    def on_epoch_end(self, epoch, logs=None):
        logits = evaluation.extract_embeddings(self.model, self.images, 256)  # batched predict, any model output
        self.by_epoch[str(epoch + 1)] = float(evaluation.accuracy(self.labels, np.argmax(logits, axis=1)))
        self.path.write_text(json.dumps(self.by_epoch))


run_dir = paths.runs_dir() / f"{PROFILE}_ce"
test_accuracy_file = run_dir / "test_accuracy_per_epoch.json"
result = training.run(config, run_dir, arrays=((x_train, y_train), (x_test, y_test), class_names),
                      callbacks=[TestAccuracyPerEpoch(x_test, y_test, test_accuracy_file)])
metrics = result.metrics
print(f"test accuracy {metrics['test_accuracy']:.4f}, kNN accuracy {metrics['knn_accuracy']:.4f}, "
      f"{metrics['train_seconds']:.0f} s in all")

# %%
recorded = json.loads(test_accuracy_file.read_text()) if test_accuracy_file.exists() else {}
test_per_epoch = [recorded.get(str(epoch)) for epoch in range(1, config.epochs + 1)]
curves = {"training (augmented)": metrics["history"]["train"]}
if None in test_per_epoch:
    print(f"no test accuracy recorded for epochs {[e + 1 for e, v in enumerate(test_per_epoch) if v is None]}: "
          f"they were trained without the callback (delete {run_dir} to retrain)")
else:
    curves["test (after each epoch)"] = {"accuracy": test_per_epoch}
    print(f"test accuracy after the last epoch {test_per_epoch[-1]:.4f}; "
          f"after recalibrating batch norm {metrics['test_accuracy']:.4f}")
fig = viz.plot_training_curves(curves, metrics=("loss", "accuracy"),
                               title=f"Cross-entropy baseline ({PROFILE} profile)")
if PROFILE == "cpu":
    viz.save_fig(fig, "04_ce_curves")

# %% [markdown]
# The training loss and accuracy are measured on augmented images with batch statistics, while the
# weights change during the epoch; the test accuracy after each epoch uses the model at inference
# (no augmentation, batch norm's running averages). After the last epoch `training.run` replaces
# those running averages by the statistics of the final weights (`training.recalibrate_batch_norm`),
# so the final test accuracy, printed above next to the last epoch's, can differ from it.
#
# ## Test accuracy and confusion matrix

# %%
predictions = result.predict(x_test)
assert abs(evaluation.accuracy(y_test, predictions) - metrics["test_accuracy"]) < 1e-9
matrix = evaluation.confusion_matrix(y_test, predictions, len(class_names))
fig = viz.plot_confusion_matrix(matrix, class_names, title=f"Cross-entropy baseline: test confusion matrix ({PROFILE})")
if PROFILE == "cpu":
    viz.save_fig(fig, "04_ce_confusion")
per_class = matrix.diagonal() / matrix.sum(axis=1)
for name, value in sorted(zip(class_names, per_class), key=lambda item: item[1]):
    print(f"{name:12s} {value:.3f}")

# %% [markdown]
# The printed per-class accuracies, computed from this run's predictions, show which classes the
# baseline confuses most; notebook 05 trains SupCon at a comparable budget, and notebook 06 looks
# at the embeddings of both.
#
# For scale (not computed here): the 2020 version of the keras-io example printed "Test accuracy:
# 78.24%" for its cross-entropy baseline (ResNet50V2, 50 epochs; Khalid Salama, ["Supervised
# Contrastive Learning"](https://keras.io/examples/vision/supervised-contrastive-learning/),
# keras.io, created 2020-11-30), and the SupCon paper reports 95.0% with a ResNet-50 trained far
# longer (Khosla et al. 2020, [arXiv:2004.11362](https://arxiv.org/abs/2004.11362), Table 2). The
# `full` profile is our reproduction of that setting at ResNet-18 scale.
#
# ## Summary
# In this notebook we built the cross-entropy baseline from library parts (augmentation layers,
# a CIFAR ResNet, a linear head), trained it with SGD, warm-up and cosine decay, with a checkpoint
# after every epoch, and measured its test accuracy, kNN accuracy and confusion matrix.
#
# ## Exercises
# 1. Swap the augmentation for the paper's (`augmentation="supcon"` in `RunConfig.from_profile`). Does strong colour jitter help or hurt a cross-entropy model?
# 2. Train with `optimizer="adam"` (the original example's recipe) at the same budget and compare.
# 3. Interrupt the training cell after one epoch and run it again: check the printed epochs.
#
# **Next:** [05 · SupCon in two phases](05_supcon_two_phase.ipynb)
