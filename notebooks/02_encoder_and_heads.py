# %% [markdown]
# # 02 · Encoder and heads
#
# *Why the original example's ResNet50V2 wastes a 32x32 image, what the CIFAR stem changes, and what a ReLU at the projection head's output does to the geometry the loss can reach.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/02_encoder_and_heads.ipynb)
#
# **In this notebook we will**
# - follow a 32x32 image through ResNet50V2 (ImageNet stem) and through a CIFAR ResNet-18, block by block;
# - count parameters of the encoders and heads;
# - measure, with numbers, how an output ReLU confines the projections to one orthant, and what
#   that costs the SupCon loss.
#
# **Prerequisites:** notebook 01; convolutions, strides and pooling.
#
# **Run time:** every profile about 30 s on a CPU (nothing is trained here).

# %% [markdown]
# ## Setup

# %%
import subprocess
import sys

IS_COLAB = "google.colab" in sys.modules
REPOSITORY = "supcon-teaching/supcon"  # the one repository address (supcon_lib.paths.REPOSITORY)
if IS_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+https://github.com/{REPOSITORY}"], check=True)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from supcon_lib import losses, models, runtime  # noqa: E402

runtime.start_notebook(seed=0, trains=False)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|full; nothing here depends on it
print(PROFILE)

# %% [markdown]
# ## Two stems, one 32x32 image
# ResNet50V2 was designed for 224x224 ImageNet images: its stem is a 7x7 convolution with stride 2
# followed by a stride-2 max-pool, a 4x reduction before the first residual block, and each of the
# next three stages halves the resolution again (32x in all). On 224x224 that ends at 7x7; on
# CIFAR's 32x32 it reaches 1x1 before the last stage, so the last (and widest) stage sees a single
# spatial position. The CIFAR stem replaces all that with one 3x3 convolution of stride 1 and no
# pooling; the last stage then works on 4x4 maps.
#
# The sizes below are read off the built models, block by block.

# %%
resnet50v2 = models.build_encoder("resnet50v2")
resnet18 = models.build_encoder("resnet18")


def block_sizes(model):
    return [(name, shape) for name, shape in models.feature_map_sizes(model, include_convolutions=False)]


def print_sizes(title, sizes, every=1):
    print(title)
    for name, shape in sizes[::every]:
        print(f"  {name:28s} {shape}")


print_sizes("ResNet50V2 (ImageNet stem) on 32x32x3:", block_sizes(resnet50v2))
print()
print_sizes("ResNet-18 (CIFAR stem) on 32x32x3:", block_sizes(resnet18))

# %%
def last_stage_resolution(model):
    spatial = [shape[:2] for _, shape in models.feature_map_sizes(model, include_convolutions=False) if len(shape) == 3]
    return spatial[-1]


print("ResNet50V2 last feature map:", last_stage_resolution(resnet50v2))
print("ResNet-18  last feature map:", last_stage_resolution(resnet18))
assert last_stage_resolution(resnet50v2) == (1, 1) and last_stage_resolution(resnet18) == (4, 4)

# %% [markdown]
# At 1x1, a 3x3 convolution only ever sees its centre weight, and padding fills the rest: most of
# ResNet50V2's last stage does nothing useful on CIFAR. The original example still reached 78-82%
# (its reported numbers), but every CIFAR result in the SupCon paper uses a CIFAR stem.
#
# ## Parameter counts

# %%
rows = []
for name in models.ENCODERS:
    encoder = resnet50v2 if name == "resnet50v2" else resnet18 if name == "resnet18" else models.build_encoder(name)
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
# Let us look at both heads, untrained, on random zero-mean feature vectors (a stand-in for the
# varied features of a trained encoder):

# %%
features = np.random.default_rng(0).normal(size=(256, 512)).astype("float32")


def pairwise_cosines(vectors):
    vectors = np.asarray(vectors, np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    cosines = unit @ unit.T
    return cosines[~np.eye(len(unit), dtype=bool)]


for kind in ("original", "linear", "mlp"):
    head = models.build_projection_head(kind, input_dim=features.shape[-1], projection_dim=128)
    cosines = pairwise_cosines(keras.ops.convert_to_numpy(head(features)))
    print(f"head '{kind}': min cosine {cosines.min():+.3f}, mean {cosines.mean():+.3f}, "
          f"share of negative cosines {np.mean(cosines < 0):.1%}")

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
assert gaps[0.1] < 0.01 < gaps[0.5] and gaps[1.0] > 0.01

# %% [markdown]
# The ReLU head gives only non-negative cosines; the linear head, on zero-mean inputs, gives both
# signs. (The MLP's hidden ReLU makes its untrained outputs share a positive component, but its
# linear output layer can learn to remove it; the ReLU head can never produce a negative cosine.)
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
# its last stage a 1x1 map, the CIFAR stem a 4x4 one. We counted parameters of every encoder and
# head, and measured that a ReLU at the projection head's output forces non-negative cosines,
# which raises the best reachable SupCon loss.
#
# ## Exercises
# 1. Build ResNet50V2 for 64x64 inputs (`input_shape=(64, 64, 3)`): at what resolution does its last stage work now?
# 2. Repeat the prototype computation with 100 classes: how does the simplex cosine -1/(C-1) change, and what happens to the gap?
# 3. The projection head is thrown away after pre-training. Why might features *before* it transfer better? (Hint: what must the head's output forget to make all views of a class coincide?)
#
# **Next:** [03 · The SupCon loss, derived](03_supcon_loss_derivation.ipynb)
