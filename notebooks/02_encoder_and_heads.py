# %% [markdown]
# # 02 · Encoder and heads
#
# *Why the original example's ResNet50V2 wastes a 32x32 image, what the CIFAR stem changes, and what a ReLU at the projection head's output does to the geometry the loss can reach.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/02_encoder_and_heads.ipynb)
#
# **In this notebook we will**
# - follow a 32x32 image through ResNet50V2 (ImageNet stem) and through a CIFAR ResNet-18, block by block;
# - meet `resnet_small`, the quarter-width CIFAR ResNet that the CPU profiles of notebooks 04 and 05 train;
# - count parameters of the encoders and heads;
# - measure, with numbers, how an output ReLU confines the projections to one orthant, and what
#   that costs the SupCon loss.
#
# **Prerequisites:** notebook 01; convolutions, strides and pooling.
#
# **Run time:** every profile about 10 s on a CPU (nothing is trained here).

# %% [markdown]
# ## Setup

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

from supcon_lib import losses, models, run_config, runtime  # noqa: E402

runtime.start_notebook(seed=0, trains=False)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; nothing here depends on it
print(PROFILE)

# %% [markdown]
# ## Two stems, one 32x32 image
# ResNet50V2 was designed for 224x224 ImageNet images: its stem is a 7x7 convolution with stride 2
# followed by a stride-2 max-pool, a 4x reduction before the first residual block, and each of the
# next three stages halves the resolution again (32x in all). On 224x224 that ends at 7x7; on
# CIFAR's 32x32 it reaches 1x1 before the last stage, so the last (and widest) stage sees a single
# spatial position. The CIFAR stem replaces all that with one 3x3 convolution of stride 1 and no
# pooling; the last stage then works on 4x4 maps. It is the stem of the SupCon authors' own code:
# `networks/resnet_big.py` in their repository
# [HobbitLong/SupContrast](https://github.com/HobbitLong/SupContrast) starts every ResNet with a
# 3x3 stride-1 convolution and no max-pool.
#
# The sizes below are read off the built models, block by block.

# %%
resnet50v2 = models.build_encoder("resnet50v2")
resnet18 = models.build_encoder("resnet18")


def print_sizes(title, model):
    print(title)
    for name, shape in models.feature_map_sizes(model, include_convolutions=False):
        print(f"  {name:28s} {shape}")


print_sizes("ResNet50V2 (ImageNet stem) on 32x32x3:", resnet50v2)
print()
print_sizes("ResNet-18 (CIFAR stem) on 32x32x3:", resnet18)

# %%
def last_stage_resolution(model):
    spatial = [shape[:2] for _, shape in models.feature_map_sizes(model, include_convolutions=False) if len(shape) == 3]
    return spatial[-1]


print("ResNet50V2 last feature map:", last_stage_resolution(resnet50v2))
print("ResNet-18  last feature map:", last_stage_resolution(resnet18))
assert last_stage_resolution(resnet50v2) == (1, 1) and last_stage_resolution(resnet18) == (4, 4)

# %% [markdown]
# At 1x1, a 3x3 convolution only ever sees its centre weight, and padding fills the rest: most of
# ResNet50V2's last stage does nothing useful on CIFAR. The original example still printed
# "Test accuracy: 78.24%" for its cross-entropy baseline and "Test accuracy: 81.71%" for SupCon
# (the printed outputs of the keras-io example
# ["Supervised Contrastive Learning"](https://keras.io/examples/vision/supervised-contrastive-learning/)
# by Khalid Salama, 2020-11-30); the SupCon authors' code uses the CIFAR stem.
#
# ## A small CIFAR ResNet for CPUs
# Notebooks 04 and 05 train `resnet_small` in their `smoke` and `cpu` profiles: the CIFAR
# ResNet-18 recipe (CIFAR stem, basic blocks, stride-2 first block in stages 2-4) at a quarter of
# the width (16/32/64/128 channels) and with one block per stage instead of two, so that a CPU
# can train it in minutes. Its sizes and weights, read off the built model:

# %%

