# %% [markdown]
# # 08 · What the embedding learned
#
# *Put numbers on the geometry that SupCon and cross-entropy give their embeddings, and ask what it buys beyond test accuracy: fewer labels, corrupted images, honest confidence.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/08_what_the_embedding_learned.ipynb)
#
# **In this notebook we will**
# - follow the alignment and uniformity of held-out embeddings epoch by epoch, for both recipes (recorded while they trained);
# - look for collapse: the singular-value spectrum and effective rank of the features, the within- and between-class spread, and what the projection head removes;
# - train linear probes and kNN on 1%, 10% and 100% of the training labels (label efficiency);
# - measure accuracy under corrupted images, and how well each recipe's confidence is calibrated.
#
# **Prerequisites:** notebooks 03 (the loss as alignment + repulsion), 04 and 05 (their runs are
# reused; whatever is missing is trained here), 06 (the t-SNE pictures these numbers go with).
#
# **Run time:** with 04 and 05 already run: `smoke` about 40 s, `cpu` about 3.5 minutes on 2 CPU
# cores (probes on 10,000 features, 19 evaluations of 2,000 test images per recipe), `gpu` a few
# minutes.

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

from supcon_lib import geometry, paths, probes, robustness, run_config, runtime, training, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=True, runs_on_drive=KEEP_RUNS_ON_DRIVE)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; default: gpu on a GPU, else smoke
print(PROFILE, "-", runtime.PROFILE_DESCRIPTIONS[PROFILE])

# %% [markdown]
# ## The two runs
# As in 06, `training.run` on a finished run folder loads it and trains nothing.

# %%
arrays = training.load_data(run_config.RunConfig.from_profile(PROFILE, "ce"))
(x_train, y_train), (x_test, y_test), class_names = arrays
runs = {}
for method, label in (("ce", "cross-entropy"), ("supcon", "SupCon")):
    config = run_config.RunConfig.from_profile(PROFILE, method)
    runs[label] = training.run(config, paths.runs_dir() / f"{PROFILE}_{method}", arrays=arrays)
    print(f"{label:14s} test accuracy {runs[label].metrics['test_accuracy']:.4f}, "
          f"kNN {runs[label].metrics['knn_accuracy']:.4f}")
features = {label: (run.embed(x_train), run.embed(x_test)) for label, run in runs.items()}

# %% [markdown]
# ## 1 · Alignment and uniformity, epoch by epoch
# Wang & Isola (2020, arXiv:2005.10242) showed that a contrastive loss, as its number of negatives
# grows, splits into two terms: **alignment**, the mean squared distance between normalised
# embeddings of positives (small: positives together), and **uniformity**,
# `log mean exp(-2 ||z_i - z_j||^2)` over all pairs (more negative: points spread evenly over the
# sphere). They are the two halves of the SupCon loss that notebook 03 separated: the
# **alignment** term `-mean_p z_i . z_p / tau` and the **repulsion** term
# `log sum_a exp(z_i . z_a / tau)`. With labels, SupCon's positives are all images of the anchor's
# class, so we measure alignment over same-class pairs.
#
# `training.run` records both for 512 held-out images at the end of every epoch
# (`callbacks.GeometryMonitor`, on by default: it runs the encoder in inference mode and changes
# nothing in training), for the encoder features and, for SupCon, for the projections the loss
# sees. Cross-entropy has no projection head, so it has only the feature curves.

# %%
histories = {label: run.metrics["history"]["pretrain" if label == "SupCon" else "train"]
             for label, run in runs.items()}
fig = viz.plot_geometry_history(histories, title=f"Held-out embeddings during training ({PROFILE})")
if PROFILE == "cpu":
    viz.save_fig(fig, "08_alignment_uniformity")
final = {label: {key: values[-1] for key, values in history.items() if key.startswith(("feature_", "projection_"))}
         for label, history in histories.items()}
for label, values in final.items():
    print(label, {key: round(value, 3) for key, value in values.items()})

