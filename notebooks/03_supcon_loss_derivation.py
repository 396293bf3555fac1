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
REPOSITORY = "supcon-teaching/supcon"  # the one repository address (supcon_lib.paths.REPOSITORY)
if IS_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+https://github.com/{REPOSITORY}"], check=True)

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
# A classifier scores an image with one logit $\ell_c$ per class; the softmax turns the logits
# into probabilities and the cross-entropy charges the log-probability of the true class $y$:
#
# $$\mathcal{L}_{\text{CE}} = -\log \frac{\exp(\ell_y)}{\sum_{c=1}^{C} \exp(\ell_c)}
#   = -\ell_y + \log \sum_{c=1}^{C} \exp(\ell_c).$$
#
# Read it as a multiple-choice question with $C$ answers. Two facts we will reuse: equal logits
# (a uniform guess) cost exactly $\log C$, and the loss only reaches 0 when the right logit beats
# all others by an infinite margin.

# %%
def softmax_cross_entropy(logits, target):
    """-log softmax(logits)[target], for one row of logits."""
    logits = np.asarray(logits, np.float64)
    return -logits[target] + np.log(np.sum(np.exp(logits)))


num_classes = 10
uniform_guess = softmax_cross_entropy(np.zeros(num_classes), target=3)
margin_five = softmax_cross_entropy(np.eye(num_classes)[3] * 5, target=3)
print(f"equal logits: {uniform_guess:.4f} = log {num_classes} = {np.log(num_classes):.4f}")
print(f"right logit 5 above the others: {margin_five:.4f}")
assert np.isclose(uniform_guess, np.log(num_classes)) and 0 < margin_five < uniform_guess

# %% [markdown]
# ## 2 · NT-Xent: pick the other view among the 2N - 1 others
# SimCLR (Chen et al. 2020) asks the same question without any class labels. A batch holds $N$
# images, each seen in two augmented views, embedded and L2-normalised to unit vectors $z$:
# $2N$ rows. For an anchor $i$ the "classes" are the $2N-1$ *other* views, their logits are the
# similarities $s_{ia} = z_i \cdot z_a / \tau$ at temperature $\tau$, and the right answer is
# $j(i)$, the other view of the same image:
#
# $$\ell_i = -\log \frac{\exp(z_i \cdot z_{j(i)} / \tau)}{\sum_{a \ne i} \exp(z_i \cdot z_a / \tau)},
#   \qquad \mathcal{L}_{\text{NT-Xent}} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i .$$
#
# It *is* softmax cross-entropy, with $C = 2N - 1$ classes that change with every batch and whose
# "class weights" are the other samples' embeddings. The code says exactly that: it calls
# `softmax_cross_entropy` once per anchor.
#
# Our batch: 8 images of 4 classes (class 3 has a single image), two views each, 16 dimensions.
# Each view is its class's random prototype plus noise, so that views of a class are similar but
# not identical.

# %%
def unit_rows(features):
    """(B, V, D) or (B, D) features -> (B * V, D) unit vectors, image-major (row b * V + v)."""
    flat = np.asarray(features, np.float64).reshape(-1, np.shape(features)[-1])
    return flat / np.linalg.norm(flat, axis=1, keepdims=True)


def ntxent_numpy(z, temperature):
    """NT-Xent of unit vectors z (2N, D) whose rows 2k and 2k + 1 are the two views of image k."""
    total = 0.0
    for i in range(len(z)):
        other_view = i + 1 if i % 2 == 0 else i - 1
        candidates = [a for a in range(len(z)) if a != i]  # the 2N - 1 possible answers
        logits = z[candidates] @ z[i] / temperature
        total += softmax_cross_entropy(logits, target=candidates.index(other_view))
    return total / len(z)


rng = np.random.default_rng(0)
labels = np.array([0, 0, 0, 1, 1, 2, 2, 3])
num_views, embedding_dim, temperature = 2, 16, 0.1
prototypes = rng.normal(size=(4, embedding_dim))
noise = rng.normal(size=(len(labels), num_views, embedding_dim))
features = (prototypes[labels][:, None, :] + 0.8 * noise).astype("float32")  # (B, V, D)
z = unit_rows(features)
num_anchors = len(z)

ntxent_inline = ntxent_numpy(z, temperature)
ntxent_library = float(losses.supcon_loss(None, features, temperature=temperature))
print(f"{num_anchors} anchors, temperature {temperature}")
print(f"NT-Xent: inline NumPy {ntxent_inline:.6f}, supcon_loss(None, features) {ntxent_library:.6f}")
np.testing.assert_allclose(ntxent_inline, ntxent_library, rtol=1e-5)

