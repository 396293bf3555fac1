# %% [markdown]
# # 03 · The SupCon loss, derived
#
# *From "pick the right class among C" to "pick your positives among everyone else": the loss as formulas, as a few lines of NumPy, and as numbers checked against `supcon_lib.losses`.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/03_supcon_loss_derivation.ipynb)
#
# **In this notebook we will**
# - read softmax cross-entropy as a multiple-choice question and turn it into SimCLR's NT-Xent and
#   SupCon's two formulations L_out and L_in, each written in NumPy and checked against
#   `supcon_lib.losses`;
# - put the original keras-io example's npairs loss next to ours and measure what its kept
#   diagonal does, from random to collapsed embeddings;
# - work out where the loss starts, how high it can go and where its floor lies;
# - see how the value and the gradient behave as the temperature falls, and check the gradient,
#   normalisation included, against finite differences;
# - see why float16 logits overflow unless the row maximum is subtracted first.
#
# **Prerequisites:** notebook 02; softmax, cross-entropy, logarithms and one derivative.
#
# **Run time:** every profile about 10 s on a CPU (nothing is trained here; the profile only
# decides whether the figures are saved).

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

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from supcon_lib import losses, runtime, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=False)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|gpu|full; only decides whether figures are saved
print(PROFILE)

# %% [markdown]
# ## 1 · Softmax cross-entropy: pick the right class among C
# A classifier gives an image one logit $\ell_c$ per class; the cross-entropy charges the
# log-probability of the true class $y$:
#
# $$\mathcal{L}_{\text{CE}} = -\log \frac{\exp(\ell_y)}{\sum_{c=1}^{C} \exp(\ell_c)}
#   = -\ell_y + \log \sum_{c=1}^{C} \exp(\ell_c).$$
#
# A multiple-choice question with $C$ answers: a uniform guess (equal logits) costs exactly
# $\log C$; the loss reaches 0 only when the right logit wins by an infinite margin (both asserted).

# %%
def softmax_cross_entropy(logits, target):
    """-log softmax(logits)[target] for one row of logits; a logit of -inf removes that answer."""
    return -logits[target] + np.log(np.sum(np.exp(logits)))


num_classes = 10
uniform_guess = softmax_cross_entropy(np.zeros(num_classes), target=3)
margin_five = softmax_cross_entropy(5.0 * np.eye(num_classes)[3], target=3)
assert np.isclose(uniform_guess, np.log(num_classes)) and 0 < margin_five < uniform_guess

# %% [markdown]
# ## 2 · NT-Xent: pick the other view among the 2N - 1 others
# SimCLR (Chen et al. 2020) asks the same question without labels. A batch holds $N$ images, each
# in two augmented views, embedded and L2-normalised: $2N$ unit vectors $z$. For an anchor $i$ the
# "classes" are the $2N-1$ *other* views, their logits the similarities $z_i \cdot z_a / \tau$ at
# temperature $\tau$, and the right answer $j(i)$ is the other view of the same image:
#
# $$\ell_i = -\log \frac{\exp(z_i \cdot z_{j(i)} / \tau)}{\sum_{a \ne i} \exp(z_i \cdot z_a / \tau)},
#   \qquad \mathcal{L}_{\text{NT-Xent}} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i .$$
#
# It *is* softmax cross-entropy, with $2N - 1$ classes that change every batch: the code calls
# `softmax_cross_entropy` once per anchor. Our batch: 8 images of 4 classes (class 3 has a single
# image), two views each, 16 dimensions; each view is its class's random prototype plus noise.

# %%
def noisy_views(labels, dim, noise_scale, num_views=2):
    """(B, V, D) features: each view is its class's random prototype plus Gaussian noise."""
    prototypes = rng.normal(size=(labels.max() + 1, dim))
    return prototypes[labels][:, None, :] + noise_scale * rng.normal(size=(len(labels), num_views, dim))


def unit_rows(features):
    """(B, V, D) or (B, D) features -> (B * V, D) unit vectors, image-major (row b * V + v)."""
    flat = np.asarray(features, np.float64).reshape(-1, np.shape(features)[-1])
    return flat / np.linalg.norm(flat, axis=1, keepdims=True)


def ntxent_numpy(z, temperature):
    """NT-Xent of unit vectors z (2N, D) whose rows 2k and 2k + 1 are the two views of image k."""
    logits = z @ z.T / temperature
    np.fill_diagonal(logits, -np.inf)  # the anchor is not among its own 2N - 1 answers
    return np.mean([softmax_cross_entropy(logits[i], target=i ^ 1) for i in range(len(z))])  # i ^ 1 = j(i)