resnet_small = models.build_encoder("resnet_small")
print_sizes("resnet_small (CIFAR stem) on 32x32x3:", resnet_small)
small_weights, resnet18_weights = (sum(models.count_parameters(m)) for m in (resnet_small, resnet18))
print(f"weights: resnet_small {small_weights:,d}, ResNet-18 {resnet18_weights:,d} "
      f"({resnet18_weights / small_weights:.0f}x more)")
encoders = {profile: run_config.RunConfig.from_profile(profile, "supcon").encoder for profile in run_config.PROFILES}
print("encoder per profile:", encoders)
assert models.feature_map_sizes(resnet_small, include_convolutions=False)[0][1] == (32, 32, 16)
assert last_stage_resolution(resnet_small) == (4, 4) and models.encoder_feature_dim("resnet_small") == 128
assert encoders["smoke"] == encoders["cpu"] == "resnet_small" and encoders["full"] == "resnet18"

# %% [markdown]
# ## Parameter counts

# %%
built = {"resnet50v2": resnet50v2, "resnet18": resnet18, "resnet_small": resnet_small}
rows = []
for name in models.ENCODERS:
    encoder = built.get(name) or models.build_encoder(name)
    trainable, frozen = models.count_parameters(encoder)
    rows.append((name, models.encoder_feature_dim(name), trainable, frozen))
feature_dim = models.encoder_feature_dim("resnet18")
for kind in models.PROJECTION_HEADS:
    head = models.build_projection_head(kind, input_dim=feature_dim, projection_dim=128)
    rows.append((f"projection head '{kind}'", 128, *models.count_parameters(head)))
for kind in models.CLASSIFIER_HEADS:
    head = models.build_classifier_head(kind, input_dim=feature_dim, num_classes=10)
    rows.append((f"classifier head '{kind}'", 10, *models.count_parameters(head)))
print(f"{'part':32s} {'output dim':>10s} {'trainable':>12s} {'non-trainable':>14s}")
for name, dim, trainable, frozen in rows:
    print(f"{name:32s} {dim:10d} {trainable:12,d} {frozen:14,d}")

# %% [markdown]
# (Heads are shown on top of ResNet-18's 512 features. Non-trainable parameters are batch
# normalisation's moving statistics.)
#
# ## A ReLU at the head's output
# The original example's projection head is `Dense(128, activation="relu")`. Its outputs are never
# negative, so after L2 normalisation every pair of projections has a cosine similarity of at least
# 0: two classes can at best be *orthogonal*, never opposed. The paper's head ends in a linear layer.
#
# What goes into the head? Every encoder here ends in a ReLU followed by global average pooling, so
# its features are never negative either, trained or not. We check that on all three (untrained)
# encoders, then feed the heads the features of `resnet_small` on random images. To see what each
# head *can* produce, we also give each head a bias that centres its pre-activations on this batch
# (as training could learn): the linear head then outputs both signs, the ReLU head still cannot.

# %%
images = np.random.default_rng(0).normal(size=(256, 32, 32, 3)).astype("float32")  # normalised-image scale
for name, encoder in built.items():
    encoder_output = keras.ops.convert_to_numpy(encoder(images[:16]))
    print(f"{name:12s} features: min {encoder_output.min():.3f}, shape {encoder_output.shape}")
    assert encoder_output.min() >= 0
features = keras.ops.convert_to_numpy(resnet_small(images))  # (256, 128), all >= 0