# %% [markdown]
# ## 3 · SupCon: every sample of the class is a right answer
# With labels, an anchor has more than one right answer: every other view of every image of its
# class. Write $A(i)$ for all anchors except $i$, $P(i) \subset A(i)$ for those with $i$'s label
# (its positives), and $N(i) = A(i) \setminus P(i)$ for its negatives. The paper (Khosla et al.
# 2020, eq. 2 and 3) puts the average over the positives either outside or inside the log:
#
# $$\mathcal{L}^{\text{sup}}_{\text{out}} = \sum_i \frac{-1}{|P(i)|} \sum_{p \in P(i)}
#   \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)},
# \qquad
# \mathcal{L}^{\text{sup}}_{\text{in}} = \sum_i -\log \Bigg\{ \frac{1}{|P(i)|} \sum_{p \in P(i)}
#   \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)} \Bigg\}.$$
#
# The paper sums over anchors; `supcon_lib` (and the code below) takes the *mean* over the anchors
# that have at least one positive, so that the value does not grow with the batch. When the
# "labels" are the image indices, $P(i) = \{j(i)\}$ and both formulations are NT-Xent (checked
# below). $-\log$ is convex, so by Jensen's inequality $\mathcal{L}_{\text{out},i} \ge
# \mathcal{L}_{\text{in},i}$ anchor by anchor, with equality when an anchor has a single positive
# (class 3 here).

# %%
def supcon_terms_numpy(row_labels, z, temperature, formulation="out"):
    """Per-anchor terms of paper eq. 2 ("out") or 3 ("in"); NaN for an anchor without positives."""
    logits = z @ z.T / temperature  # s_ia
    terms = np.full(len(z), np.nan)
    for i in range(len(z)):
        contrast = np.arange(len(z)) != i  # A(i)
        positives = contrast & (row_labels == row_labels[i])  # P(i)
        if not positives.any():
            continue
        log_denominator = np.log(np.sum(np.exp(logits[i, contrast])))
        log_shares = logits[i, positives] - log_denominator  # log softmax share of each positive
        terms[i] = -np.mean(log_shares) if formulation == "out" else -np.log(np.mean(np.exp(log_shares)))
    return terms


row_labels = np.repeat(labels, num_views)  # one label per view, image-major like z
terms, library = {}, {}
for formulation in ("out", "in"):
    terms[formulation] = supcon_terms_numpy(row_labels, z, temperature, formulation)
    library[formulation] = float(losses.supcon_loss(labels, features, temperature=temperature,
                                                    formulation=formulation))
    print(f"L_{formulation:3s} inline {np.nanmean(terms[formulation]):.6f}   supcon_lib {library[formulation]:.6f}")
    np.testing.assert_allclose(np.nanmean(terms[formulation]), library[formulation], rtol=1e-5)

image_ids = np.repeat(np.arange(len(labels)), num_views)
np.testing.assert_allclose(np.nanmean(supcon_terms_numpy(image_ids, z, temperature)), ntxent_inline)
num_positives = np.array([np.sum(row_labels == row_labels[i]) - 1 for i in range(num_anchors)])
print("|P(i)|       ", num_positives)
print("L_out - L_in ", np.round(terms["out"] - terms["in"], 4) + 0.0)  # + 0.0 turns -0.0 into 0.0
assert np.all(terms["in"] <= terms["out"] + 1e-12) and library["in"] <= library["out"]
np.testing.assert_allclose(terms["out"][num_positives == 1], terms["in"][num_positives == 1])

# %% [markdown]
# The paper recommends $\mathcal{L}_{\text{out}}$ (its Table 1 compares the two on ImageNet).
# Inside the log the sum over positives is dominated by the *closest* positive, so
# $\mathcal{L}_{\text{in}}$ is nearly satisfied once one positive is close, while
# $\mathcal{L}_{\text{out}}$ charges every positive separately (exercise 2).
#
# ## 4 · The original example's npairs loss, diagonal kept
# The 2020 keras-io example embedded *one* view per image, built the full $B \times B$ matrix
# $s_{ij} = z_i \cdot z_j / \tau$ at $\tau = 0.05$, and passed it to tensorflow-addons'
# `npairs_loss`: a softmax over *all* $B$ columns, the anchor's own included, against targets
# spread evenly over its class, itself included:
#
# $$\mathcal{L}_{\text{npairs}} = \frac{1}{B} \sum_{i=1}^{B} -\sum_{j=1}^{B} t_{ij}
#   \log \frac{\exp(s_{ij})}{\sum_{k=1}^{B} \exp(s_{ik})},
# \qquad t_{ij} = \frac{[y_i = y_j]}{n_i}, \quad n_i = \#\{k : y_k = y_i\} .$$
#
# The diagonal logit $s_{ii} = 1/\tau$ is the largest any entry can be, and no encoder can change
# it. Dropping the diagonal from targets and softmax (and the rows then left without a target)
# gives exactly SupCon's $\mathcal{L}_{\text{out}}$ with one view. The inline version below has a
# switch for the diagonal and is checked against `losses.npairs_loss` and `losses.supcon_loss`
# on the first view of our batch.

