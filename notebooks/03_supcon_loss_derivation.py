# %% [markdown]
# # 03 · The SupCon loss, derived
#
# *From "pick the right class among C" to "pick your positives among everyone else": the loss as formulas, as a few lines of NumPy, and as numbers checked against `supcon_lib.losses`.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/supcon-teaching/supcon/blob/main/notebooks/03_supcon_loss_derivation.ipynb)
#
# **In this notebook we will**
# - read softmax cross-entropy as a multiple-choice question and turn it, step by step, into
#   SimCLR's NT-Xent and SupCon's two formulations L_out and L_in, writing each formula next to a
#   short NumPy version that is checked against `supcon_lib.losses`;
# - put the original keras-io example's npairs loss next to ours on the same batch and measure
#   what its kept diagonal does;
# - work out where the loss starts and where its floor lies, and check both;
# - see how the temperature moves the gradient's weight onto the hardest negatives, and check the
#   gradient against automatic differentiation;
# - see why float16 logits overflow unless the row maximum is subtracted first.
#
# **Prerequisites:** notebook 02; softmax, cross-entropy, logarithms and one derivative.
#
# **Run time:** every profile about 20 s on a CPU, most of it importing TensorFlow (nothing is
# trained here; the profile only decides whether the figures are saved).

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
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (only for GradientTape, the autodiff check of section 5)

from supcon_lib import losses, runtime, viz  # noqa: E402

runtime.start_notebook(seed=0, trains=False)

# %% tags=["parameters"]
PROFILE = runtime.choose_profile()  # SUPCON_PROFILE=smoke|cpu|full; only decides whether figures are saved
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
print(f"equal logits: {uniform_guess:.4f} = log {num_classes} = {np.log(num_classes):.4f}")
print(f"right logit 5 above the others: {softmax_cross_entropy(np.eye(num_classes)[3] * 5, target=3):.4f}")
assert np.isclose(uniform_guess, np.log(num_classes))

# %% [markdown]
# ### NT-Xent: pick the other view among the 2N - 1 others
# SimCLR (Chen et al. 2020) asks the same question without any class labels. A batch holds $N$
# images, each seen in two augmented views, embedded and L2-normalised to unit vectors $z$:
# $2N$ rows. For an anchor $i$ the "classes" are the $2N-1$ *other* views, their logits are
# the similarities $s_{ia} = z_i \cdot z_a / \tau$ at temperature $\tau$, and the right answer
# is $j(i)$, the other view of the same image:
#
# $$\ell_i = -\log \frac{\exp(z_i \cdot z_{j(i)} / \tau)}{\sum_{a \ne i} \exp(z_i \cdot z_a / \tau)},
#   \qquad \mathcal{L}_{\text{NT-Xent}} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i .$$
#
# It *is* softmax cross-entropy, with $C = 2N - 1$ classes that change with every batch and whose
# "class weights" are the other samples' embeddings. The code below says exactly that: it calls
# `softmax_cross_entropy` once per anchor.
#
# Our batch: 8 images of 4 classes (class 3 has a single image), two views each, 16 dimensions.
# Each view is its class's random prototype plus noise, so that views of a class are similar but
# not identical, like the embeddings of a partly trained encoder.

# %%
def unit_rows(features):
    """(B, V, D) features -> (B * V, D) unit vectors, image-major: row b * V + v is view v of image b."""
    flat = np.asarray(features, np.float64).reshape(-1, np.shape(features)[-1])
    return flat / np.linalg.norm(flat, axis=1, keepdims=True)


def ntxent_numpy(z, temperature):
    """NT-Xent of unit vectors z (2N, D) whose rows 2k and 2k + 1 are the two views of image k."""
    num_anchors = len(z)
    total = 0.0
    for i in range(num_anchors):
        other_view = i + 1 if i % 2 == 0 else i - 1
        candidates = [a for a in range(num_anchors) if a != i]  # the 2N - 1 possible answers
        logits = z[candidates] @ z[i] / temperature
        total += softmax_cross_entropy(logits, target=candidates.index(other_view))
    return total / num_anchors


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
print(f"NT-Xent, inline NumPy:          {ntxent_inline:.6f}")
print(f"supcon_loss(None, features):    {ntxent_library:.6f}")
np.testing.assert_allclose(ntxent_inline, ntxent_library, rtol=1e-5)

