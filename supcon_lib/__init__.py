"""supcon_lib: the library behind the supcon notebooks on supervised contrastive learning.

Modules, one job each (import the module, then use its names: ``from supcon_lib import losses``):

* ``data``       - CIFAR-10 from a local copy or a download, the offline digits set, subsets
* ``packed``     - the compact CIFAR-10 file (JPEG mosaics in an .npz)
* ``augment``    - augmentation pipelines as Keras layers, multi-view sampling
* ``losses``     - the SupCon loss family (SupCon L_out / L_in, SimCLR, the original npairs loss)
* ``models``     - encoders (CIFAR ResNets, ResNet50V2) and projection / classifier heads
* ``training``   - the cross-entropy baseline and two-phase SupCon recipes
* ``evaluation`` - accuracy, embeddings, kNN, t-SNE, confusion matrices
* ``viz``        - figures (arrays in, figures out) and ``save_fig``
* ``paths``      - where figures, runs and data live
* ``runtime``    - the profile, device and versions a notebook runs with; runs on Google Drive
* ``cost``       - multiply-adds counted from a model; GPU time estimates of the profiles
* ``quiet``      - start Keras without TensorFlow's start-up log lines

Importing the package itself is cheap: it does not import TensorFlow or Keras.
"""

__version__ = "0.1.0"