rng = np.random.default_rng(0)
labels = np.array([0, 0, 0, 1, 1, 2, 2, 3])
num_views, embedding_dim, temperature = 2, 16, 0.1
features = noisy_views(labels, embedding_dim, noise_scale=0.8).astype("float32")  # (B, V, D)
z = unit_rows(features)
num_anchors = len(z)
ntxent_inline = ntxent_numpy(z, temperature)
ntxent_library = float(losses.supcon_loss(None, features, temperature=temperature))
print(f"{num_anchors} anchors: NT-Xent {ntxent_inline:.6f} inline, {ntxent_library:.6f} library")
np.testing.assert_allclose(ntxent_inline, ntxent_library, rtol=1e-5)

# %% [markdown]
# ## 3 · SupCon: every sample of the class is a right answer
# With labels, an anchor has several right answers. Write $A(i)$ for all anchors except $i$,
# $P(i) \subset A(i)$ for those with $i$'s label (its positives) and $N(i) = A(i) \setminus P(i)$
# for its negatives. The paper (Khosla et al. 2020, eq. 2 and 3) averages over the positives
# outside or inside the log:
#
# $$\mathcal{L}^{\text{sup}}_{\text{out}} = \sum_i \frac{-1}{|P(i)|} \sum_{p \in P(i)}
#   \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)},
# \qquad
# \mathcal{L}^{\text{sup}}_{\text{in}} = \sum_i -\log \Bigg\{ \frac{1}{|P(i)|} \sum_{p \in P(i)}
#   \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)} \Bigg\}.$$
#
# `supcon_lib` and the code below take the *mean* over the anchors that have a positive, so the
# value does not grow with the batch. With image indices as labels, $P(i) = \{j(i)\}$ and both are
# NT-Xent. As $-\log$ is convex, Jensen's inequality gives $\mathcal{L}_{\text{out},i} \ge
# \mathcal{L}_{\text{in},i}$, equal for a single positive (class 3). The paper recommends
# $\mathcal{L}_{\text{out}}$ (its Table 1): inside the log the closest positive dominates, so
# $\mathcal{L}_{\text{in}}$ is nearly satisfied once one positive is close (exercise 2).

# %%
def supcon_terms_numpy(row_labels, z, temperature, formulation="out"):
    """Per-anchor terms of paper eq. 2 ("out") or 3 ("in"); NaN for an anchor without positives."""
    logits = z @ z.T / temperature
    np.fill_diagonal(logits, -np.inf)  # the softmax runs over A(i)
    log_shares = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    positives = (row_labels[:, None] == row_labels) & np.isfinite(logits)  # P(i)
    with np.errstate(invalid="ignore"):  # 0 / 0 = NaN where P(i) is empty
        if formulation == "out":  # the mean of the positives' log shares
            return -np.sum(np.where(positives, log_shares, 0.0), axis=1) / positives.sum(axis=1)
        return -np.log(np.sum(np.where(positives, np.exp(log_shares), 0.0), axis=1)
                       / positives.sum(axis=1))


row_labels = np.repeat(labels, num_views)  # one label per view, image-major like z
num_positives = np.sum(row_labels[:, None] == row_labels, axis=1) - 1  # |P(i)|
terms, library = {}, {}
for formulation in ("out", "in"):
    terms[formulation] = supcon_terms_numpy(row_labels, z, temperature, formulation)
    library[formulation] = float(losses.supcon_loss(labels, features, temperature=temperature,
                                                    formulation=formulation))
    np.testing.assert_allclose(np.nanmean(terms[formulation]), library[formulation], rtol=1e-5)
print(f"L_out {library['out']:.4f} >= L_in {library['in']:.4f}, inline and library")
image_ids = np.repeat(np.arange(len(labels)), num_views)
np.testing.assert_allclose(np.nanmean(supcon_terms_numpy(image_ids, z, temperature)), ntxent_inline)
assert np.all(terms["in"] <= terms["out"] + 1e-12) and library["in"] <= library["out"]
np.testing.assert_allclose(terms["out"][num_positives == 1], terms["in"][num_positives == 1])

