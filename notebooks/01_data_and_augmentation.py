# %% [markdown]
# # 01 · Data and augmentation
#
# *What counts as "the same image" is decided by the augmentation: look at it before training anything.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/01_data_and_augmentation.ipynb)
#
# **In this notebook we will**
# - load CIFAR-10 (or, offline, the digits that ship with scikit-learn) and look at every class;
# - port the original keras-io example's augmentation to Keras 3 and put it next to the SupCon
#   paper's and the cross-entropy baseline's;
# - draw several views of the same images and *measure* how far apart each pipeline pushes them.
#
# **Prerequisites:** Python, NumPy, a first Keras model. No GPU needed.
#
# **Run time:** `smoke` profile (digits, offline) about 20 s on a CPU; `cpu` and `full` profiles
# (CIFAR-10) about 30 s, most of it loading the data.

# %% [markdown]
# ## Setup
# In Colab this installs `supcon_lib` from the repository (Colab's own TensorFlow and Keras are
# kept) and checks for a GPU. Elsewhere, `make demo` or `pip install -e .` has done it already.

# %%
import subprocess
import sys

IS_COLAB = "google.colab" in sys.modules
INSTALL_SOURCE = "git+https://github.com/supcon-teaching/supcon@v0.2.0"  # a release: supcon_lib.paths.INSTALL_SOURCE
if IS_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", INSTALL_SOURCE], check=True)

from supcon_lib import quiet  # noqa: E402

quiet.start()  # Keras and TensorFlow, without TensorFlow's start-up log lines

import keras  # noqa: E402
import numpy as np  # noqa: E402

from supcon_lib import augment, data, run_config, runtime, training, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=False)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; default: gpu on a GPU, else smoke
print(PROFILE, "-", runtime.PROFILE_DESCRIPTIONS[PROFILE])

# %% [markdown]
# ## The data
# The profile decides the data set: `smoke` uses scikit-learn's 1,797 handwritten digits,
# upsampled to 32x32x3 so that every model and augmentation applies unchanged; `cpu` and `full`
# use CIFAR-10 (a local copy if `SUPCON_CIFAR10_DIR` points at one, else Keras' download).

# %%
config = run_config.RunConfig.from_profile(PROFILE, "supcon")
(x_train, y_train), (x_test, y_test), class_names = training.load_data(config)
print(f"dataset: {config.dataset}")
print(f"train: {x_train.shape} {x_train.dtype}, test: {x_test.shape}")
print("images per class (train):", dict(zip(class_names, np.bincount(y_train, minlength=len(class_names)).tolist())))

# %%
fig = viz.plot_image_grid(x_train, y_train, class_names, per_class=8,
                          title=f"{config.dataset}: eight training images per class")
if PROFILE == "cpu":
    viz.save_fig(fig, "01_class_grid")

# %% [markdown]
# Per-channel statistics of the training images, used by the normalisation layer that ends every
# pipeline (computed here, from these images, not copied from elsewhere):

# %%
channel_mean, channel_std = augment.channel_stats(x_train)
print("mean (R, G, B):", np.round(channel_mean, 4))
print("std  (R, G, B):", np.round(channel_std, 4))

# %% [markdown]
# ## Three augmentations: the original example's, the paper's, and the baseline's
# **The original example (2020)** normalised, flipped, rotated by up to 2% of a turn and stretched
# width and height by up to 20% with `RandomWidth` / `RandomHeight`. Keras 3 has neither layer
# (checked below); `RandomZoom(height_factor=0.2, width_factor=0.2)` does the same to the content
# while keeping 32x32, and is our stand-in. Keras' `RandomRotation` and `RandomZoom` cannot be
# compiled by XLA on TensorFlow (which the library turns on for GPUs), so `RandomRotateZoom` draws
# the rotation and both zoom factors as those two layers do and resamples once, with gathers.
#
# **The SupCon paper** (following SimCLR) is much stronger: a random crop of 20-100% of the area
# resized back to 32x32, a flip, colour jitter (brightness, contrast, saturation 0.4, hue 0.1)
# with probability 0.8, and grayscale with probability 0.2. Colour changes matter: with cropping
# alone, the crops of one image share a colour distribution, and "color histograms alone suffice
# to distinguish images" (SimCLR, Chen et al. 2020,
# [arXiv:2002.05709](https://arxiv.org/abs/2002.05709), section 3 and Figure 6), so two crops can
# be matched by their colours and the encoder learns little else.
#
# **The baseline** is the classic augmentation for training a CIFAR classifier with
# cross-entropy: pad 4 pixels on each side, take a random 32x32 crop, and flip horizontally
# (He et al. 2016, [arXiv:1512.03385](https://arxiv.org/abs/1512.03385), section 4.2).
# Notebook 04's cross-entropy runs use it by default (printed below).
#
# All layers draw their random parameters per image, are seeded, and are the identity at
# inference (`training=False`), leaving only the normalisation.