# %% [markdown]
# What to read from the curves (the printed last values are this run's): a falling alignment means
# images of one class move together on the sphere. Uniformity is 0 when all points coincide, and
# close to -4 (that is, `-2t`) when they are spread evenly over a high-dimensional sphere, where
# two random points are at squared distance about 2. Read the two together: an alignment near 0
# is only good news if uniformity is well below 0, since points that all sit in one spot are
# perfectly "aligned" too (a freshly initialised projection head is close to that). Both recipes
# trade one against the other;
# on the projections SupCon optimises exactly this pair, while its encoder features, one layer
# before, are shaped only indirectly.
#
# ## 2 · Collapse: how many directions, and how tight the classes
# Two kinds of collapse are described in the literature:
# - **dimensional collapse** (Jing et al. 2022, "Understanding Dimensional Collapse in Contrastive
#   Self-supervised Learning", arXiv:2110.09348): the embeddings span fewer directions than they
#   have, seen in the singular values of the (centred) feature matrix. One number sums it up, the
#   effective rank (Roy & Vetterli 2007): `exp` of the entropy of the normalised singular values;
#   D when all directions are used alike, 1 when only one is.
# - **class collapse** (Graf et al. 2021, "Dissecting Supervised Contrastive Learning",
#   arXiv:2102.08817, prove that the SupCon loss is minimised when every class collapses to one
#   point, the vertices of a regular simplex; Papyan et al. 2020, arXiv:2008.08186, observe the
#   same "neural collapse" for cross-entropy late in training): the within-class spread falls
#   towards 0 relative to the spread between class means.
#
# SimCLR (Chen et al. 2020, arXiv:2002.05709) found that features *before* the projection head
# serve downstream tasks better than the projections: the head can discard what the loss does not
# need. We compare the SupCon encoder's features with its projections too.

# %%
spaces = {"cross-entropy features": features["cross-entropy"][1],
          "SupCon features": features["SupCon"][1],
          "SupCon projections": runs["SupCon"].project(x_test)}
spectra = {name: geometry.singular_values(values) for name, values in spaces.items()}
fig = viz.plot_spectrum(spectra, title=f"Spectra of held-out embeddings ({PROFILE})")
if PROFILE == "cpu":
    viz.save_fig(fig, "08_spectrum")
collapse = {}
print(f"{'':24s} {'dim':>4s} {'eff. rank':>9s} {'within':>7s} {'between':>8s} {'within/between':>15s}")
for name, values in spaces.items():
    spread = geometry.class_spread(values, y_test)
    collapse[name] = dict(dim=values.shape[1], rank=geometry.effective_rank(spectra[name]), **spread._asdict())
    print(f"{name:24s} {values.shape[1]:4d} {collapse[name]['rank']:9.1f} {spread.within:7.3f} "
          f"{spread.between:8.3f} {spread.ratio:15.3f}")
tighter = min(("cross-entropy features", "SupCon features"), key=lambda name: collapse[name]["ratio"])
before, after = collapse["SupCon features"], collapse["SupCon projections"]
print(f"\nTighter classes, relative to their separation: {tighter}")
print(f"SupCon's projection head: effective rank {before['rank']:.1f} -> {after['rank']:.1f}, "
      f"within/between {before['ratio']:.3f} -> {after['ratio']:.3f}")

# %% [markdown]
# The table is this run's answer. Things to look for: whether the projections, which the SupCon
# loss sees, are more class-collapsed (smaller within/between) than the features below them; and
# whether the head lowers the effective rank, i.e. whether the encoder keeps directions the loss
# itself does not use. The collapsed optimum the theory describes has a ratio of 0: compare the
# printed ratios with it.
#
# ## 3 · Label efficiency
# A good representation should need few labels. We freeze both encoders, and give a linear probe
# (logistic regression on standardised features) and kNN only 1%, 10% or 100% of the training
# labels, the same images for both encoders (`probes.stratified_subset`: the same share of every
# class, nested, seeded). Cross-entropy's encoder has seen *all* labels while it was trained, and
# so has SupCon's: this measures how well each embedding lets a *new* classifier learn from few
# labels, not semi-supervised learning.