# %% [markdown]
# ## 4 · The original example's npairs loss, diagonal kept
# The 2020 keras-io example embedded *one* view per image and passed $s_{ij} = z_i \cdot z_j / \tau$
# ($\tau = 0.05$) to tensorflow-addons' `npairs_loss`: a softmax over *all* $B$ columns, the
# anchor's own included, against targets spread evenly over its class, itself included:
#
# $$\mathcal{L}_{\text{npairs}} = \frac{1}{B} \sum_{i=1}^{B} -\sum_{j=1}^{B} t_{ij}
#   \log \frac{\exp(s_{ij})}{\sum_{k=1}^{B} \exp(s_{ik})},
# \qquad t_{ij} = \frac{[y_i = y_j]}{n_i}, \quad n_i = \#\{k : y_k = y_i\} .$$
#
# The diagonal logit $s_{ii} = 1/\tau$ is the largest possible, and no encoder can change it.
# Dropping it from targets and softmax (and the rows then left without a target) gives SupCon's
# $\mathcal{L}_{\text{out}}$ with one view. Keeping it, a row's log-sum-exp is
# $1/\tau - \log \mathrm{softmax}_{ii}$, so each row splits in two:
#
# $$-\sum_j t_{ij} \log \mathrm{softmax}_{ij}
#   = \underbrace{\frac{1}{n_i} \sum_{j:\, y_j = y_i} \frac{1 - z_i \cdot z_j}{\tau}}_{\text{alignment}}
#   \; + \; \underbrace{\log\Big(1 + \sum_{k \ne i} e^{(z_i \cdot z_k - 1)/\tau}\Big)}_{
#   \text{repulsion} \,=\, -\log \mathrm{softmax}_{ii}} .$$
#
# Alignment never sees a negative; repulsion pushes $z_i$ from *every* other sample, positives
# included. The lone image of class 3 targets itself: its row is repulsion alone, yet it counts in
# the mean, where SupCon leaves it out. We check all this on view 0 of our batch.

# %%
def npairs_numpy(labels, z, temperature, keep_diagonal=True):
    """The original example's loss on unit vectors z (B, D), one view per image."""
    logits, diagonal = z @ z.T / temperature, np.eye(len(z), dtype=bool)
    logits[diagonal & (not keep_diagonal)] = -np.inf  # exp(-inf) = 0: gone from the softmax
    targets = (labels[:, None] == labels) & (keep_diagonal | ~diagonal)
    log_softmax = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    rows = targets.any(axis=1)  # with the diagonal kept, every row
    return -np.mean(np.sum(np.where(targets, log_softmax, 0.0), axis=1)[rows] / targets.sum(axis=1)[rows])


def npairs_parts(labels, z, temperature):
    """Per row: alignment and repulsion; exp(-repulsion) is the softmax's share on the diagonal."""
    cosines = z @ z.T
    same_class = labels[:, None] == labels[None, :]
    alignment = np.sum(np.where(same_class, 1.0 - cosines, 0.0), axis=1) / same_class.sum(axis=1)
    return alignment / temperature, np.log(np.sum(np.exp((cosines - 1.0) / temperature), axis=1))


npairs_temperature = 0.05  # the original example's
single_view = features[:, 0, :]  # (B, D): view 0 of each image
z_single = unit_rows(single_view)
npairs_library = float(losses.npairs_loss(labels, single_view, temperature=npairs_temperature))
supcon_single = float(losses.supcon_loss(labels, single_view, temperature=npairs_temperature))
alignment, repulsion = npairs_parts(labels, z_single, npairs_temperature)
print(f"npairs {npairs_library:.3f} = alignment {alignment.mean():.3f} + repulsion {repulsion.mean():.4f}; "
      f"without the diagonal {supcon_single:.3f} = SupCon")
np.testing.assert_allclose(npairs_numpy(labels, z_single, npairs_temperature), npairs_library, rtol=1e-5)
np.testing.assert_allclose(npairs_numpy(labels, z_single, npairs_temperature, keep_diagonal=False),
                           supcon_single, rtol=1e-5)
np.testing.assert_allclose(np.mean(alignment + repulsion), npairs_library, rtol=1e-5)
assert abs(alignment[labels == 3][0]) < 1e-12  # the single image of class 3: its row is repulsion alone
assert np.all(np.exp(-repulsion) > 0.99) and repulsion.mean() < 0.01 * alignment.mean()  # this batch only

