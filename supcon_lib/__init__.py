"""supcon_lib: the library behind the supcon notebooks on supervised contrastive learning.

Modules, one job each (import the module, then use its names: ``from supcon_lib import losses``):

* ``data``           - CIFAR-10 from a local copy or a download, the offline digits set, subsets
* ``packed``         - the compact CIFAR-10 file (JPEG mosaics in an .npz)
* ``errors``         - ``DataError``, the exception of the data readers
* ``augment``        - augmentation pipelines as Keras layers, multi-view sampling
* ``losses``         - the SupCon loss family (SupCon L_out / L_in, SimCLR, the original npairs loss)
* ``models``         - encoders (CIFAR ResNets, ResNet50V2) and projection / classifier heads
* ``recipe_models``  - each recipe's model: augmentation, encoder and heads wired and compiled
* ``optim``          - the optimizer and its learning-rate schedule
* ``input_pipeline`` - each epoch's order and batches (``tf.data`` or a ``PyDataset``)
* ``run_config``     - ``RunConfig``: the settings of a run, the profiles' defaults, validation
* ``checkpoint``     - the run folder: settings, per-epoch checkpoints, atomic writes, lock
* ``training``       - the recipes: cross-entropy baseline, two-phase SupCon, hybrid
* ``momentum``       - SupCon with a momentum encoder and a queue of labelled keys
* ``budget``         - compute-matched comparisons: recipes trained for a wall-clock budget
* ``geometry``       - what an embedding learned: alignment, uniformity, effective rank, class spread
* ``robustness``     - corruptions generated in code, calibration error, a classifier under both
* ``callbacks``      - ``GeometryMonitor``: alignment and uniformity of held-out images per epoch
* ``probes``         - label efficiency: linear probes and kNN with a fraction of the labels
* ``evaluation``     - accuracy, embeddings, kNN, t-SNE, confusion matrices
* ``viz``            - figures (arrays in, figures out) and ``save_fig``
* ``paths``          - where figures, runs and data live; the release the notebooks install
* ``runtime``        - the profile, device (precision, XLA, ``tf.distribute``) and versions a run uses
* ``cost``           - multiply-adds counted from a model; GPU time estimates of the profiles
* ``checks``         - argument checks shared by several modules
* ``quiet``          - start Keras without TensorFlow's start-up log lines

Importing the package itself is cheap: it does not import TensorFlow or Keras. Each module's
``__all__`` lists what other code may use; names starting with an underscore are private to their
module. Changes between versions are listed in CHANGELOG.md.
"""

__version__ = "0.2.0"

# The public modules (``__main__``, the command line, is not one to import). Listing them here
# makes ``from supcon_lib import *`` import every one of them, Keras and TensorFlow included.
__all__ = [
    "__version__",
    "augment",
    "budget",
    "callbacks",
    "checkpoint",
    "checks",
    "cost",
    "data",
    "errors",
    "evaluation",
    "geometry",
    "input_pipeline",
    "losses",
    "models",
    "momentum",
    "optim",
    "packed",
    "paths",
    "probes",
    "quiet",
    "recipe_models",
    "robustness",
    "run_config",
    "runtime",
    "training",
    "viz",
]
