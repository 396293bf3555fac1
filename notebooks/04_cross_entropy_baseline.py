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
# images, 15 epochs, small ResNet) about 15 minutes on 2 CPU cores (measured). On a GPU: `gpu`,
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
REPOSITORY = "supcon-teaching/supcon"  # the one repository address (supcon_lib.paths.REPOSITORY)
if IS_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+https://github.com/{REPOSITORY}"], check=True)

import numpy as np  # noqa: E402

from supcon_lib import evaluation, paths, runtime, training, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=True, runs_on_drive=KEEP_RUNS_ON_DRIVE)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; default: gpu on a GPU, else smoke
print(PROFILE, "-", runtime.PROFILE_DESCRIPTIONS[PROFILE])

# %% [markdown]
# ## The recipe
# Every setting comes from the profile; `gpu` and `full` train on all of CIFAR-10, the others are
# the same code at a smaller scale. We state the budget instead of hiding it:

# %%
config = training.RunConfig.from_profile(PROFILE, "ce")
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
# **Optimizer.** SGD with momentum 0.9; the learning rate grows linearly for the first 10% of the
# steps (warm-up: large early steps on a randomly initialised network with batch norm are unstable),
# then follows a cosine down to zero. Weight decay is decoupled and skips biases and batch-norm
# scales and shifts. The peak rate grows with the batch size (0.1 per 256 images); the smoke profile
# sets a higher one, because a handful of steps is all it has.

# %%
steps_per_epoch = len(x_train) // config.batch_size
schedule = training.learning_rate_schedule(config, steps_per_epoch, config.epochs)
steps = np.arange(steps_per_epoch * config.epochs)
rates = [float(schedule(step)) for step in steps]

import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(steps / steps_per_epoch, rates)
ax.set_xlabel("epoch")
ax.set_ylabel("learning rate")
ax.set_title("Warm-up, then cosine decay")
ax.grid(alpha=0.3)
print(f"peak {max(rates):.3g} at epoch {steps[int(np.argmax(rates))] / steps_per_epoch:.2f}, last {rates[-1]:.2g}")

# %% [markdown]
# ## Train
# `training.run` checkpoints every epoch into the run folder; if this cell is interrupted (or the
# Colab runtime disconnects), running it again continues from the last completed epoch. A
# finished run is loaded, not retrained.

# %%
run_dir = paths.runs_dir() / f"{PROFILE}_ce"
result = training.run(config, run_dir, arrays=((x_train, y_train), (x_test, y_test), class_names))
metrics = result.metrics
print(f"test accuracy {metrics['test_accuracy']:.4f}, kNN accuracy {metrics['knn_accuracy']:.4f}, "
      f"{metrics['train_seconds']:.0f} s in all")

# %%
fig = viz.plot_training_curves({"cross-entropy": metrics["history"]["train"]}, metrics=("loss", "accuracy"),
                               title=f"Cross-entropy baseline ({PROFILE} profile), training set with augmentation")
if PROFILE == "cpu":
    viz.save_fig(fig, "04_ce_curves")

# %% [markdown]
# The training accuracy is measured on augmented images with batch statistics, so it is not
# comparable with the test accuracy; the test accuracy uses the model at inference.
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
# For scale: the original keras-io example reported 78.2% for its cross-entropy baseline
# (ResNet50V2, 50 epochs; keras.io "Supervised Contrastive Learning", 2020), and the SupCon paper
# 95.0% with a ResNet-50 trained far longer (Khosla et al. 2020). The `full` profile is our
# reproduction of that setting at ResNet-18 scale.
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
