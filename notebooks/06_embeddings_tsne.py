# %% [markdown]
# # 06 · Embeddings, side by side
#
# *Look at what the two recipes learned: t-SNE maps, kNN accuracy, class similarities and the nearest neighbours of mistakes.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/06_embeddings_tsne.ipynb)
#
# **In this notebook we will**
# - embed the same test images with the cross-entropy encoder (04) and the SupCon encoder (05);
# - draw both as 2-D t-SNE maps side by side, and measure kNN accuracy in the full embedding space;
# - compare class-by-class cosine similarities, and look at the nearest training neighbours of misclassified test images.
#
# **Prerequisites:** notebooks 04 and 05 (their runs are reused; whatever is missing is trained here).
#
# **Run time:** with 04 and 05 already run: `smoke` about 40 s, `cpu` about 2 minutes (t-SNE of 2,000
# points plus embedding 12,000 images on a CPU), `gpu` and `full` a few minutes (t-SNE of 10,000
# points: at most 60 s on 2 CPU cores with openTSNE). Without them, add their training times.

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

import time  # noqa: E402

import numpy as np  # noqa: E402

from supcon_lib import evaluation, paths, run_config, runtime, training, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=True, runs_on_drive=KEEP_RUNS_ON_DRIVE)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; default: gpu on a GPU, else smoke
print(PROFILE, "-", runtime.PROFILE_DESCRIPTIONS[PROFILE])

# %% [markdown]
# ## The two encoders
# `training.run` on a finished run folder loads its checkpoints and trains nothing; on a missing
# or interrupted one it trains what is left. Either way we get both encoders of this profile.

# %%
arrays = training.load_data(run_config.RunConfig.from_profile(PROFILE, "ce"))
(x_train, y_train), (x_test, y_test), class_names = arrays
runs = {}
for method, label in (("ce", "cross-entropy"), ("supcon", "SupCon")):
    config = run_config.RunConfig.from_profile(PROFILE, method)
    runs[label] = training.run(config, paths.runs_dir() / f"{PROFILE}_{method}", arrays=arrays)
    print(f"{label:14s} test accuracy {runs[label].metrics['test_accuracy']:.4f}")

# %% [markdown]
# ## Embeddings of the same test images
# Both encoders map each test image to a feature vector (the encoder output, before any head:
# the projection head is discarded after pretraining). kNN accuracy classifies each test image by
# a majority vote of its 20 most cosine-similar training images: it measures the embedding space
# directly, with no trained classifier in between.

# %%
embeddings = {label: (run.embed(x_train), run.embed(x_test)) for label, run in runs.items()}
for label, (train_embeddings, test_embeddings) in embeddings.items():
    knn = evaluation.knn_accuracy(train_embeddings, y_train, test_embeddings, y_test, k=20)
    assert abs(knn - runs[label].metrics["knn_accuracy"]) < 1e-9
    print(f"{label:14s} kNN accuracy (k = 20) {knn:.4f}, embedding dimension {test_embeddings.shape[1]}")

# %% [markdown]
# ## t-SNE, side by side
# t-SNE places points in 2-D so that near neighbours stay near; distances between far-apart
# clusters mean little. We reduce to 50 dimensions with PCA first, and use openTSNE's FFT-accelerated
# implementation when it is installed (scikit-learn's otherwise). Same points, same seed, both panels.

# %%
tsne_points = min(len(x_test), 10_000)
chosen = np.random.default_rng(0).choice(len(x_test), tsne_points, replace=False)
maps = {}
for label, (_, test_embeddings) in embeddings.items():
    started = time.perf_counter()
    result = evaluation.tsne_2d(test_embeddings[chosen], seed=0, return_method=True)
    maps[f"{label} (kNN {runs[label].metrics['knn_accuracy']:.3f})"] = result.coordinates
    print(f"{label}: t-SNE of {tsne_points} points with {result.method} in {time.perf_counter() - started:.1f} s")
fig = viz.plot_tsne(maps, y_test[chosen], class_names,
                    title=f"t-SNE of encoder embeddings, {tsne_points} test images ({PROFILE} profile)")