# %%
def npairs_numpy(labels, z, temperature, keep_diagonal=True):
    """The original example's loss on unit vectors z (B, D), one view per image."""
    logits = z @ z.T / temperature
    targets = (labels[:, None] == labels[None, :]).astype(np.float64)
    if not keep_diagonal:
        np.fill_diagonal(logits, -np.inf)  # exp(-inf) = 0: gone from the softmax
        np.fill_diagonal(targets, 0.0)
    rows = targets.sum(axis=1) > 0  # with the diagonal kept, every row
    targets = targets[rows] / targets[rows].sum(axis=1, keepdims=True)
    log_softmax = logits[rows] - np.log(np.sum(np.exp(logits[rows]), axis=1, keepdims=True))
    log_softmax = np.where(targets > 0, log_softmax, 0.0)  # -inf on a dropped diagonal, where t = 0
    return -np.mean(np.sum(targets * log_softmax, axis=1))


npairs_temperature = 0.05  # the original example's
single_view = features[:, 0, :]  # (B, D): view 0 of each image
z_single = unit_rows(single_view)
npairs_kept = npairs_numpy(labels, z_single, npairs_temperature)
npairs_dropped = npairs_numpy(labels, z_single, npairs_temperature, keep_diagonal=False)
npairs_library = float(losses.npairs_loss(labels, single_view, temperature=npairs_temperature))
supcon_single = float(losses.supcon_loss(labels, single_view, temperature=npairs_temperature))
print(f"npairs, diagonal kept:    inline {npairs_kept:.5f}   losses.npairs_loss {npairs_library:.5f}")
print(f"npairs, diagonal dropped: inline {npairs_dropped:.5f}   losses.supcon_loss {supcon_single:.5f}")
np.testing.assert_allclose(npairs_kept, npairs_library, rtol=1e-5)
np.testing.assert_allclose(npairs_dropped, supcon_single, rtol=1e-5)

# %% [markdown]
# Since $s_{ii} = 1/\tau$, a row's log-sum-exp is $1/\tau - \log \mathrm{softmax}_{ii}$, and each
# row's loss splits into two parts:
#
# $$-\sum_j t_{ij} \log \mathrm{softmax}_{ij}
#   = \underbrace{\frac{1}{n_i} \sum_{j:\, y_j = y_i} \frac{1 - z_i \cdot z_j}{\tau}}_{\text{alignment}}
#   \; + \; \underbrace{\log\Big(1 + \sum_{k \ne i} e^{(z_i \cdot z_k - 1)/\tau}\Big)}_{\text{repulsion} \,=\, -\log \mathrm{softmax}_{ii}} .$$
#
# The alignment part ($1 - z_i \cdot z_j = \lVert z_i - z_j \rVert^2 / 2$) never looks at a
# negative; the repulsion part pushes $z_i$ away from *every* other sample, its positives
# included. The targets put $1/n_i$ of each row on the diagonal.

# %%
def npairs_parts(labels, z, temperature):
    """Per row: alignment, repulsion and the softmax's share on the diagonal."""
    cosines = z @ z.T
    same_class = labels[:, None] == labels[None, :]
    alignment = np.sum(np.where(same_class, 1.0 - cosines, 0.0), axis=1) / same_class.sum(axis=1) / temperature
    repulsion = np.log(np.sum(np.exp((cosines - 1.0) / temperature), axis=1))  # k = i gives the 1
    return alignment, repulsion, np.exp(-repulsion)


class_size = np.sum(labels[:, None] == labels[None, :], axis=1)  # n_i
alignment, repulsion, diagonal_share = npairs_parts(labels, z_single, npairs_temperature)
np.testing.assert_allclose(np.mean(alignment + repulsion), npairs_library, rtol=1e-5)
print(f"this batch: alignment {alignment.mean():.3f} + repulsion {repulsion.mean():.4f} = npairs {npairs_library:.3f}; "
      f"softmax share on the diagonal {diagonal_share.min():.4f} to {diagonal_share.max():.4f}")
assert abs(alignment[labels == 3][0]) < 1e-12  # the single image of class 3: its row is repulsion alone
assert np.all(diagonal_share > 0.99) and repulsion.mean() < 0.01 * alignment.mean()  # this batch only

# %% [markdown]
# On *this* noisy batch the diagonal holds more than 99% of every row's softmax (asserted). That
# is a property of the batch, not of the loss: the share is $e^{1/\tau} / \sum_k e^{s_{ik}}$ and
# falls as the class's other members move towards $z_i$. When a class has collapsed to one
# point, its $n_i$ members all have logit $1/\tau$ and share the row evenly: the diagonal holds
# $1/n_i$, exactly what the targets ask for, so the row's loss is the targets' entropy
# $\log n_i$, npairs' minimum (cross-entropy is never below the entropy of its target). Below,
# the embeddings move from random unit vectors ($\lambda = 0$) to collapsed classes
# ($\lambda = 1$, the classes orthogonal).

# %%
def collapse_path(labels, collapse, seed=1, dim=embedding_dim):
    """(B, D) unit vectors: (1 - collapse) * random + collapse * one-hot prototype of the class."""
    random_part = unit_rows(np.random.default_rng(seed).normal(size=(len(labels), dim)))
    return unit_rows((1.0 - collapse) * random_part + collapse * np.eye(dim)[labels])