# %% [markdown]
# On *this* noisy batch the diagonal holds over 99% of every row's softmax (asserted): npairs is
# almost pure alignment. That is the batch, not the loss. When a class collapses to one point its
# $n_i$ members all have logit $1/\tau$ and share the row evenly: the diagonal holds $1/n_i$, what
# the targets ask for, and the row costs the targets' entropy $\log n_i$, npairs' minimum. Below,
# the embeddings move from random unit vectors to collapsed, mutually orthogonal classes.

# %%
def collapse_path(labels, collapse, seed=1, dim=embedding_dim):
    """(B, D) unit vectors: (1 - collapse) * random + collapse * one-hot prototype of the class."""
    random_part = unit_rows(np.random.default_rng(seed).normal(size=(len(labels), dim)))
    return unit_rows((1.0 - collapse) * random_part + collapse * np.eye(dim)[labels])


class_size = np.sum(labels[:, None] == labels, axis=1)  # n_i
entropy_floor = np.mean(np.log(class_size))
collapse_grid = np.linspace(0.0, 1.0, 21)
paths = [collapse_path(labels, collapse) for collapse in collapse_grid]
shares = np.exp(-np.array([npairs_parts(labels, path, npairs_temperature)[1] for path in paths]))
npairs_path = [float(losses.npairs_loss(labels, path.astype("float32"), temperature=npairs_temperature))
               for path in paths]
np.testing.assert_allclose(shares[-1], 1.0 / class_size, rtol=1e-6)
np.testing.assert_allclose(npairs_path[-1], entropy_floor, rtol=1e-5)
assert min(npairs_path) >= entropy_floor - 1e-6 and np.all(shares[0] > 0.99)

fig, ax = plt.subplots(figsize=(7, 3.8))
for size in sorted(set(class_size)):
    line, = ax.plot(collapse_grid, shares[:, class_size == size].mean(axis=1), marker="o", ms=3,
                    label=f"rows with n_i = {size} (mean); dashed: 1 / n_i")
    ax.axhline(1 / size, color=line.get_color(), linestyle="--", linewidth=1)
ax.set(xlabel="collapse: 0 = random unit vectors, 1 = every class on one point",
       ylabel="softmax share on the diagonal",
       title=f"npairs (tau = {npairs_temperature}): the diagonal's share depends on the batch")
ax.legend(fontsize=8)
if PROFILE == "cpu":
    viz.save_fig(fig, "03_npairs_diagonal")

# %% [markdown]
# ## 5 · Where the loss starts, how high it can go, and its floor
# **Start.** If all cosines are equal (all embeddings identical, or a regular simplex), every
# softmax share is $1/(A-1)$, with $A$ the number of anchors: $\mathcal{L}_{\text{out},i} =
# \mathcal{L}_{\text{in},i} = \log(A-1)$ at every temperature, the loss of an encoder that tells
# nothing apart. **Not a ceiling:** random embeddings start above it (exercise 1). The log-sum-exp
# is at most $\log(A-1) + 1/\tau$ and the positives' mean logit at least $-1/\tau$, so
# $\mathcal{L}_{\text{out},i} \le \log(A-1) + 2/\tau$; the worst anchor (its positive opposite,
# every negative on it) stays less than $1/(A-2)$ below that (exercise 4).
#
# **Floor.** Drop the negatives from the denominator (it only gets smaller) and use that the log
# of a mean of exponentials is at least the mean of the exponents (Jensen again):
#
# $$\mathcal{L}_{\text{out},i} = \log \sum_{a \in A(i)} e^{s_{ia}} - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}
#   \;\ge\; \log \sum_{p \in P(i)} e^{s_{ip}} - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}
#   \;\ge\; \log |P(i)| .$$
#
# Not 0: with $|P(i)|$ right answers the softmax at best splits its mass evenly among them
# ($\mathcal{L}_{\text{in}}$ too, exercise 5). **Class collapse**, every class on one point and the
# classes orthogonal, approaches it: $\mathcal{L}_{\text{out},i} = \log\big(|P(i)| + |N(i)|\,
# e^{-1/\tau}\big) \to \log |P(i)|$ as $\tau \to 0$. A training curve below this floor has a bug.

# %%
same_cosines = {"identical": np.ones_like(features),  # c = 1; the simplex: A centred one-hot vectors
                "simplex": (np.eye(num_anchors) - 1.0 / num_anchors).reshape(len(labels), num_views, -1)}