if PROFILE == "cpu":
    viz.save_fig(fig, "06_tsne_ce_vs_supcon")

# %% [markdown]
# ## Which recipe separates the classes more?
# The mean cosine similarity between the embeddings of every pair of classes. A well-separated
# embedding has a bright diagonal (a class is similar to itself) and a dark rest. One number
# summarises each matrix: the mean of its diagonal (within-class) minus the mean of its
# off-diagonal entries (between-class). Both panels share one colour scale, stretched over the
# range of their entries, so equal colours mean equal similarities.

# %%
similarities, contrast = {}, {}
for label, (_, test_embeddings) in embeddings.items():
    matrix = evaluation.class_cosine_similarity(test_embeddings, y_test, len(class_names))
    within, between = np.nanmean(np.diag(matrix)), np.nanmean(matrix[~np.eye(len(matrix), dtype=bool)])
    contrast[label] = within - between
    similarities[f"{label}: within - between = {within - between:.3f}"] = matrix
    print(f"{label:14s} within-class {within:.3f}, between-class {between:.3f}, difference {within - between:.3f}")
more_separated = max(contrast, key=contrast.get)
# Encoder features come after a ReLU and average pooling: none is negative, so no cosine is either.
assert all(features.min() >= 0 for _, features in embeddings.values())
assert all(np.nanmin(matrix) >= 0 for matrix in similarities.values())
print(f"larger difference: {more_separated}")
fig = viz.plot_class_similarities(
    similarities, class_names,
    title=f"Which recipe separates classes more? {more_separated}, by mean within- minus between-class "
          f"cosine similarity ({PROFILE})")
if PROFILE == "cpu":
    viz.save_fig(fig, "06_class_similarity")

# %% [markdown]
# The printed differences (within minus between) summarise each heatmap in one number computed in
# this run. Keep in mind what is compared: encoder features come after a ReLU and average pooling,
# so no cosine is negative (checked above) and the numbers are compressed towards 1; the contrast the
# SupCon loss optimises directly lives on the (discarded) projections, and exercise 3 looks there.
#
# ## Nearest neighbours of mistakes
# For a few test images that the SupCon probe gets wrong, the five most similar training images in
# the SupCon embedding space, with their classes. Often the neighbours explain the mistake.

# %%
predictions = runs["SupCon"].predict(x_test)
wrong = np.flatnonzero(predictions != y_test)[:6]
train_embeddings, test_embeddings = embeddings["SupCon"]
print(f"{len(np.flatnonzero(predictions != y_test))} of {len(y_test)} test images misclassified by the SupCon probe")
if len(wrong):
    neighbours = evaluation.nearest_neighbours(test_embeddings[wrong], train_embeddings, k=5)
    fig = viz.plot_neighbours(
        x_test[wrong], x_train[neighbours],
        [f"true {class_names[y_test[i]]}\npred {class_names[predictions[i]]}" for i in wrong],
        [[class_names[y_train[j]] for j in row] for row in neighbours],
        title="Misclassified test images (left) and their 5 nearest training images (SupCon embedding)")
    if PROFILE == "cpu":
        viz.save_fig(fig, "06_neighbours_of_mistakes")

# %% [markdown]
# ## Summary
# In this notebook we embedded the same test images with both encoders, compared them with kNN
# accuracy, side-by-side t-SNE maps and class-similarity heatmaps, and looked at the nearest
# training neighbours of the SupCon probe's mistakes. All numbers above were computed in this run.
#
# ## Exercises
# 1. Run t-SNE with `perplexity=5` and `perplexity=100` (`evaluation.tsne_2d(..., perplexity=...)`). Which structures survive both?
# 2. Compute kNN accuracy with k = 1, 5, 50. Which encoder is more sensitive to k, and why might that be?
# 3. Embed the test images with the SupCon *projection head* as well (rebuild the model of notebook 05 and load the weights). Are classes more or less separated there than in the encoder features?
#
# **Next:** [07 · Accuracy against budget](07_accuracy_against_budget.ipynb): which recipe wins depends on the budget.