collapse_grid = np.linspace(0.0, 1.0, 21)
shares = np.array([npairs_parts(labels, collapse_path(labels, c), npairs_temperature)[2] for c in collapse_grid])
npairs_path = [float(losses.npairs_loss(labels, collapse_path(labels, c).astype("float32"),
                                        temperature=npairs_temperature)) for c in collapse_grid]
entropy_floor = np.mean(np.log(class_size))
print(f"diagonal share, random (lambda = 0):    {np.round(shares[0], 4)}")
print(f"diagonal share, collapsed (lambda = 1): {np.round(shares[-1], 4)}; 1/n_i = {np.round(1 / class_size, 4)}")
print(f"npairs at collapse {npairs_path[-1]:.6f}, its minimum mean log n_i = {entropy_floor:.6f}")
np.testing.assert_allclose(shares[-1], 1.0 / class_size, rtol=1e-6)
np.testing.assert_allclose(npairs_path[-1], entropy_floor, rtol=1e-5)
assert min(npairs_path) >= entropy_floor - 1e-6 and np.all(shares[0] > 0.99)

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
for size, color in zip(sorted(set(class_size)), ("C0", "C1", "C2")):
    rows = class_size == size
    ax.plot(collapse_grid, shares[:, rows].mean(axis=1), color=color, marker="o", ms=3,
            label=f"rows with n_i = {size} (mean)")
    ax.axhline(1 / size, color=color, linestyle="--", linewidth=1, label=f"1 / n_i = {1 / size:.2f}")
ax.set_xlabel("collapse: 0 = random unit vectors, 1 = every class on one point")
ax.set_ylabel("softmax share on the diagonal")
ax.set_title(f"npairs (tau = {npairs_temperature}): the diagonal's share depends on the batch")
ax.legend(fontsize=8, ncol=2)
if PROFILE == "cpu":
    viz.save_fig(fig, "03_npairs_diagonal")

# %% [markdown]
# So the kept diagonal's share of the softmax goes from almost 1 (random or noisy embeddings) to
# $1/n_i$ at collapse, npairs' optimum. In general, the alignment part pulls positives together at
# rate $1/\tau$ whether or not a negative is near, and a single image of its class (image 7)
# still has a target, itself: its row is the repulsion alone, and it counts in the mean, where
# SupCon leaves it out.
#
# ## 5 · Where the loss starts, how high it can go, and its floor
# **Start.** Suppose all cosines are equal, $z_i \cdot z_a = c$ for every pair (all embeddings
# identical, $c = 1$, or a regular simplex, $c = -1/(A-1)$). Then every $s_{ia} = c/\tau$, every
# softmax share is $1/|A(i)| = 1/(A - 1)$ with $A$ the number of anchors, and
#
# $$\mathcal{L}_{\text{out},i} = -\frac{1}{|P(i)|}\sum_{p \in P(i)} \log\frac{1}{A-1} = \log(A-1)
#   = \mathcal{L}_{\text{in},i},$$
#
# for every temperature and every labelling: the loss of an encoder that tells nothing apart.

# %%
collapsed_to_one = np.ones_like(features)  # every view the same vector: c = 1
simplex = np.eye(num_anchors) - 1.0 / num_anchors  # A centred one-hot vectors: c = -1/(A - 1)
simplex = simplex.reshape(len(labels), num_views, num_anchors).astype("float32")
start_value = np.log(num_anchors - 1)
start_values = [float(losses.supcon_loss(labels, batch, temperature=tau, formulation=formulation))
                for batch in (collapsed_to_one, simplex) for tau in (0.05, 0.1, 1.0) for formulation in ("out", "in")]
print(f"A = {num_anchors}: log(A - 1) = {start_value:.4f}; identical and simplex, L_out and L_in at tau 0.05, 0.1, 1: "
      f"{min(start_values):.4f} to {max(start_values):.4f}")
np.testing.assert_allclose(start_values, start_value, rtol=1e-5)

# %% [markdown]
# **Not a ceiling.** $\log(A-1)$ is where an encoder that tells nothing apart sits, not an upper
# bound. Random embeddings already start above it (exercise 1 works out by how much), and one
# anchor's term can go much higher: the log-sum-exp is at most $\log(A-1) + 1/\tau$ and the
# positives' mean logit at least $-1/\tau$, so
# $\mathcal{L}_{\text{out},i} \le \log(A-1) + 2/\tau$. The worst case puts the anchor's one
# positive opposite it and every negative on it:
# $\mathcal{L}_{\text{out},i} = 2/\tau + \log(A - 2 + e^{-2/\tau})$, which approaches the bound
# as the batch grows.

# %%
random_labels = rng.integers(0, 10, size=256)
random_features = rng.normal(size=(256, 2, 128)).astype("float32")  # 256 images, 2 views, D = 128
random_value = float(losses.supcon_loss(random_labels, random_features, temperature=temperature))
print(f"random embeddings, A = 512, tau = {temperature}: L_out {random_value:.4f} > log(A - 1) {np.log(511):.4f}")
assert random_value > np.log(511) + 0.1