start_value = np.log(num_anchors - 1)
start_values = [float(losses.supcon_loss(labels, batch.astype("float32"), temperature=tau, formulation=form))
                for batch in same_cosines.values() for tau in (0.05, 0.1, 1.0) for form in ("out", "in")]
np.testing.assert_allclose(start_values, start_value, rtol=1e-5)
random_labels = rng.integers(0, 10, size=256)
random_features = rng.normal(size=(256, 2, 128)).astype("float32")  # 256 images, 2 views, D = 128
random_value = float(losses.supcon_loss(random_labels, random_features, temperature=temperature))
assert random_value > np.log(511) + 0.1
worst_gaps = []
for batch_size in (16, 64, 256, 1024):  # one view; rows 0 and 1 are positives, every other row = row 0
    worst = np.tile([1.0, 0.0], (batch_size, 1))
    worst[1] = -worst[1]
    worst_labels = np.array([0, 0] + [1] * (batch_size - 2))
    worst_terms = supcon_terms_numpy(worst_labels, worst, temperature)
    np.testing.assert_allclose(np.nanmean(worst_terms), float(losses.supcon_loss(
        worst_labels, worst.astype("float32"), temperature=temperature)), rtol=1e-5)
    worst_gaps.append(np.log(batch_size - 1) + 2 / temperature - worst_terms[0])
    assert 0 < worst_gaps[-1] < 1 / (batch_size - 2)
assert all(later < earlier for earlier, later in zip(worst_gaps, worst_gaps[1:]))

orthogonal = np.stack([paths[-1]] * num_views, axis=1).astype("float32")  # collapsed, from section 4
floor = np.mean(np.log(num_positives))
np.testing.assert_allclose(losses.start_and_floor(labels, num_views), (start_value, floor))
collapse_taus = np.array([1.0, 0.5, 0.1, 0.05])
collapsed_values = [float(losses.supcon_loss(labels, orthogonal, temperature=tau)) for tau in collapse_taus]
num_negatives = num_anchors - 1 - num_positives
closed_form = np.mean(np.log(num_positives[:, None] + num_negatives[:, None] * np.exp(-1 / collapse_taus)), 0)
np.testing.assert_allclose(collapsed_values, closed_form, rtol=1e-5, atol=1e-6)
assert np.all(np.diff(collapsed_values[:3]) < 0) and abs(collapsed_values[-1] - floor) < 1e-5
assert floor < library["in"] <= library["out"] < start_value  # our noisy batch lies in between
print(f"A = {num_anchors}: start {start_value:.4f}, floor {floor:.4f}, our batch {library['out']:.4f}."
      f"\nRandom, A = 512: {random_value:.4f} > log 511 = {np.log(511):.4f}. Worst anchor, A = 16, 64, 256, "
      f"1024: below log(A - 1) + 2/tau by {np.round(worst_gaps, 5)}")

# %% [markdown]
# ## 6 · Low temperatures: the value grows like 1/τ
# With $c_{ia} = z_i \cdot z_a$, the log-sum-exp of $c_{ia}/\tau$ lies between its largest entry
# and that plus $\log(A-1)$. So, with $m_i = \max_{a \in A(i)} c_{ia} - \frac{1}{|P(i)|}\sum_{p
# \in P(i)} c_{ip}$, $\;m_i \le \tau\,\mathcal{L}_{\text{out},i} \le m_i + \tau \log(A-1)$. In npairs
# the repulsion lies between 0 and $\log B$, so with $m^{\text{np}}_i = \frac{1}{n_i}\sum_{j:\, y_j
# = y_i} (1 - c_{ij})$, $\;m^{\text{np}}_i \le \tau\,\mathcal{L}_{\text{npairs},i} \le m^{\text{np}}_i
# + \tau \log B$. Both losses grow like $1/\tau$ unless the embedding is collapsed, with different
# slopes: SupCon's is the gap between the anchor's nearest sample and its average positive,
# npairs' the mean distance to its class. We check both sandwiches with the library (one view per
# image, $\tau$ from 0.05 to 0.001) from our noisy batch to collapse, where the slopes are 0.

# %%
def low_temperature_slopes(labels, z):
    """Mean of SupCon's m_i (anchors with a positive) and of npairs' slope, for unit vectors z (B, D)."""
    cosines = z @ z.T
    np.fill_diagonal(cosines, -np.inf)  # A(i)
    positives = (labels[:, None] == labels) & np.isfinite(cosines)
    rows = positives.any(axis=1)
    mean_positive = np.sum(np.where(positives, cosines, 0.0), axis=1)[rows] / positives.sum(axis=1)[rows]
    return np.mean(cosines.max(axis=1)[rows] - mean_positive), np.mean(npairs_parts(labels, z, 1.0)[0])


