"""supcon_lib: the library behind the supcon notebooks on supervised contrastive learning.

Modules, one job each (import the module, then use its names: ``from supcon_lib import losses``):

* ``data``       - CIFAR-10 from a local copy or a download, the offline digits set, subsets
* ``augment``    - augmentation pipelines as Keras layers, multi-view sampling
* ``losses``     - the SupCon loss family (SupCon L_out / L_in, SimCLR, the original npairs loss)
* ``models``     - encoders (CIFAR ResNets, ResNet50V2) and projection / classifier heads
* ``training``   - the cross-entropy baseline and two-phase SupCon recipes
* ``evaluation`` - accuracy, embeddings, kNN, t-SNE, confusion matrices
* ``viz``        - figures (arrays in, figures out) and ``save_fig``
* ``paths``      - where figures, runs and data live

Importing the package itself is cheap: it does not import TensorFlow or Keras.
"""

__version__ = "0.1.0"