# %% [markdown]
# ## 2 · SupCon: every sample of the class is a right answer
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
# "labels" are the image indices, $P(i) = \{j(i)\}$ and both formulations are NT-Xent.

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
        if formulation == "out":
            terms[i] = -np.mean(log_shares)
        else:
            terms[i] = -np.log(np.mean(np.exp(log_shares)))
    return terms


row_labels = np.repeat(labels, num_views)  # one label per view, image-major like z
inline, library = {}, {}
for formulation in ("out", "in"):
    inline[formulation] = np.nanmean(supcon_terms_numpy(row_labels, z, temperature, formulation))
    library[formulation] = float(losses.supcon_loss(labels, features, temperature=temperature, formulation=formulation))
    print(f"L_{formulation:3s} inline {inline[formulation]:.6f}   supcon_lib {library[formulation]:.6f}")
    np.testing.assert_allclose(inline[formulation], library[formulation], rtol=1e-5)

image_ids = np.repeat(np.arange(len(labels)), num_views)
np.testing.assert_allclose(np.nanmean(supcon_terms_numpy(image_ids, z, temperature)), ntxent_inline)
print("with image indices as labels, L_out equals NT-Xent:", round(ntxent_inline, 6))

# %% [markdown]
# **Jensen's inequality.** $-\log$ is convex, so the mean of $-\log$ of the positives' shares
# ($\mathcal{L}_{\text{out}}$) is at least $-\log$ of their mean ($\mathcal{L}_{\text{in}}$),
# anchor by anchor, with equality when an anchor has a single positive (class 3 here: its two
# views are each other's only positive).

# %%
terms_out = supcon_terms_numpy(row_labels, z, temperature, "out")
terms_in = supcon_terms_numpy(row_labels, z, temperature, "in")
num_positives = np.array([np.sum(row_labels == row_labels[i]) - 1 for i in range(num_anchors)])
print("|P(i)|       ", num_positives)
print("L_out - L_in ", np.round(terms_out - terms_in, 4))
assert np.all(terms_in <= terms_out + 1e-12) and library["in"] <= library["out"]
np.testing.assert_allclose(terms_out[num_positives == 1], terms_in[num_positives == 1])

# %% [markdown]
# The paper recommends $\mathcal{L}_{\text{out}}$ (its Table 1 compares the two on ImageNet).
# One way to see why: inside the log, the sum over positives is dominated by the *closest*
# positive, so $\mathcal{L}_{\text{in}}$ is nearly satisfied once one positive is close, while
# $\mathcal{L}_{\text{out}}$ charges every positive separately (exercise 2). `supcon_lib` uses
# $\mathcal{L}_{\text{out}}$ by default.
#
# ## 3 · The original example's npairs loss, diagonal kept
# The 2020 keras-io example embedded *one* view per image, built the full $B \times B$ matrix
# $s_{ij} = z_i \cdot z_j / \tau$ at $\tau = 0.05$, and passed it to tensorflow-addons'
# `npairs_loss`: a softmax over *all* $B$ columns, the anchor's own included, against targets
# spread evenly over its class, itself included:
#
# $$\mathcal{L}_{\text{npairs}} = \frac{1}{B} \sum_{i=1}^{B} -\sum_{j=1}^{B} t_{ij}
#   \log \frac{\exp(s_{ij})}{\sum_{k=1}^{B} \exp(s_{ik})},
# \qquad t_{ij} = \frac{[y_i = y_j]}{\#\{k : y_k = y_i\}} .$$
#
# The diagonal logit $s_{ii} = z_i \cdot z_i / \tau = 1/\tau$ is the largest any entry can be,
# and no encoder can change it. Dropping the diagonal from targets and softmax (and the rows that
# are then left without a target) gives exactly SupCon's $\mathcal{L}_{\text{out}}$ with one view.
# Below: the inline version with a switch for the diagonal, checked against `losses.npairs_loss`
# and `losses.supcon_loss` on the first view of our batch.

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
z_single = unit_rows(single_view[:, None, :])
npairs_kept = npairs_numpy(labels, z_single, npairs_temperature)
npairs_dropped = npairs_numpy(labels, z_single, npairs_temperature, keep_diagonal=False)
npairs_library = float(losses.npairs_loss(labels, single_view, temperature=npairs_temperature))
supcon_single = float(losses.supcon_loss(labels, single_view, temperature=npairs_temperature))
print(f"npairs, diagonal kept:    inline {npairs_kept:.5f}   losses.npairs_loss {npairs_library:.5f}")
print(f"npairs, diagonal dropped: inline {npairs_dropped:.5f}   losses.supcon_loss {supcon_single:.5f}")
np.testing.assert_allclose(npairs_kept, npairs_library, rtol=1e-5)
np.testing.assert_allclose(npairs_dropped, supcon_single, rtol=1e-5)