low_temperatures = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
embeddings = {"noisy batch": z_single, "random": paths[0], "nearly collapsed": paths[16],  # collapse 0.8
              "collapsed": paths[-1]}
scaled = {}  # tau * loss: (SupCon, npairs) per temperature
for name, z_case in embeddings.items():
    supcon_slope, npairs_slope = low_temperature_slopes(labels, z_case)
    scaled[name] = np.array([[tau * float(loss(labels, z_case.astype("float32"), temperature=tau))
                              for loss in (losses.supcon_loss, losses.npairs_loss)]
                             for tau in low_temperatures])
    for (supcon_scaled, npairs_scaled), tau in zip(scaled[name], low_temperatures):
        assert supcon_slope - 1e-5 <= supcon_scaled <= supcon_slope + tau * np.log(len(labels) - 1) + 1e-5
        assert npairs_slope - 1e-5 <= npairs_scaled <= npairs_slope + tau * np.log(len(labels)) + 1e-5
    if name != "collapsed":
        assert min(supcon_slope, npairs_slope) > 1e-3 and not np.isclose(supcon_slope, npairs_slope, rtol=0.1)
    else:
        assert supcon_slope == 0 and npairs_slope < 1e-12
    print(f"{name:16s}: slope of tau * L, SupCon {supcon_slope:.4f}, npairs {npairs_slope:.4f}")
noisy_supcon = scaled["noisy batch"][:, 0] / low_temperatures
assert noisy_supcon[-1] > 20 * noisy_supcon[0]  # SupCon's value does blow up as tau falls
np.testing.assert_allclose(scaled["collapsed"][:, 1] / low_temperatures, entropy_floor, rtol=1e-4)

# %% [markdown]
# ## 7 · Temperature and the gradient: who gets pushed
# The encoder outputs an unnormalised projection $v_i$; the loss sees $z_i = v_i / \lVert v_i \rVert$.
# With the softmax shares $P_{ia} = \exp(s_{ia}) / \sum_{a' \in A(i)} \exp(s_{ia'})$ and the weights
# $w_{ia} = P_{ia} - [a \in P(i)]/|P(i)|$, differentiate one anchor's term, the others held fixed,
# then go through the normalisation's Jacobian $(I - z_i z_i^\top)/\lVert v_i \rVert$:
#
# $$\frac{\partial \mathcal{L}_{\text{out},i}}{\partial z_i} = \frac{1}{\tau} \sum_{a \in A(i)} w_{ia}\, z_a,
# \qquad
# \frac{\partial \mathcal{L}_{\text{out},i}}{\partial v_i} = \frac{1}{\tau \lVert v_i \rVert}
#   \sum_{a \in A(i)} w_{ia} \big(z_a - (z_i \cdot z_a)\, z_i\big).$$
#
# A step pulls the anchor towards each positive with weight $1/|P(i)| - P_{ip}$ and pushes it from
# each negative with weight $P_{in}$, each times $\sqrt{1 - c_{ia}^2}$, the length of $z_a$'s part
# orthogonal to $z_i$: a sample already on the anchor contributes nothing. Hence the paper's point
# (Khosla et al. 2020, Sec. 3.2.3) that easy samples carry little gradient and hard ones most. We
# check the formula by central finite differences on one anchor of a larger batch (64 images of 10
# classes, two views, 32 dimensions), then split its push over the negatives at four temperatures.

# %%
big_labels = np.repeat(np.arange(10), 7)[:64]
big_features = noisy_views(big_labels, dim=32, noise_scale=1.0)
big_row_labels = np.repeat(big_labels, 2)
z_big = unit_rows(big_features)
big_terms = supcon_terms_numpy(big_row_labels, z_big, temperature)
np.testing.assert_allclose(np.nanmean(big_terms), float(losses.supcon_loss(
    big_labels, big_features.astype("float32"), temperature=temperature)), rtol=1e-5)
anchor = 0
anchor_vector = big_features.reshape(-1, 32)[anchor]  # v_i, unnormalised
is_positive = np.delete(big_row_labels, anchor) == big_row_labels[anchor]
others = np.delete(z_big, anchor, axis=0)  # A(i): positives where is_positive, negatives elsewhere
cosines = others @ z_big[anchor]