worst_gaps = []
for batch_size in (16, 64, 256, 1024):
    worst = np.tile([1.0, 0.0], (batch_size, 1))  # every row e_1, the negatives on the anchor ...
    worst[1] = -worst[1]  # ... and the anchor's single positive opposite it
    worst_labels = np.array([0, 0] + [1] * (batch_size - 2))
    worst_terms = supcon_terms_numpy(worst_labels, worst, temperature)
    np.testing.assert_allclose(np.nanmean(worst_terms), float(losses.supcon_loss(
        worst_labels, worst.astype("float32"), temperature=temperature)), rtol=1e-5)
    worst_gaps.append(np.log(batch_size - 1) + 2 / temperature - worst_terms[0])
    assert 0 < worst_gaps[-1] < 1 / (batch_size - 2)
print(f"worst anchor, tau = {temperature}, A = 16, 64, 256, 1024: below log(A - 1) + 2/tau by", np.round(worst_gaps, 5))
assert all(later < earlier for earlier, later in zip(worst_gaps, worst_gaps[1:]))

# %% [markdown]
# **Floor.** For any embeddings and any temperature, drop the negatives from the denominator
# (it only gets smaller) and use that the log of a mean of exponentials is at least the mean of
# the exponents (Jensen again):
#
# $$\mathcal{L}_{\text{out},i} = \log \sum_{a \in A(i)} e^{s_{ia}} - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}
#   \;\ge\; \log \sum_{p \in P(i)} e^{s_{ip}} - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip} \;\ge\; \log |P(i)| .$$
#
# The floor is not 0: with $|P(i)|$ right answers the softmax can at best split its mass evenly
# among them. It is approached by **class collapse**: all views of a class on one point, classes
# far apart. With the classes orthogonal (cosine 1 to the positives, 0 to the negatives):
#
# $$\mathcal{L}_{\text{out},i} = \log\big(|P(i)| + |N(i)|\,e^{-1/\tau}\big) \xrightarrow[\tau \to 0]{} \log |P(i)| .$$

# %%
orthogonal = np.broadcast_to(np.eye(4, embedding_dim)[labels][:, None, :], features.shape).astype("float32")
num_negatives = num_anchors - 1 - num_positives
floor = np.mean(np.log(num_positives))
print(f"|P(i)| per anchor: {num_positives}; floor, the mean of log|P(i)|: {floor:.6f}")
collapse_taus = np.array([1.0, 0.5, 0.1, 0.05])
collapsed_values = np.array([float(losses.supcon_loss(labels, orthogonal, temperature=t)) for t in collapse_taus])
closed_form = np.mean(np.log(num_positives[:, None] + num_negatives[:, None] * np.exp(-1 / collapse_taus)), axis=0)
print(f"collapsed, orthogonal classes, tau {collapse_taus}: above the floor by",
      ", ".join(f"{gap:.1e}" for gap in collapsed_values - floor))
np.testing.assert_allclose(collapsed_values, closed_form, rtol=1e-5, atol=1e-6)
assert np.all(np.diff(collapsed_values[:3]) < 0) and abs(collapsed_values[-1] - floor) < 1e-5
assert floor < library["in"] <= library["out"] < start_value  # our noisy batch, in between

# %% [markdown]
# At $\tau = 0.05$ the remaining gap, $|N(i)|\,e^{-20}/|P(i)|$ per anchor, is below float32's
# resolution, and the printed difference is rounding. (The same floor holds for
# $\mathcal{L}_{\text{in}}$: its denominator also contains the positives' sum.) A training curve
# that dips *below* the floor of its batch composition has a bug; notebook 02 measured how close
# the prototypes of a ReLU head and of a linear head can get to it.

# %% [markdown]
# ## 6 · Low temperatures: the value grows like 1/τ
# Multiply an anchor's term by $\tau$. The log-sum-exp of $c_{ia}/\tau$ (with $c_{ia} = z_i \cdot z_a$)
# lies between its largest entry and that plus $\log(A-1)$, so with
# $m_i = \max_{a \in A(i)} c_{ia} - \frac{1}{|P(i)|}\sum_{p \in P(i)} c_{ip}$:
#
# $$m_i \;\le\; \tau\,\mathcal{L}_{\text{out},i} \;\le\; m_i + \tau \log(A-1).$$
#
# In npairs the repulsion part lies between 0 and $\log B$, so with the alignment slope
# $m^{\text{np}}_i = \frac{1}{n_i}\sum_{j:\, y_j = y_i} (1 - c_{ij})$:
# $m^{\text{np}}_i \le \tau\,\mathcal{L}_{\text{npairs},i} \le m^{\text{np}}_i + \tau \log B$.
#
# Both losses therefore grow like $1/\tau$ for any embedding that is not collapsed, with different
# slopes: SupCon's $m_i$ is the gap between the anchor's nearest sample and its average positive
# (0 only when all positives tie for the nearest), npairs' $m^{\text{np}}_i$ the mean distance to
# its class, itself included (0 only at collapse). We check both sandwiches with the library on
# one view per image: the noisy batch, random vectors, nearly collapsed classes, and collapsed
# classes, where both slopes are 0 and the values settle at their floors.