def pairwise_cosines(vectors):
    vectors = np.asarray(vectors, np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    cosines = unit @ unit.T
    return cosines[~np.eye(len(unit), dtype=bool)]


negative_share = {}
for kind in ("original", "linear"):
    head = models.build_projection_head(kind, input_dim=features.shape[-1], projection_dim=128)
    dense = head.layers[-1]
    for bias in ("zero", "centring"):
        if bias == "centring":  # b = -mean(W f): the pre-activations have mean 0 over the batch
            dense.bias.assign(-np.mean(features @ keras.ops.convert_to_numpy(dense.kernel), axis=0))
        cosines = pairwise_cosines(keras.ops.convert_to_numpy(head(features)))
        negative_share[kind, bias] = np.mean(cosines < 0)
        print(f"head '{kind}', {bias} bias: min cosine {cosines.min():+.3f}, mean {cosines.mean():+.3f}, "
              f"share of negative cosines {negative_share[kind, bias]:.1%}")
assert negative_share["original", "zero"] == negative_share["original", "centring"] == 0
assert negative_share["linear", "centring"] > 0.3

# %% [markdown]
# What does that cost the loss? Take the ideal outcome of training, every view of a class mapped
# to one point (its prototype), and compare the two best arrangements of 10 prototypes:
# * with the ReLU, at best mutually **orthogonal** (cosine 0);
# * without it, a **regular simplex** (cosine -1/9 between every pair, the most spread out 10
#   unit vectors can be).
#
# The SupCon loss of both arrangements, computed with `supcon_lib.losses`, for several temperatures:

# %%
num_classes, per_class = 10, 8
orthogonal = np.eye(num_classes, 128)
simplex = np.eye(num_classes) - 1.0 / num_classes  # centred one-hot vectors: cosines -1/(C-1)
simplex = np.pad(simplex / np.linalg.norm(simplex, axis=1, keepdims=True), ((0, 0), (0, 128 - num_classes)))
labels = np.repeat(np.arange(num_classes), per_class)
print("simplex cosine between prototypes:", round(float(simplex[0] @ simplex[1]), 4), "=", round(-1 / (num_classes - 1), 4))
floor = np.log(per_class - 1)
print(f"floor log|P(i)| = log({per_class - 1}) = {floor:.4f}")
print(f"{'temperature':>11s} {'orthogonal (ReLU)':>18s} {'simplex (linear)':>17s} {'gap':>8s}")
gaps = {}
for temperature in (0.05, 0.1, 0.5, 1.0):
    values = [float(losses.supcon_loss(labels, p[labels].astype("float32")[:, None, :], temperature=temperature))
              for p in (orthogonal, simplex)]
    gaps[temperature] = values[0] - values[1]
    print(f"{temperature:11.2f} {values[0]:18.4f} {values[1]:17.4f} {gaps[temperature]:8.4f}")
    assert min(values) >= floor - 1e-5
assert min(gaps.values()) >= 0 and gaps[0.1] < 0.01 < gaps[0.5] and gaps[1.0] > 0.01

# %% [markdown]
# The ReLU head gives only non-negative cosines, whatever its bias; the linear head gives both
# signs once its bias removes the common component that non-negative features share (asserted).
# The paper's MLP head ends in such a linear layer, so it can learn the same.
#
# Both prototype arrangements sit at or above the floor log|P(i)| (notebook 03 derives it), and
# the simplex is never worse. How much the ReLU costs at the optimum depends on the temperature:
# at 0.05 and 0.1 the negatives' terms are already negligible at cosine 0 and the gap is below
# 0.01 (checked above), while at 0.5 and 1.0 it is above 0.01. At the paper's temperature the
# output ReLU hardly moves the optimum; what it does cost is the gradient of every unit it clips
# to zero. Our default head is the paper's MLP, with a linear output.
#
# ## Summary
# In this notebook we traced a 32x32 image through two stems: ResNet50V2's ImageNet stem leaves
# its last stage a 1x1 map, the CIFAR stem a 4x4 one. We met `resnet_small`, the quarter-width,
# one-block-per-stage CIFAR ResNet of the CPU profiles, counted parameters of every encoder and
# head, checked that every encoder's features are non-negative, and measured that a ReLU at the
# projection head's output forces non-negative cosines, which raises the best reachable SupCon loss.
#
# ## Exercises
# 1. Build ResNet50V2 for 64x64 inputs (`input_shape=(64, 64, 3)`): at what resolution does its last stage work now?
# 2. Repeat the prototype computation with 100 classes: how does the simplex cosine -1/(C-1) change, and what happens to the gap?
# 3. The projection head is thrown away after pre-training. Why might features *before* it transfer better? (Hint: what must the head's output forget to make all views of a class coincide?)
#
# **Next:** [03 · The SupCon loss, derived](03_supcon_loss_derivation.ipynb)