# %% [markdown]
# Where does each row's mass sit? The targets put $1/n_i$ of it on the diagonal, with $n_i$ the
# size of $i$'s class in the batch (all of it for the single image of class 3). The softmax,
# driven by $s_{ii} = 1/\tau = 20$, puts far more there.
#
# That has a consequence we can write down exactly. Since $s_{ii} = 1/\tau$, the row's
# log-sum-exp is $1/\tau - \log \mathrm{softmax}_{ii}$, and each row's loss splits into two parts:
#
# $$-\sum_j t_{ij} \log \mathrm{softmax}_{ij}
#   = \underbrace{\frac{1}{n_i} \sum_{j:\, y_j = y_i} \frac{1 - z_i \cdot z_j}{\tau}}_{\text{alignment}}
#   \; + \; \underbrace{\log\Big(1 + \sum_{k \ne i} e^{(z_i \cdot z_k - 1)/\tau}\Big)}_{\text{repulsion} \,=\, -\log \mathrm{softmax}_{ii}} .$$
#
# The alignment part ($1 - z_i \cdot z_j = \lVert z_i - z_j \rVert^2 / 2$) never looks at a
# negative; the repulsion part pushes $z_i$ away from *every* other sample, its positives
# included, and is nearly 0 while nothing comes close to $z_i$.

# %%
logits_single = z_single @ z_single.T / npairs_temperature
softmax_single = np.exp(logits_single - logits_single.max(axis=1, keepdims=True))
softmax_single /= softmax_single.sum(axis=1, keepdims=True)
same_class = labels[:, None] == labels[None, :]
other_positive = same_class & ~np.eye(len(labels), dtype=bool)  # j = i adds 1 - 1 = 0 to the alignment
class_size = same_class.sum(axis=1)
target_on_diagonal = 1.0 / class_size
softmax_on_diagonal = np.diag(softmax_single)
row_loss = -np.sum(np.where(same_class, np.log(softmax_single), 0.0), axis=1) / class_size
alignment = np.sum(np.where(other_positive, 1.0 - z_single @ z_single.T, 0.0), axis=1) / class_size / npairs_temperature
repulsion = -np.log(softmax_on_diagonal)
print(f"self-similarity logit 1/tau = {1 / npairs_temperature:.0f}; largest off-diagonal logit "
      f"{np.max(logits_single[~np.eye(len(labels), dtype=bool)]):.2f}")
print(f"{'image':>5s} {'class':>5s} {'n_i':>3s} {'target on diag':>14s} {'softmax on diag':>15s} "
      f"{'row loss':>9s} {'alignment':>9s} {'repulsion':>9s}")
for i in range(len(labels)):
    print(f"{i:5d} {labels[i]:5d} {class_size[i]:3d} {target_on_diagonal[i]:14.3f} {softmax_on_diagonal[i]:15.4f} "
          f"{row_loss[i]:9.3f} {alignment[i]:9.3f} {repulsion[i]:9.4f}")
np.testing.assert_allclose(row_loss, alignment + repulsion)
np.testing.assert_allclose(row_loss.mean(), npairs_kept)
assert np.all(softmax_on_diagonal > 0.99)
assert repulsion.mean() < 0.01 * alignment.mean()
print(f"mean over rows: softmax on the diagonal {softmax_on_diagonal.mean():.4f}, target on it "
      f"{target_on_diagonal.mean():.3f}; alignment {alignment.mean():.3f} + repulsion {repulsion.mean():.4f} "
      f"= npairs {npairs_kept:.3f}")

# %% [markdown]
# How the two values move with the temperature, on the same batch (library functions;
# SupCon with one view, i.e. the diagonal dropped):