# %%
def low_temperature_slopes(labels, z):
    """SupCon's mean m_i over anchors with a positive, and npairs' mean slope, for unit vectors z (B, D)."""
    cosines = z @ z.T
    same_class = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(z), dtype=bool)
    has_positive = (same_class & off_diagonal).any(axis=1)
    nearest = np.max(np.where(off_diagonal, cosines, -np.inf), axis=1)
    mean_positive = np.sum(np.where(same_class & off_diagonal, cosines, 0.0), axis=1) / np.maximum(
        np.sum(same_class & off_diagonal, axis=1), 1)
    supcon_slope = np.mean((nearest - mean_positive)[has_positive])
    npairs_slope = np.mean(np.sum(np.where(same_class, 1.0 - cosines, 0.0), axis=1) / same_class.sum(axis=1))
    return supcon_slope, npairs_slope


low_temperatures = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
embeddings = {"noisy batch": z_single, "random": collapse_path(labels, 0.0),
              "nearly collapsed": collapse_path(labels, 0.8), "collapsed": collapse_path(labels, 1.0)}
scaled = {}
for name, z_case in embeddings.items():
    supcon_slope, npairs_slope = low_temperature_slopes(labels, z_case)
    case = z_case.astype("float32")
    scaled[name] = np.array([(tau * float(losses.supcon_loss(labels, case, temperature=tau)),
                              tau * float(losses.npairs_loss(labels, case, temperature=tau)))
                             for tau in low_temperatures])
    for (supcon_scaled, npairs_scaled), tau in zip(scaled[name], low_temperatures):
        assert supcon_slope - 1e-5 <= supcon_scaled <= supcon_slope + tau * np.log(len(labels) - 1) + 1e-5
        assert npairs_slope - 1e-5 <= npairs_scaled <= npairs_slope + tau * np.log(len(labels)) + 1e-5
    print(f"{name:16s}: tau * L at tau = {low_temperatures[-1]}: SupCon {scaled[name][-1, 0]:.4f} "
          f"(slope {supcon_slope:.4f}), npairs {scaled[name][-1, 1]:.4f} (slope {npairs_slope:.4f})")
    if name != "collapsed":
        assert min(supcon_slope, npairs_slope) > 1e-3 and not np.isclose(supcon_slope, npairs_slope, rtol=0.1)
    else:
        assert supcon_slope == 0 and npairs_slope < 1e-12
noisy_supcon = scaled["noisy batch"][:, 0] / low_temperatures
assert noisy_supcon[-1] > 20 * noisy_supcon[0]  # SupCon's value does blow up as tau falls
np.testing.assert_allclose(scaled["collapsed"][:, 1] / low_temperatures, entropy_floor, rtol=1e-4)

# %% [markdown]
# ## 7 · Temperature and the gradient: who gets pushed
# The encoder's last layer outputs an unnormalised projection $v_i$; the loss sees
# $z_i = v_i / \lVert v_i \rVert$. Differentiate one anchor's $\mathcal{L}_{\text{out},i}$, the others
# held fixed. With the softmax shares $P_{ia} = \exp(s_{ia}) / \sum_{a' \in A(i)} \exp(s_{ia'})$ and
# the weights $w_{ia} = P_{ia} - [a \in P(i)]/|P(i)|$, first with respect to $z_i$, then through
# the normalisation, whose Jacobian is $\partial z_i / \partial v_i = (I - z_i z_i^\top)/\lVert v_i \rVert$:
#
# $$\frac{\partial \mathcal{L}_{\text{out},i}}{\partial z_i} = \frac{1}{\tau} \sum_{a \in A(i)} w_{ia}\, z_a,
# \qquad
# \frac{\partial \mathcal{L}_{\text{out},i}}{\partial v_i} = \frac{1}{\tau \lVert v_i \rVert}
#   \sum_{a \in A(i)} w_{ia} \big(z_a - (z_i \cdot z_a)\, z_i\big).$$
#
# A gradient step moves the anchor towards each positive with weight $1/|P(i)| - P_{ip}$ and away
# from each negative with weight $P_{in}$. The Jacobian keeps only the part of $z_a$ orthogonal to
# $z_i$, of length $\sqrt{1 - c_{ia}^2}$: a positive that already sits on the anchor contributes
# nothing, whatever its weight. This is the paper's own argument (Khosla et al. 2020, Sec. 3.2.3)
# for why easy positives and easy negatives (tiny $P_{in}$) carry little gradient and hard ones
# carry most. We check the formula with central finite differences in float64 NumPy, on one anchor
# of a larger batch (64 images of 10 classes, two views each, 32 dimensions).

# %%
big_labels = np.repeat(np.arange(10), 7)[:64]
big_features = rng.normal(size=(10, 32))[big_labels][:, None, :] + rng.normal(size=(64, 2, 32))
big_row_labels = np.repeat(big_labels, 2)
z_big = unit_rows(big_features)
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
    weights = softmax_shares(tau) - np.where(is_positive, 1.0 / is_positive.sum(), 0.0)
    unit = vector / np.linalg.norm(vector)
    return weights @ (others - np.outer(cosines, unit)) / (tau * np.linalg.norm(vector))