# %%
pipelines = {
    "original": augment.original_pipeline(x_train, seed=1),
    "supcon": augment.supcon_pipeline(x_train, seed=1),
    "baseline": augment.baseline_pipeline(x_train, seed=1),
}
for name, pipeline in pipelines.items():
    print(f"{name:9s}", " -> ".join(type(layer).__name__ for layer in pipeline.layers))
baseline_default = run_config.RunConfig.from_profile(PROFILE, "ce").augmentation_kind
print("cross-entropy runs augment with:", baseline_default)
assert baseline_default == "baseline"
assert not any(hasattr(keras.layers, name) for name in ("RandomWidth", "RandomHeight"))

# %%
rng = np.random.default_rng(0)
shown = np.array([rng.choice(np.flatnonzero(y_train == c)) for c in range(6)])
row_labels = [class_names[y_train[i]] for i in shown]
for name in pipelines:
    views = augment.to_display(augment.make_views(x_train[shown], pipelines[name], num_views=5), pipelines[name])
    fig = viz.plot_views_grid(x_train[shown], views, row_labels, title=f"{name} augmentation: five views per image")
    if PROFILE == "cpu":
        viz.save_fig(fig, f"01_views_{name}")

# %% [markdown]
# ## How "different" are two views?
# A contrastive loss pulls the views of an image together. If they are nearly identical, the task
# is trivial. One crude but honest measure: the cosine similarity of the raw (normalised) pixels
# of two views of the *same* image, against two *different* images. Under a strong augmentation
# the two numbers move closer, so only features that survive cropping and colour changes can
# tell views of one image from other images.

# %%
def pixel_cosine(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)


sample = x_train[rng.choice(len(x_train), 512, replace=False)]
rows = []
for name, pipeline in pipelines.items():
    views = augment.make_views(sample, pipeline, num_views=2)
    same = pixel_cosine(views[:, 0], views[:, 1]).mean()
    other = pixel_cosine(views[:, 0], np.roll(views[:, 1], 1, axis=0)).mean()
    rows.append((name, same, other))
print(f"{'pipeline':10s} {'same image':>11s} {'other image':>12s}")
for name, same, other in rows:
    print(f"{name:10s} {same:11.3f} {other:12.3f}")
similarity = {name: same for name, same, _ in rows}
assert similarity["supcon"] < similarity["original"], "the paper's augmentation should separate views more"

# %% [markdown]
# The table is computed in this run: the paper's pipeline gives two views of one image a lower
# pixel similarity than the original example's does, which is the point: the encoder has to find
# what is common to views that look different.
#
# ## Summary
# In this notebook we loaded the data through `supcon_lib.data` (a local CIFAR-10 copy read
# safely, or the offline digits), built three augmentation pipelines as Keras layers (the
# original example's, the SupCon paper's and the cross-entropy baseline's), looked at their views,
# and measured that the SupCon pipeline makes two views of one image much less alike
# in pixel space than the original example's.
#
# ## Exercises
# 1. Set `jitter_probability=0.0` in `augment.supcon_pipeline` and rerun the similarity table.
#    Which number moves, and why does that make the contrastive task easier?
# 2. `RandomZoom` is only a stand-in for `RandomWidth`/`RandomHeight`. Write a layer that really
#    changes the width and check what the size-agnostic ResNet50V2 of notebook 02 makes of it.
# 3. Draw eight views of one image with `augment.MultiView` and check that no two are equal.
#
# **Next:** [02 · Encoder and heads](02_encoder_and_heads.ipynb)