# %%
print(f"{'tau':>5s} {'npairs':>8s} {'alignment':>10s} {'repulsion':>10s} {'SupCon L_out':>13s}")
npairs_by_tau, parts_by_tau = {}, {}
for tau in (0.05, 0.1, 0.5, 1.0):
    npairs_value = float(losses.npairs_loss(labels, single_view, temperature=tau))
    cosines_single = z_single @ z_single.T
    alignment_tau = np.mean(np.sum(np.where(other_positive, 1.0 - cosines_single, 0.0), axis=1) / class_size) / tau
    repulsion_tau = np.mean(np.log(np.sum(np.exp((cosines_single - 1.0) / tau), axis=1)))  # k = i gives the 1
    supcon_value = float(losses.supcon_loss(labels, single_view, temperature=tau))
    print(f"{tau:5.2f} {npairs_value:8.3f} {alignment_tau:10.3f} {repulsion_tau:10.4f} {supcon_value:13.3f}")
    np.testing.assert_allclose(npairs_value, alignment_tau + repulsion_tau, rtol=1e-5)
    npairs_by_tau[tau], parts_by_tau[tau] = npairs_value, (alignment_tau, repulsion_tau)
print(f"npairs at 0.05 / npairs at 0.1 = {npairs_by_tau[0.05] / npairs_by_tau[0.1]:.3f}")
assert 1.9 < npairs_by_tau[0.05] / npairs_by_tau[0.1] < 2.1
assert parts_by_tau[1.0][1] > parts_by_tau[1.0][0]  # at high temperature the repulsion dominates

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
positions = np.arange(len(labels))
ax.bar(positions - 0.2, target_on_diagonal, width=0.4, label="target mass on the diagonal (1 / n_i)")
ax.bar(positions + 0.2, softmax_on_diagonal, width=0.4, label=f"softmax mass on the diagonal (tau = {npairs_temperature})")
ax.set_xticks(positions, [f"image {i}\nclass {label}" for i, label in enumerate(labels)], fontsize=8)
ax.set_ylabel("share of the row")
ax.set_ylim(0, 1.35)
ax.set_title("npairs loss: the kept diagonal takes almost all of each row's softmax")
ax.legend(loc="upper center", fontsize=8, ncol=2)
if PROFILE == "cpu":
    viz.save_fig(fig, "03_npairs_diagonal")

# %% [markdown]
# The cells above show what the kept diagonal does:
# * the self-similarity $1/\tau$ holds more than 99% of every row's softmax (asserted), however
#   the encoder behaves, while the targets ask for only $1/n_i$ there;
# * so at $\tau = 0.05$ the npairs value is almost all alignment (the repulsion part is below 1%
#   of it, asserted): the positives are pulled together at a rate $1/\tau$ whether or not any
#   negative is near, and the negatives only enter through a term that also repels positives;
# * a single image of its class (image 7) still has a target, itself: its alignment part is 0,
#   its row loss is the repulsion alone, and it counts in the mean. SupCon has no positive for
#   it and leaves it out;
# * at low temperature the alignment part, and with it the npairs value, grows like $1/\tau$
#   (halving $\tau$ from 0.1 to 0.05 about doubles it, asserted); SupCon's value does not blow
#   up, because it measures each positive against the negatives, not against the anchor itself.
#   At high temperature the repulsion part takes over (asserted at $\tau = 1$);
# * once the diagonal is dropped, the two losses coincide (asserted above).
#
# ## 4 · Where the loss starts, and its floor
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
print(f"A = {num_anchors} anchors: log(A - 1) = {start_value:.4f}")
for name, batch in (("identical", collapsed_to_one), ("simplex", simplex)):
    for tau in (0.05, 0.1, 1.0):
        for formulation in ("out", "in"):
            value = float(losses.supcon_loss(labels, batch, temperature=tau, formulation=formulation))
            np.testing.assert_allclose(value, start_value, rtol=1e-5)
    print(f"{name:9s}: L_out and L_in at temperatures 0.05, 0.1, 1.0 all equal {value:.4f}")

# %% [markdown]
# **Random unit vectors** in $D$ dimensions are nearly orthogonal: their cosines scatter around 0
# with variance $1/D$, so $s_{ia}$ is roughly normal with mean 0 and variance
# $\sigma^2 = 1/(\tau^2 D)$. Then $\sum_{a} \exp(s_{ia}) \approx \,\mathbb{E}[e^{s}] = (A-1)\,e^{\sigma^2/2}$,
# the positives' mean logit is about 0, and
#
# $$\mathcal{L}_{\text{out}} \approx \log(A - 1) + \frac{1}{2\tau^2 D}.$$
#
# In high dimension, random embeddings start close to $\log(A-1)$; at small $\tau$ and small $D$
# they start measurably above it. A batch of 256 images, two views, ten random classes:

# %%
random_batch, random_views = 256, 2
random_labels = rng.integers(0, 10, size=random_batch)
random_anchors = random_batch * random_views
print(f"A = {random_anchors}: log(A - 1) = {np.log(random_anchors - 1):.4f}")
print(f"{'D':>5s} {'tau':>5s} {'L_out':>8s} {'log(A-1) + 1/(2 tau^2 D)':>25s} {'L_out - log(A-1)':>17s}")
above_start = {}
for dim in (128, 512, 2048, 8192):
    random_features = rng.normal(size=(random_batch, random_views, dim)).astype("float32")
    for tau in (0.1, 0.5):
        value = float(losses.supcon_loss(random_labels, random_features, temperature=tau))
        predicted = np.log(random_anchors - 1) + 1 / (2 * tau**2 * dim)
        print(f"{dim:5d} {tau:5.1f} {value:8.4f} {predicted:25.4f} {value - np.log(random_anchors - 1):17.4f}")
        assert abs(value - predicted) < 0.02
        above_start[dim, tau] = value - np.log(random_anchors - 1)
assert above_start[128, 0.1] > 0.1 and max(above_start[8192, 0.1], above_start[8192, 0.5]) < 0.01

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
# $$\mathcal{L}_{\text{out},i} = \log\big(|P(i)|\,e^{1/\tau} + |N(i)|\big) - \frac{1}{\tau}
#   = \log\big(|P(i)| + |N(i)|\,e^{-1/\tau}\big) \xrightarrow[\tau \to 0]{} \log |P(i)| .$$

# %%
orthogonal = np.broadcast_to(np.eye(4, embedding_dim)[labels][:, None, :], features.shape).astype("float32")
num_negatives = num_anchors - 1 - num_positives
floor = np.mean(np.log(num_positives))
print("|P(i)| per anchor:", num_positives)
print(f"floor: mean of log|P(i)| = {floor:.6f}")
print(f"{'tau':>5s} {'supcon_loss':>11s} {'mean log(|P|+|N|e^(-1/tau))':>28s} {'above floor':>12s}")
gaps = []
for tau in (1.0, 0.5, 0.1, 0.05):
    value = float(losses.supcon_loss(labels, orthogonal, temperature=tau))
    closed_form = np.mean(np.log(num_positives + num_negatives * np.exp(-1 / tau)))
    gaps.append(value - floor)
    print(f"{tau:5.2f} {value:11.6f} {closed_form:28.6f} {gaps[-1]:12.2e}")
    np.testing.assert_allclose(value, closed_form, rtol=1e-5, atol=1e-6)
assert all(later < earlier for earlier, later in zip(gaps[:2], gaps[1:3])) and abs(gaps[-1]) < 1e-5
assert floor < library["in"] <= library["out"] < start_value
print(f"our noisy batch sits in between: floor {floor:.3f} < L_in {library['in']:.3f} "
      f"<= L_out {library['out']:.3f} < log(A-1) {start_value:.3f}")

# %% [markdown]
# The cell above shows the collapsed, orthogonal batch approaching the floor as $\tau$ falls;
# at $\tau = 0.05$ the remaining gap, $|N(i)|\,e^{-20}/|P(i)|$ per anchor, is below float32's
# resolution, and the printed difference is rounding. (The same bound holds for
# $\mathcal{L}_{\text{in}}$: its denominator also contains the positives' sum.) So on a batch, the SupCon loss lives between about $\log(A-1)$ at the start
# and the mean of $\log|P(i)|$ at the end; notebook 02 measured how far from this floor the
# prototypes of a ReLU head and of a linear head can get. A training curve that dips *below*
# the floor of its batch composition has a bug.
#
# ## 5 · Temperature: who gets the gradient
# Differentiate $\mathcal{L}_{\text{out},i}$ with respect to its (normalised) anchor $z_i$,
# the others held fixed. With the softmax shares
# $P_{ia} = \exp(s_{ia}) / \sum_{a' \in A(i)} \exp(s_{ia'})$:
#
# $$\frac{\partial \mathcal{L}_{\text{out},i}}{\partial z_i} = \frac{1}{\tau}\Big[
#   \sum_{p \in P(i)} z_p \big(P_{ip} - \tfrac{1}{|P(i)|}\big) + \sum_{n \in N(i)} z_n P_{in} \Big]$$
#
# (paper Sec. 3.2.3, which also carries the normalisation's Jacobian through). A gradient step
# moves $z_i$ towards each positive with weight $(1/|P(i)| - P_{ip})/\tau$ and away from each
# negative with weight $P_{in}/\tau$. $P_{in}$ is a softmax of cosines divided by $\tau$: the
# lower the temperature, the more it concentrates on the negatives most similar to the anchor,
# the *hard* ones. We first check the formula against automatic differentiation, on one anchor of
# a larger batch (64 images of 10 classes, two views each).

