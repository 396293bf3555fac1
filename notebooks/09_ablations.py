# %% [markdown]
# # 09 · Ablations: temperature and batch size
#
# *Change one setting of SupCon at a time, from short runs that are cached and reused, and see what moves: the probe's accuracy, kNN, and the geometry of notebook 08.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/09_ablations.ipynb)
#
# **In this notebook we will**
# - train short SupCon runs that differ from one centre run in one setting: the temperature, or the batch size (how many anchors, positives and negatives each step sees);
# - compare their linear-probe and kNN accuracy, and the alignment, uniformity, effective rank and class spread of their embeddings;
# - set what this run shows next to what the papers report, without claiming more than it supports.
#
# **Prerequisites:** notebooks 03 (temperature in the loss), 05 (two-phase SupCon) and 08 (the geometry).
#
# **Run time:** five short runs, each cached in its run folder (a second run of the notebook
# trains nothing): `smoke` about a minute on a CPU, `cpu` about 13 minutes on 2 busy cores, `gpu` about
# 15 minutes.

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

import numpy as np  # noqa: E402

from supcon_lib import geometry, paths, run_config, runtime, training, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=True, runs_on_drive=KEEP_RUNS_ON_DRIVE)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; default: gpu on a GPU, else smoke
print(PROFILE, "-", runtime.PROFILE_DESCRIPTIONS[PROFILE])

# %% [markdown]
# ## The runs
# Every run is the profile's SupCon recipe (notebook 05) cut short: the same encoder, augmentation,
# optimizer and probe, fewer epochs. The **centre** run keeps the profile's temperature (0.1) and
# batch size; each other run changes exactly one of the two. The same number of epochs for
# every run means the same images seen, so a larger batch takes *fewer* steps: that is part of
# what a batch-size ablation measures at a fixed budget, and we say so rather than hide it.

# %%
SHORT = {"smoke": dict(epochs=2, probe_epochs=10), "cpu": dict(epochs=4, probe_epochs=20),
         "gpu": dict(epochs=10, probe_epochs=20), "full": dict(epochs=50, probe_epochs=50)}[PROFILE]