def anchor_loss(vector, tau):
    logits = others @ (vector / np.linalg.norm(vector)) / tau
    return np.log(np.sum(np.exp(logits))) - np.mean(logits[is_positive])


def softmax_shares(tau):
    shares = np.exp((cosines - cosines.max()) / tau)
    return shares / shares.sum()


def gradient_wrt_v(vector, tau):
    weights = softmax_shares(tau) - np.where(is_positive, 1.0 / is_positive.sum(), 0.0)  # w_ia
    norm = np.linalg.norm(vector)
    return weights @ (others - np.outer(cosines, vector / norm)) / (tau * norm)


step = 1e-6
finite_difference = np.array([anchor_loss(anchor_vector + step * e, temperature)
                              - anchor_loss(anchor_vector - step * e, temperature)
                              for e in np.eye(32)]) / (2 * step)
gradient = gradient_wrt_v(anchor_vector, temperature)
np.testing.assert_allclose(anchor_loss(anchor_vector, temperature), big_terms[anchor])
np.testing.assert_allclose(gradient, finite_difference, rtol=1e-6, atol=1e-9)
assert abs(gradient @ anchor_vector) < 1e-12  # the loss ignores |v_i|

temperatures = (0.05, 0.1, 0.5, 1.0)
negative_order = np.argsort(-cosines[~is_positive])  # hardest (most similar) first
closest = np.argmax(np.where(is_positive, cosines, -2))  # the closest and the farthest positive
farthest = np.argmin(np.where(is_positive, cosines, 2))
negative_push, hardest_share, pulls = {}, [], {}  # push P_in sqrt(1 - c^2) / tau, without 1 / |v_i|
for tau in temperatures:
    negative_push[tau] = (softmax_shares(tau) * np.sqrt(1.0 - cosines**2) / tau)[~is_positive]
    hardest_share.append(negative_push[tau][negative_order[:5]].sum() / negative_push[tau].sum())
    pulls[tau] = (1.0 / is_positive.sum() - softmax_shares(tau)) / tau  # towards positives; < 0: pushed away
assert all(colder > warmer for colder, warmer in zip(hardest_share, hardest_share[1:]))
assert negative_push[0.05].min() < 1e-3 * negative_push[1.0].min()
assert all(pulls[tau][farthest] > pulls[tau][closest] for tau in temperatures) and pulls[0.05][closest] < 0
print(f"|P(i)| = {is_positive.sum()}, |N(i)| = {(~is_positive).sum()}; gradient matches finite differences "
      f"to {np.max(np.abs(gradient - finite_difference)):.0e}; pull at tau = 0.05 on the farthest positive "
      f"{pulls[0.05][farthest]:+.2f}, on the closest {pulls[0.05][closest]:+.2f}")

fig, ax = plt.subplots(figsize=(7, 4))
for tau in temperatures:
    push = negative_push[tau][negative_order] / negative_push[tau].sum()
    ax.plot(np.arange(1, len(push) + 1), np.cumsum(push), label=f"tau = {tau}")
ax.set(xscale="log", xlabel="negatives ranked from hardest (1) to easiest",
       ylabel="cumulative share of the push",
       title=f"One anchor, {(~is_positive).sum()} negatives: a low temperature pushes mostly on the hardest")
ax.legend(title="temperature")
if PROFILE == "cpu":
    viz.save_fig(fig, "03_temperature_weights")

# %% [markdown]
# As $\tau$ falls from 1.0 to 0.05 the five hardest negatives take a growing share of the push and
# the easiest negative's falls by over three orders of magnitude (asserted): two negatives' shares
# are in the ratio $e^{(c_{ia} - c_{ib})/\tau}$, so a low temperature mines hard negatives by itself.
# The farthest positive is pulled harder than the closest, which at $\tau = 0.05$ holds more than
# its $1/|P(i)|$ share and is pushed *away* (asserted). The paper uses $\tau = 0.1$ and reports that
# very low temperatures are harder to train, which it attributes to numerical stability; that they
# also bet the push on a few negatives, possibly mislabelled ones, is our reading, not the paper's.
#
# ## 8 · Numerics: why the row maximum is subtracted
# At $\tau = 0.05$ logits reach $1/\tau = 20$ (npairs' diagonal, or a positive close to its anchor),
# and $e^{20}$ is far beyond float16's largest finite number: a naive float16 softmax of our logit
# matrix, diagonal included as in npairs, overflows in every row to `inf / inf = nan`. Subtracting
# each row's maximum first makes every exponent $\le 0$ and leaves the softmax unchanged (the factor
# $e^{-\max}$ cancels). `supcon_lib` does that in float32 whatever the input dtype, so float16
# features give the float32 loss of the same numbers.