# %%
big_labels = np.repeat(np.arange(10), 7)[:64]
big_prototypes = rng.normal(size=(10, 32))
big_features = big_prototypes[big_labels][:, None, :] + rng.normal(size=(64, 2, 32))
z_big = unit_rows(big_features)
big_row_labels = np.repeat(big_labels, 2)
anchor = 0
contrast = np.arange(len(z_big)) != anchor
is_positive = big_row_labels[contrast] == big_row_labels[anchor]
others = z_big[contrast]  # A(i): positives where is_positive, negatives elsewhere


def softmax_shares(tau):
    logits = others @ z_big[anchor] / tau
    shares = np.exp(logits - logits.max())
    return shares / shares.sum()


def closed_form_gradient(tau):
    weights = softmax_shares(tau) - np.where(is_positive, 1.0 / is_positive.sum(), 0.0)
    return weights @ others / tau


def anchor_term(anchor_vector, tau):
    """L_out of one anchor in keras.ops, the other embeddings held fixed."""
    logits = keras.ops.matmul(keras.ops.convert_to_tensor(others), anchor_vector) / tau
    positive_logits = keras.ops.where(keras.ops.convert_to_tensor(is_positive), logits, 0.0)
    return keras.ops.logsumexp(logits) - keras.ops.sum(positive_logits) / is_positive.sum()


anchor_vector = tf.Variable(z_big[anchor])  # float64
with tf.GradientTape() as tape:
    term = anchor_term(anchor_vector, 0.1)
autodiff_gradient = tape.gradient(term, anchor_vector).numpy()
print("|P(i)| =", is_positive.sum(), " |N(i)| =", (~is_positive).sum())
print("closed form:", np.round(closed_form_gradient(0.1)[:5], 5), "...")
print("autodiff:   ", np.round(autodiff_gradient[:5], 5), "...")
np.testing.assert_allclose(closed_form_gradient(0.1), autodiff_gradient, rtol=1e-10, atol=1e-12)

# %% [markdown]
# Now the weights themselves, for the same anchor at four temperatures. Negatives are ranked by
# their cosine with the anchor (rank 1 = the hardest); positives are "hard" when their cosine is
# low.

# %%
cosines = others @ z_big[anchor]
negative_order = np.argsort(-cosines[~is_positive])  # hardest first
positive_cosines = cosines[is_positive]
temperatures = (0.05, 0.1, 0.5, 1.0)
hardest_share = {}
print(f"negatives' cosines: hardest {cosines[~is_positive].max():+.3f}, easiest {cosines[~is_positive].min():+.3f}; "
      f"positives': {positive_cosines.min():+.3f} to {positive_cosines.max():+.3f}")
print(f"{'tau':>5s} {'hardest neg':>11s} {'easiest neg':>11s} {'share of neg weight on 5 hardest':>33s} "
      f"{'pull: hardest pos':>18s} {'easiest pos':>12s}")
for tau in temperatures:
    shares = softmax_shares(tau)
    negative_weights = shares[~is_positive] / tau
    pulls = (1.0 / is_positive.sum() - shares[is_positive]) / tau
    hardest_share[tau] = np.sort(negative_weights)[::-1][:5].sum() / negative_weights.sum()
    print(f"{tau:5.2f} {negative_weights.max():11.4f} {negative_weights.min():11.2e} {hardest_share[tau]:33.1%} "
          f"{pulls[np.argmin(positive_cosines)]:18.4f} {pulls[np.argmax(positive_cosines)]:12.4f}")
    assert pulls[np.argmin(positive_cosines)] >= pulls[np.argmax(positive_cosines)]
    if tau == temperatures[0]:
        coldest = (negative_weights.min(), pulls[np.argmax(positive_cosines)])
    elif tau == temperatures[-1]:
        warmest_easiest_negative = negative_weights.min()
shares_in_order = [hardest_share[tau] for tau in temperatures]
assert coldest[0] < 1e-3 * warmest_easiest_negative and coldest[1] < 0
assert all(colder > warmer for colder, warmer in zip(shares_in_order, shares_in_order[1:]))

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for tau in temperatures:
    negative_weights = softmax_shares(tau)[~is_positive] / tau
    left.scatter(cosines[~is_positive], negative_weights / negative_weights.sum(), s=12, label=f"tau = {tau}")
    cumulative = np.cumsum(negative_weights[negative_order]) / negative_weights.sum()
    right.plot(np.arange(1, len(cumulative) + 1), cumulative, label=f"tau = {tau}")