step = 1e-6
finite_difference = np.array([anchor_loss(anchor_vector + step * e, 0.1) - anchor_loss(anchor_vector - step * e, 0.1)
                              for e in np.eye(32)]) / (2 * step)
big_terms = supcon_terms_numpy(big_row_labels, z_big, 0.1)
big_library = float(losses.supcon_loss(big_labels, big_features.astype("float32"), temperature=0.1))
np.testing.assert_allclose(anchor_loss(anchor_vector, 0.1), big_terms[anchor])
np.testing.assert_allclose(np.nanmean(big_terms), big_library, rtol=1e-5)
print(f"|P(i)| = {is_positive.sum()}, |N(i)| = {(~is_positive).sum()}; dL/dv, first entries: closed form",
      np.round(gradient_wrt_v(anchor_vector, 0.1)[:3], 6), "finite differences", np.round(finite_difference[:3], 6))
np.testing.assert_allclose(gradient_wrt_v(anchor_vector, 0.1), finite_difference, rtol=1e-6, atol=1e-9)
assert abs(gradient_wrt_v(anchor_vector, 0.1) @ anchor_vector) < 1e-12  # the loss ignores |v_i|

# %% [markdown]
# Now the size of each negative's contribution, $P_{in}\sqrt{1 - c_{in}^2}/\tau$ (the common factor
# $1/\lVert v_i \rVert$ left out), for the same anchor at four temperatures; negatives ranked by
# their cosine with the anchor (rank 1 = the hardest).

# %%
temperatures = (0.05, 0.1, 0.5, 1.0)
tangential = np.sqrt(1.0 - cosines**2)
negative_order = np.argsort(-cosines[~is_positive])  # hardest first
closest, farthest = np.argmax(np.where(is_positive, cosines, -2)), np.argmin(np.where(is_positive, cosines, 2))
negative_push, hardest_share, pulls = {}, {}, {}
for tau in temperatures:
    shares = softmax_shares(tau)
    negative_push[tau] = (shares * tangential / tau)[~is_positive]
    hardest_share[tau] = negative_push[tau][negative_order[:5]].sum() / negative_push[tau].sum()
    pulls[tau] = (1.0 / is_positive.sum() - shares) / tau  # towards positives; negative = pushed away
    print(f"tau {tau:4.2f}: 5 hardest negatives take {hardest_share[tau]:5.1%} of the push; pull on the "
          f"farthest positive {pulls[tau][farthest]:+.3f}, on the closest {pulls[tau][closest]:+.3f}")
shares_in_order = [hardest_share[tau] for tau in temperatures]
assert all(colder > warmer for colder, warmer in zip(shares_in_order, shares_in_order[1:]))
assert negative_push[0.05].min() < 1e-3 * negative_push[1.0].min()
assert all(pulls[tau][farthest] > pulls[tau][closest] for tau in temperatures) and pulls[0.05][closest] < 0

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for tau in temperatures:
    left.scatter(cosines[~is_positive], negative_push[tau] / negative_push[tau].sum(), s=12, label=f"tau = {tau}")
    cumulative = np.cumsum(negative_push[tau][negative_order]) / negative_push[tau].sum()
    right.plot(np.arange(1, len(cumulative) + 1), cumulative, label=f"tau = {tau}")
left.set_yscale("log")
left.set_xlabel("cosine similarity of the negative to the anchor")
left.set_ylabel("share of the anchor's total push")
left.set_title("Each negative's share of the gradient")
right.set_xlabel("negatives ranked from hardest (1) to easiest")
right.set_ylabel("cumulative share of the push")
right.set_title("How concentrated the push is")
for ax in (left, right):
    ax.legend(title="temperature")
fig.suptitle(f"One anchor, {(~is_positive).sum()} negatives: a low temperature pushes mostly against the hardest ones")
fig.tight_layout()
if PROFILE == "cpu":
    viz.save_fig(fig, "03_temperature_weights")

# %% [markdown]
# For this anchor, as $\tau$ falls from 1.0 to 0.05 the share of the push that lands on the five
# hardest negatives rises and the easiest negative's contribution falls by more than three orders
# of magnitude (both asserted): a low temperature mines hard negatives by itself. In general the
# ratio of two negatives' shares is $e^{(c_{ia} - c_{ib})/\tau}$, which grows as $\tau$ falls. On the
# positive side the pull $(1/|P(i)| - P_{ip})/\tau$ is larger for the farthest positive than for the
# closest (asserted); at $\tau = 0.05$ the closest positive even gets a negative pull (asserted):
# it holds more than its $1/|P(i)|$ share of the softmax and is pushed *away*.
#
# How low should $\tau$ go? The paper uses 0.1 and reports that low temperatures train better
# but that very low ones are harder to train, which it attributes to numerical stability. That a
# very low temperature concentrates the push on a handful of negatives, with noisy labels possibly
# mislabelled ones, is our reading of the weights above, not a result of the paper.