# %%
efficiency = {label: probes.label_efficiency(train_f, y_train, test_f, y_test, fractions=(0.01, 0.1, 1.0))
              for label, (train_f, test_f) in features.items()}
for label, rows in efficiency.items():
    print(label, [(row["labels"], round(row["linear_accuracy"], 3), round(row["knn_accuracy"], 3)) for row in rows])
fig = viz.plot_label_efficiency(efficiency, title=f"Frozen encoders with a fraction of the labels ({PROFILE})")
if PROFILE == "cpu":
    viz.save_fig(fig, "08_label_efficiency")
fewest = {label: rows[0] for label, rows in efficiency.items()}
best_with_fewest = max(fewest, key=lambda label: fewest[label]["linear_accuracy"])
print(f"with {fewest[best_with_fewest]['labels']} labels, the better linear probe: {best_with_fewest}")

# %% [markdown]
# ## 4 · Corrupted images and calibration
# Clean test accuracy says nothing about noisier, blurrier or more compressed images.
# `robustness` generates six corruptions of the kind CIFAR-10-C (Hendrycks & Dietterich 2019,
# arXiv:1903.12261) uses, at severities 1, 3 and 5, from the test images in code; its parameters
# are ours, so the numbers are not comparable with published CIFAR-10-C tables. Each recipe is
# evaluated with its own classifier: cross-entropy's head, SupCon's linear probe on the frozen
# encoder. Khosla et al. (2020, Table 3) report that SupCon is more robust than cross-entropy on
# ImageNet-C; here we see what our short runs show.

# %%
severities = (1, 3, 5)
corrupted = {label: robustness.evaluate_under_corruptions(run.logits, x_test, y_test, severities=severities)
             for label, run in runs.items()}
fig = viz.plot_corruption_accuracy(corrupted, title=f"Test accuracy under corruptions ({PROFILE})")
if PROFILE == "cpu":
    viz.save_fig(fig, "08_corruptions")
for label, rows in corrupted.items():
    clean = rows[0]["accuracy"]
    worst = [row for row in rows if row["severity"] == max(severities)]
    mean_worst = np.mean([row["accuracy"] for row in worst])
    print(f"{label:14s} clean {clean:.3f}; mean over corruptions at severity {max(severities)}: {mean_worst:.3f} "
          f"(keeps {mean_worst / clean:.0%} of its clean accuracy)")

# %% [markdown]
# **Calibration.** A classifier is calibrated when it is right 80% of the time on the images it
# gives 80% confidence. The reliability diagram bins test predictions by confidence and draws
# each bin's accuracy; the expected calibration error (ECE, Guo et al. 2017, arXiv:1706.04599) is
# the average gap, weighted by how many predictions fall in each bin. Both recipes, clean images,
# and the same under the strongest corruption:

# %%
for label, run in runs.items():
    probabilities = robustness.softmax(run.logits(x_test))
    data = robustness.reliability_diagram_data(probabilities, y_test)
    fig = viz.plot_reliability_diagram(data, title=f"{label}: reliability on clean test images ({PROFILE})")
    if PROFILE == "cpu":
        viz.save_fig(fig, f"08_reliability_{'ce' if label == 'cross-entropy' else 'supcon'}")
    worst_ece = np.mean([row["ece"] for row in corrupted[label] if row["severity"] == max(severities)])
    print(f"{label:14s} ECE clean {data['ece']:.3f}, mean at severity {max(severities)} {worst_ece:.3f}")

# %% [markdown]
# ## What this run shows, next to what the papers claim
# Each line below is computed from this run; the claims are the cited papers'. Accuracy
# differences come with a verdict against their noise (the number of test images limits what one
# run can show); the geometric numbers are measured once, without an error bar. A short run on a
# small encoder is not the papers' setting, so a "no" is a finding about this budget, not a
# refutation.