left.set_yscale("log")
left.set_xlabel("cosine similarity of the negative to the anchor")
left.set_ylabel("share of the anchor's total negative weight")
left.set_title("Each negative's weight in the gradient")
right.set_xlabel("negatives ranked from hardest (1) to easiest")
right.set_ylabel("cumulative share of the negative weight")
right.set_title("How concentrated the push is")
for ax in (left, right):
    ax.legend(title="temperature")
fig.suptitle(f"One anchor, {(~is_positive).sum()} negatives: a low temperature pushes mostly against the hardest ones")
fig.tight_layout()
if PROFILE == "cpu":
    viz.save_fig(fig, "03_temperature_weights")

# %% [markdown]
# The table and the figure show it: as $\tau$ falls from 1.0 to 0.05, the share of the negative
# weight that lands on the five hardest negatives rises (asserted), and the easiest negative's
# weight falls by more than three orders of magnitude (asserted): a low temperature mines hard
# negatives by itself. On the
# positive side the pull $(1/|P(i)| - P_{ip})/\tau$ is always at least as large for the farthest
# positive as for the closest (asserted); at low $\tau$ the closest positive even gets a
# negative pull (here at $\tau = 0.05$, asserted): it is pushed *away* because it holds more than
# its $1/|P(i)|$ share of the softmax. Too low a
# temperature therefore focuses on a handful of negatives (noisy, and with label noise possibly
# on mislabelled ones); the paper uses 0.1.
#
# ## 6 · Numerics: why the row maximum is subtracted
# At $\tau = 0.05$ logits reach $1/\tau = 20$ (the original example's diagonal, and any positive
# close to its anchor), and $e^{20}$ is far beyond float16's largest finite number:

# %%
float16_max = float(np.finfo(np.float16).max)
print(f"exp(20) = {np.exp(20.0):.3e}; float16 max = {float16_max:.0f}; exp overflows float16 above "
      f"x = log(65504) = {np.log(float16_max):.2f}")
print(f"float32 max = {float(np.finfo(np.float32).max):.3e}: a naive float32 exp overflows above "
      f"x = {np.log(np.finfo(np.float32).max):.2f}, i.e. for temperatures below {1 / np.log(np.finfo(np.float32).max):.4f}")
with np.errstate(over="ignore"):
    exp16 = np.exp(np.float16(20))
print("np.exp(np.float16(20)) =", exp16)
assert np.exp(20.0) > float16_max and np.isinf(exp16)

# %% [markdown]
# The full $A \times A$ logit matrix of our first batch, computed in float16 as mixed precision
# would, at $\tau = 0.05$. A naive softmax overflows to `inf`, and `inf / inf` is `nan`.
# Subtracting each row's maximum first makes every exponent $\le 0$ and every $e^x \le 1$; the
# softmax itself is unchanged, since the factor $e^{-\max}$ cancels between numerator and
# denominator.

# %%
def softmax(logits, subtract_max):
    shifted = logits - logits.max(axis=1, keepdims=True) if subtract_max else logits
    exps = np.exp(shifted)
    return exps / exps.sum(axis=1, keepdims=True)


tau = 0.05
reference = softmax(z @ z.T / tau, subtract_max=True)  # float64
logits16 = (z.astype(np.float16) @ z.astype(np.float16).T) / np.float16(tau)
with np.errstate(over="ignore", invalid="ignore"):
    naive16 = softmax(logits16, subtract_max=False)
stable16 = softmax(logits16, subtract_max=True)
stable32 = softmax(logits16.astype(np.float32), subtract_max=True)
print(f"float16 logits: dtype {logits16.dtype}, largest {logits16.max()}")
print(f"naive float16 softmax:       {np.sum(np.isnan(naive16))} of {naive16.size} entries nan, "
      f"{np.sum(np.any(np.isnan(naive16), axis=1))} of {len(naive16)} rows affected, "
      f"the others {np.unique(naive16[~np.isnan(naive16)])}")
print(f"max-subtracted, in float16:  all finite: {np.all(np.isfinite(stable16))}, "
      f"largest error vs float64 {np.max(np.abs(stable16 - reference)):.1e}")
print(f"max-subtracted, in float32:  all finite: {np.all(np.isfinite(stable32))}, "
      f"largest error vs float64 {np.max(np.abs(stable32 - reference)):.1e}")