# %%
logits16 = (z.astype(np.float16) @ z.astype(np.float16).T) / np.float16(npairs_temperature)
with np.errstate(over="ignore", invalid="ignore"):
    naive16 = np.exp(logits16) / np.sum(np.exp(logits16), axis=1, keepdims=True)
shifted16 = np.exp(logits16 - logits16.max(axis=1, keepdims=True))
stable16 = shifted16 / shifted16.sum(axis=1, keepdims=True)
features16 = features.astype(np.float16)
value16 = float(losses.supcon_loss(labels, features16, temperature=npairs_temperature))
value32 = float(losses.supcon_loss(labels, features16.astype(np.float32), temperature=npairs_temperature))
print(f"float16 max {np.finfo(np.float16).max:.0f} < exp(20) = {np.exp(20.0):.3e}; naive softmax: "
      f"{np.sum(np.any(np.isnan(naive16), axis=1))} of {len(naive16)} rows hold nan; loss {value16:.6f}")
assert np.exp(20.0) > np.finfo(np.float16).max and np.all(np.isnan(np.diag(naive16)))
assert np.all(np.isfinite(stable16)) and np.allclose(stable16.sum(axis=1), 1, atol=1e-2)
assert np.isfinite(value16) and value16 == value32

# %% [markdown]
# ## Summary
# In this notebook we read softmax cross-entropy as "pick the right class among C" and turned it
# into NT-Xent and SupCon's $\mathcal{L}_{\text{out}} \ge \mathcal{L}_{\text{in}}$, each in NumPy and
# checked against `supcon_lib.losses`. The original npairs loss is alignment plus a repulsion that
# repels positives too; its kept diagonal takes almost all of a row's softmax on noisy embeddings
# and $1/n_i$ at collapse. SupCon starts at $\log(A-1)$ when all cosines are equal, stays below
# $\log(A-1) + 2/\tau$, and has the floor mean $\log|P(i)|$, reached by class collapse as
# $\tau \to 0$. Both losses grow like $1/\tau$ at low temperature, with different slopes; the
# temperature decides how much gradient the hardest negatives get, and the normalisation silences
# samples already on the anchor. Float16 logits overflow unless the row maximum is subtracted.
#
# ## Exercises
# 1. Random unit vectors in $D$ dimensions have cosines of mean 0 and variance about $1/D$. Show
#    that then $\mathcal{L}_{\text{out}} \approx \log(A-1) + 1/(2\tau^2 D)$ (hint: $\mathbb{E}[e^{s}]
#    = e^{\sigma^2/2}$ for a normal $s$) and check it with `losses.supcon_loss` on 256 random images,
#    two views, ten classes, for $D$ from 128 to 8192 at $\tau = 0.1$ and $0.5$.
# 2. Derive the gradient of $\mathcal{L}_{\text{in},i}$ with respect to $z_i$: the pull towards $p$
#    is weighted by $\exp(s_{ip}) / \sum_{p'} \exp(s_{ip'}) - P_{ip}$. For the anchor of section 7 at
#    $\tau = 0.05$, which positives does $\mathcal{L}_{\text{in}}$ pull hardest, and why might that hurt?
# 3. Repeat the float16 experiment of section 8 at $\tau = 0.1$, without the diagonal (SupCon's
#    rows). Do the naive rows still overflow? Above which cosine does a positive overflow?
# 4. Show that the worst anchor of section 5 costs $2/\tau + \log(A - 2 + e^{-2/\tau})$, less than
#    $1/(A-2)$ below $\log(A-1) + 2/\tau$ (hint: $\log(1 + x) < x$).
# 5. Show that $\mathcal{L}_{\text{in},i} \ge \log|P(i)|$ too (hint: the positives' shares sum to at most 1).
# 6. For 256 images, two views and ten balanced classes, what are $\log(A-1)$, the ceiling at
#    $\tau = 0.1$ and the floor? Check them with `losses.start_and_floor` and `losses.supcon_loss`.
#
# **Next:** [04 · The cross-entropy baseline](04_cross_entropy_baseline.ipynb)