# %%
standard_error = np.sqrt(0.25 / len(y_test))  # of one accuracy, at most (binomial, p = 0.5)
robust = {label: np.mean([row["accuracy"] for row in rows if row["severity"] == max(severities)])
          for label, rows in corrupted.items()}
ece = {label: robustness.expected_calibration_error(robustness.softmax(run.logits(x_test)), y_test)
       for label, run in runs.items()}


def accuracy_gap(supcon, ce):
    """SupCon minus cross-entropy, and whether it is larger than two standard errors of a difference."""
    gap = supcon - ce
    return f"{gap:+.3f}, {'beyond' if abs(gap) > 2 * np.sqrt(2) * standard_error else 'within'} noise"


findings = [
    ("SupCon's projections are more class-collapsed than its features (Graf et al. 2021: the loss's optimum is class collapse)",
     collapse["SupCon projections"]["ratio"] < collapse["SupCon features"]["ratio"],
     f"within/between {collapse['SupCon projections']['ratio']:.3f} vs {collapse['SupCon features']['ratio']:.3f}"),
    ("SupCon's features are more class-collapsed than cross-entropy's",
     collapse["SupCon features"]["ratio"] < collapse["cross-entropy features"]["ratio"],
     f"within/between {collapse['SupCon features']['ratio']:.3f} vs {collapse['cross-entropy features']['ratio']:.3f}"),
    ("the projection head lowers the effective rank (SimCLR; Jing et al. 2022: collapse happens in the head)",
     collapse["SupCon projections"]["rank"] < collapse["SupCon features"]["rank"],
     f"{collapse['SupCon projections']['rank']:.1f} vs {collapse['SupCon features']['rank']:.1f}"),
    ("SupCon's encoder is the better one with 1% of the labels (linear probe)",
     fewest["SupCon"]["linear_accuracy"] > fewest["cross-entropy"]["linear_accuracy"],
     accuracy_gap(fewest["SupCon"]["linear_accuracy"], fewest["cross-entropy"]["linear_accuracy"])),
    ("SupCon has the higher mean accuracy under the strongest corruptions (Khosla et al. 2020, Table 3)",
     robust["SupCon"] > robust["cross-entropy"], accuracy_gap(robust["SupCon"], robust["cross-entropy"])),
    ("SupCon's classifier is better calibrated on clean images (lower ECE)", ece["SupCon"] < ece["cross-entropy"],
     f"ECE {ece['SupCon']:.3f} vs {ece['cross-entropy']:.3f}"),
]
for claim, holds, numbers in findings:
    print(f"{'yes' if holds else 'no ':3s}  {claim}\n     ({numbers})")
print(f"\n{len(y_test)} test images: one accuracy has a standard error of at most {standard_error:.3f}, "
      f"a difference of two about {np.sqrt(2) * standard_error:.3f}; 'within noise' means within two of those.")

# %% [markdown]
# ## Summary
# In this notebook we measured the geometry the two recipes give their embeddings (alignment and uniformity during
# training, spectra, effective rank, class spread, before and after SupCon's projection head),
# then what a frozen embedding buys: accuracy from few labels, accuracy under corruptions, and
# calibration. Every number and every "yes"/"no" above was computed in this run.
#
# ## Exercises
# 1. `geometry.uniformity(..., t=...)`: the paper uses `t = 2`. How do the two recipes compare at `t = 0.5` and `t = 8`?
# 2. Compute `geometry.alignment_of_views` for two augmented views of the test images (`runs["SupCon"].pipeline(x, training=True)`): is SupCon's encoder more invariant to its own augmentation than cross-entropy's?
# 3. Repeat the label-efficiency study with `seed=1, 2` in `probes.label_efficiency`. How large is the spread at 1% of the labels, compared with the difference between the recipes?
#
# **Next:** [09 · Ablations: temperature and batch size](09_ablations.ipynb).