assert np.all(np.isnan(np.diag(naive16))) and np.all(naive16[~np.isnan(naive16)] == 0)
assert np.all(np.isfinite(stable16)) and np.all(np.isfinite(stable32))
assert np.max(np.abs(stable32 - reference)) < np.max(np.abs(stable16 - reference))

# %% [markdown]
# With the diagonal in the row, every row holds a logit of 20, so every row's sum is `inf`:
# the entries whose `exp` overflowed become `inf / inf = nan` (the diagonal always among them)
# and all others `x / inf = 0` (asserted). No row is a probability distribution any more. The
# float16 logits themselves are fine (20 is a small float16 number); after the max subtraction
# what is left is rounding: exponentiating and summing in float16 loses more than doing the same
# on the same float16 logits in float32 (asserted), whose remaining error is the logits' own
# rounding.
#
# `supcon_lib` does both things: it casts any input to float32 and subtracts each row's maximum
# (over the non-self entries) before `exp`. Float16 features therefore give a finite loss, the
# same as float32 on the same (float16-rounded) numbers, and close to the float32 loss of the
# unrounded features:

# %%
features16 = features.astype(np.float16)
for formulation in ("out", "in"):
    value16 = float(losses.supcon_loss(labels, features16, temperature=tau, formulation=formulation))
    value32 = float(losses.supcon_loss(labels, features16.astype(np.float32), temperature=tau, formulation=formulation))
    value_unrounded = float(losses.supcon_loss(labels, features, temperature=tau, formulation=formulation))
    print(f"L_{formulation:3s} tau {tau}: float16 input {value16:.6f}, same numbers in float32 {value32:.6f}, "
          f"unrounded float32 {value_unrounded:.6f}")
    assert np.isfinite(value16) and value16 == value32
    np.testing.assert_allclose(value16, value_unrounded, rtol=1e-3)
npairs16 = float(losses.npairs_loss(labels, single_view.astype(np.float16), temperature=tau))
print(f"npairs_loss on float16 input at tau {tau}: {npairs16:.5f} (float32: {npairs_library:.5f})")
assert np.isfinite(npairs16)
np.testing.assert_allclose(npairs16, npairs_library, rtol=1e-3)

# %% [markdown]
# ## Summary
# In this notebook we read softmax cross-entropy as "pick the right class among C", and turned it
# into NT-Xent (pick the other view among the 2N - 1 others) and SupCon's $\mathcal{L}_{\text{out}}$
# and $\mathcal{L}_{\text{in}}$ (every sample of the class is a right answer), each written in
# NumPy and checked against `supcon_lib.losses`; Jensen's inequality orders the two. We put the
# original example's npairs loss next to ours: its kept diagonal holds more than 99% of each row's
# softmax and splits the loss exactly into an alignment term that never sees a negative and a
# repulsion term that repels positives too; without the diagonal it is SupCon with one view. The loss starts at $\log(A-1)$ when all cosines are equal
# (about there for random high-dimensional embeddings, plus $1/(2\tau^2 D)$) and is bounded below
# by the mean of $\log|P(i)|$, which class collapse reaches as $\tau \to 0$. The temperature
# decides how much of the gradient goes to the hardest negatives, and a float16 softmax at
# $\tau = 0.05$ overflows unless the row maximum is subtracted, which the library does in float32.
#
# ## Exercises
# 1. A batch of 256 images with two views and ten balanced classes: what are $\log(A-1)$ and the
#    floor? Check both with `losses.supcon_loss`, as in section 4.
# 2. Derive the gradient of $\mathcal{L}_{\text{in},i}$ with respect to $z_i$. Show that the pull
#    towards positive $p$ is weighted by $\exp(s_{ip}) / \sum_{p'} \exp(s_{ip'}) - P_{ip}$ and
#    compute it for the anchor of section 5 at $\tau = 0.05$: which positives does
#    $\mathcal{L}_{\text{in}}$ pull hardest, and why might that hurt?
# 3. Repeat the float16 experiment at $\tau = 0.1$, without the diagonal (SupCon's rows). Do
#    the naive rows still overflow? Above which cosine does a positive overflow?
# 4. The npairs loss's floor: with every class collapsed to one point and the classes orthogonal,
#    what does each row converge to as $\tau \to 0$? Compare with SupCon's $\log|P(i)|$.
#
# **Next:** [04 · The cross-entropy baseline](04_cross_entropy_baseline.ipynb)