centre = run_config.RunConfig.from_profile(PROFILE, "supcon", **SHORT)
temperatures = (0.05, centre.temperature, 0.5)
batch_sizes = (centre.batch_size // 2, centre.batch_size, centre.batch_size * 2)
settings = sorted({(t, centre.batch_size) for t in temperatures} | {(centre.temperature, b) for b in batch_sizes})
arrays = training.load_data(centre)
(x_train, y_train), (x_test, y_test), class_names = arrays
print(f"{len(settings)} runs of {SHORT['epochs']} epochs + a {SHORT['probe_epochs']}-epoch probe, "
      f"{len(x_train)} training images")

results = {}
for temperature, batch_size in settings:
    config = run_config.RunConfig.from_profile(PROFILE, "supcon", temperature=temperature, batch_size=batch_size,
                                               verbose=0, **SHORT)
    folder = paths.runs_dir() / f"{PROFILE}_ablation_t{temperature:g}_b{batch_size}"
    result = training.run(config, folder, arrays=arrays)
    features = result.embed(x_test)
    history = result.metrics["history"]["pretrain"]
    spread = geometry.class_spread(features, y_test)
    results[(temperature, batch_size)] = {
        "temperature": temperature, "batch_size": batch_size,
        "steps": SHORT["epochs"] * (len(x_train) // batch_size),
        "probe": result.metrics["test_accuracy"], "knn": result.metrics["knn_accuracy"],
        "alignment": history["projection_alignment"][-1], "uniformity": history["projection_uniformity"][-1],
        "rank": geometry.effective_rank(features), "within/between": spread.ratio,
        "seconds": result.metrics["train_seconds"],
    }

columns = ("temperature", "batch_size", "steps", "probe", "knn", "alignment", "uniformity", "rank", "within/between")
print(" ".join(f"{c:>14s}" for c in columns))
for row in results.values():
    print(" ".join(f"{row[c]:14.3f}" if isinstance(row[c], float) else f"{row[c]:14d}" for c in columns))

# %% [markdown]
# `alignment` and `uniformity` are those of the projections the loss sees (notebook 08's
# monitor, last epoch, 256 held-out images); `rank` and `within/between` are those of the encoder
# features of all test images. Accuracies have a binomial standard error of at most
# `sqrt(0.25 / N)` on N test images: printed below.

# %%
standard_error = float(np.sqrt(0.25 / len(y_test)))
print(f"{len(y_test)} test images: standard error of one accuracy at most {standard_error:.3f}; "
      f"a difference of two runs is beyond noise above about {2 * np.sqrt(2) * standard_error:.3f}")
by_temperature = [results[(t, centre.batch_size)] for t in temperatures]
by_batch = [results[(centre.temperature, b)] for b in batch_sizes]
fig = viz.plot_ablation({"temperature": by_temperature, "batch_size": by_batch},
                        metrics=(("probe", "linear probe accuracy"), ("knn", "kNN accuracy"),
                                 ("uniformity", "uniformity of projections"), ("alignment", "alignment of projections")),
                        title=f"SupCon, one setting changed at a time ({PROFILE}, {SHORT['epochs']} epochs)")
if PROFILE == "cpu":
    viz.save_fig(fig, "09_ablations")

# %% [markdown]
# ## What this run shows, next to what the papers report
# - **Temperature.** Khosla et al. (2020, Section 4 and their Figure on temperature) find 0.1
#   best on ImageNet with their schedule. Wang & Liu (2021, "Understanding the Behaviour of
#   Contrastive Loss", arXiv:2012.09740) show that a small temperature concentrates the gradient on
#   the hardest negatives (notebook 03 draws this) and spreads the embedding more uniformly, while a
#   large one is more tolerant of near neighbours.
# - **Batch size.** SupCon, like SimCLR, is reported to gain from large batches (more positives and
#   negatives per anchor; Khosla et al. train with 6,144 on ImageNet). At a fixed number of epochs a
#   larger batch also means fewer steps, which at short budgets can cost more than the extra
#   negatives give.
#
# Each line below is computed from the table above:

# %%
best_temperature = max(by_temperature, key=lambda row: row["probe"])
best_batch = max(by_batch, key=lambda row: row["probe"])


def verdict(rows, key):
    values = [row[key] for row in rows]
    return "beyond noise" if max(values) - min(values) > 2 * np.sqrt(2) * standard_error else "within noise"


claims = [
    (f"the probe is best at temperature {centre.temperature:g} (Khosla et al. 2020)",
     best_temperature["temperature"] == centre.temperature,
     f"best {best_temperature['temperature']:g}; spread of the probe over temperatures {verdict(by_temperature, 'probe')}"),
    ("the lowest temperature gives the most uniform projections (Wang & Liu 2021)",
     min(by_temperature, key=lambda row: row["uniformity"])["temperature"] == min(temperatures),
     ", ".join(f"{row['temperature']:g}: {row['uniformity']:.3f}" for row in by_temperature)),
    (f"the largest batch ({max(batch_sizes)}) gives the best probe at this number of epochs",
     best_batch["batch_size"] == max(batch_sizes),
     f"best {best_batch['batch_size']}; steps {', '.join(str(row['steps']) for row in by_batch)}; "
     f"spread {verdict(by_batch, 'probe')}"),
]
for claim, holds, numbers in claims:
    print(f"{'yes' if holds else 'no ':3s}  {claim}\n     ({numbers})")

# %% [markdown]
# These are single short runs with one seed: a "yes" or "no" whose spread is within noise says
# only that this budget cannot tell the settings apart. Longer runs (the `gpu` profile) or more
# seeds are how to find out.
#
# ## Summary
# In this notebook we changed the temperature and the batch size of SupCon one at a time around a
# centre run, and read off the probe, kNN and the geometry of each run. Every number and every
# "yes"/"no" above was computed in this run, and every run is cached: run the notebook again, or
# with other settings, and only what is new trains.
#
# ## Exercises
# 1. Add temperature 0.2 and 1.0 to `temperatures`. Where does the probe peak, and does uniformity keep falling as the temperature does?
# 2. Repeat the batch-size runs with the number of *steps* held fixed instead of the epochs (`epochs` scaled with the batch size). Does the ordering change?
# 3. Add `views=4` to the centre run's settings (four views per image: more positives per anchor at the same batch size). What does it cost per step, and what does it buy?
#
# This is the last notebook. Back to the start: [01 · Data and augmentation](01_data_and_augmentation.ipynb)