# %% [markdown]
# ## 8 · Numerics: why the row maximum is subtracted
# At $\tau = 0.05$ logits reach $1/\tau = 20$ (npairs' diagonal, and any positive close to its
# anchor), and $e^{20}$ is far beyond float16's largest finite number, 65504. A naive float16
# softmax of our batch's logit matrix, diagonal included as in npairs, overflows in every row to
# `inf / inf = nan`. Subtracting each row's maximum first makes every exponent $\le 0$ and leaves
# the softmax unchanged (the factor $e^{-\max}$ cancels). `supcon_lib` does that, in float32,
# whatever the input dtype, so float16 features give the float32 loss of the same numbers.

# %%
def softmax(logits, subtract_max):
    exps = np.exp(logits - logits.max(axis=1, keepdims=True) if subtract_max else logits)
    return exps / exps.sum(axis=1, keepdims=True)


logits16 = (z.astype(np.float16) @ z.astype(np.float16).T) / np.float16(npairs_temperature)
with np.errstate(over="ignore", invalid="ignore"):
    naive16 = softmax(logits16, subtract_max=False)
stable16 = softmax(logits16, subtract_max=True)
features16 = features.astype(np.float16)
value16 = float(losses.supcon_loss(labels, features16, temperature=npairs_temperature))
value32 = float(losses.supcon_loss(labels, features16.astype(np.float32), temperature=npairs_temperature))
print(f"float16 max {np.finfo(np.float16).max:.0f}, exp(20) = {np.exp(20.0):.3e}; largest logit {logits16.max()}")
print(f"naive float16 softmax: {np.sum(np.any(np.isnan(naive16), axis=1))} of {len(naive16)} rows hold nan; "
      f"max-subtracted: all finite {np.all(np.isfinite(stable16))}")
print(f"supcon_loss on float16 input {value16:.6f}, on the same numbers in float32 {value32:.6f}")
assert np.exp(20.0) > np.finfo(np.float16).max and np.all(np.isnan(np.diag(naive16)))
assert np.all(np.isfinite(stable16)) and np.allclose(stable16.sum(axis=1), 1, atol=1e-2)
assert np.isfinite(value16) and value16 == value32

# %% [markdown]
# ## Summary
# In this notebook we read softmax cross-entropy as "pick the right class among C" and turned it
# into NT-Xent (pick the other view among the 2N - 1 others) and SupCon's
# $\mathcal{L}_{\text{out}}$ and $\mathcal{L}_{\text{in}}$ (every sample of the class is a right
# answer), each written in NumPy and checked against `supcon_lib.losses`; Jensen's inequality
# orders the two. The original example's npairs loss splits into an alignment term that never
# sees a negative and a repulsion term that repels positives too; its kept diagonal takes almost
# all of a row's softmax on noisy embeddings and exactly $1/n_i$ at collapse, npairs' optimum;
# without the diagonal it is SupCon with one view. The loss starts at $\log(A-1)$ when all cosines
# are equal, can rise to $\log(A-1) + 2/\tau$, and has the floor mean $\log|P(i)|$, which class
# collapse reaches as $\tau \to 0$. At low temperature both losses grow like $1/\tau$ with
# different slopes; the temperature also decides how much of the gradient goes to the hardest
# negatives, and the normalisation's Jacobian silences samples already on the anchor. A float16
# softmax at $\tau = 0.05$ overflows unless the row maximum is subtracted, which the library does
# in float32.
#
# ## Exercises
# 1. Random unit vectors in $D$ dimensions have cosines of mean 0 and variance about $1/D$. Show
#    that then $\mathcal{L}_{\text{out}} \approx \log(A-1) + 1/(2\tau^2 D)$ (hint:
#    $\mathbb{E}[e^{s}] = e^{\sigma^2/2}$ for a normal $s$), and check it with
#    `losses.supcon_loss` on 256 random images, two views, ten classes, for $D$ from 128 to 8192
#    at $\tau = 0.1$ and $0.5$.
# 2. Derive the gradient of $\mathcal{L}_{\text{in},i}$ with respect to $z_i$. Show that the pull
#    towards positive $p$ is weighted by $\exp(s_{ip}) / \sum_{p'} \exp(s_{ip'}) - P_{ip}$ and
#    compute it for the anchor of section 7 at $\tau = 0.05$: which positives does
#    $\mathcal{L}_{\text{in}}$ pull hardest, and why might that hurt?
# 3. Repeat the float16 experiment of section 8 at $\tau = 0.1$, without the diagonal (SupCon's
#    rows). Do the naive rows still overflow? Above which cosine does a positive overflow?
# 4. For a batch of 256 images with two views and ten balanced classes, what are $\log(A-1)$,
#    the ceiling $\log(A-1) + 2/\tau$ at $\tau = 0.1$ and the floor? Check the first and the last
#    with `losses.supcon_loss`, as in section 5.
#
# **Next:** [04 · The cross-entropy baseline](04_cross_entropy_baseline.ipynb)
