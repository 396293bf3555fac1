"""The model each recipe trains: augmentation, encoder and heads wired together, then compiled.

* :func:`build_ce_model` - images -> augmentation -> encoder -> classifier logits (cross-entropy);
* :func:`build_supcon_model` - images -> V augmented views -> one encoder pass for all views
  (:class:`MergeViews`) -> projection head -> (B, V, P) projections (:class:`SplitViews`);
* :func:`build_hybrid_model` - the same views, logits and projections side by side in one output;
* :func:`build_momentum_model` - SupCon with a momentum encoder and a queue (``momentum``);
* :func:`build_compiled_model` - the one of ``config.method``, compiled with its loss
  (:func:`contrastive_loss` for SupCon) and optimizer (``optim.make_optimizer``), as
  ``training.run`` trains it;
* :func:`inference_model` - images -> features after training: the pipeline (only its
  normalisation acts at inference) then the encoder.

Each builder returns ``(model, encoder, pipeline)``: the encoder and the augmentation pipeline
are shared with the model, so training the model trains the encoder. ``config`` is a
``run_config.RunConfig`` (any object with its attributes will do).
"""

from __future__ import annotations

import keras
from keras import ops

from supcon_lib import augment, losses, models, momentum, optim

__all__ = [
    "MergeViews",
    "SplitViews",
    "accuracy_metric",
    "build_ce_model",
    "build_compiled_model",
    "build_hybrid_model",
    "build_momentum_model",
    "build_supcon_model",
    "contrastive_loss",
    "inference_model",
]


def _augmentation(config, train_images):
    return augment.build_pipeline(config.augmentation_kind, train_images=train_images, seed=config.seed)


class MergeViews(keras.layers.Layer):
    """(B, V, ...) -> (B * V, ...): all views of a batch through the encoder in one pass."""

    def call(self, views):
        return ops.reshape(views, (-1, *views.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * input_shape[1]
        return (batch, *input_shape[2:])


class SplitViews(keras.layers.Layer):
    """(B * V, D) -> (B, V, D), the inverse of :class:`MergeViews` for the projections."""

    def __init__(self, num_views, **kwargs):
        super().__init__(**kwargs)
        self.num_views = int(num_views)

    def call(self, projections):
        return ops.reshape(projections, (-1, self.num_views, projections.shape[-1]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.num_views
        return (batch, self.num_views, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_views": self.num_views}


def build_ce_model(config, train_images, num_classes):
    """images (uint8) -> augmentation -> encoder -> classifier logits; returns (model, encoder, pipeline)."""

    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    head = models.build_classifier_head(config.classifier_head, encoder.output_shape[-1], num_classes)
    inputs = keras.Input(train_images.shape[1:], name="images")
    logits = head(encoder(pipeline(inputs)))
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(inputs, logits, name="ce_classifier"), encoder, pipeline


def build_supcon_model(config, train_images):
    """images -> V views -> encoder -> projection head -> (B, V, projection_dim); returns
    (model, encoder, pipeline). With ``views=1`` (npairs) the output is (B, projection_dim)."""
    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    head = models.build_projection_head(config.projection_head, encoder.output_shape[-1], config.projection_dim)
    image_shape = tuple(train_images.shape[1:])
    inputs = keras.Input(image_shape, name="images")
    views = augment.MultiView(pipeline, config.views, name="views")(inputs)  # (B, V, H, W, C)
    flat = MergeViews(name="merge_views")(views)  # (B * V, H, W, C): one encoder pass for all views
    projections = SplitViews(config.views, name="split_views")(head(encoder(flat)))  # (B, V, P)
    if config.loss == "npairs":
        projections = keras.layers.Reshape((config.projection_dim,), name="single_view")(projections)
    projections = keras.layers.Activation("linear", dtype="float32", name="projections")(projections)
    return keras.Model(inputs, projections, name="supcon_pretraining"), encoder, pipeline


def build_hybrid_model(config, train_images, num_classes):
    """images -> V views -> encoder -> [classifier logits (B, V, C) | projections (B, V, P)],
    side by side in one output for :class:`losses.HybridLoss`; returns (model, encoder, pipeline).
    The classifier head is the layer named ``classifier_head``."""
    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    features = encoder.output_shape[-1]
    classifier = models.build_classifier_head(config.classifier_head, features, num_classes)
    head = models.build_projection_head(config.projection_head, features, config.projection_dim)
    inputs = keras.Input(train_images.shape[1:], name="images")
    views = augment.MultiView(pipeline, config.views, name="views")(inputs)
    encoded = encoder(MergeViews(name="merge_views")(views))  # (B * V, F)
    both = keras.layers.Concatenate(name="logits_and_projections")([classifier(encoded), head(encoded)])
    both = SplitViews(config.views, name="split_views")(both)  # (B, V, C + P)
    both = keras.layers.Activation("linear", dtype="float32", name="outputs")(both)
    return keras.Model(inputs, both, name="hybrid"), encoder, pipeline


def build_momentum_model(config, train_images):
    """SupCon with a momentum encoder and a label queue (:class:`momentum.MomentumSupCon`), input
    ``(images, labels)``; returns (model, encoder, pipeline)."""
    pipeline = _augmentation(config, train_images)
    encoder = models.build_encoder(config.encoder, input_shape=train_images.shape[1:])
    head = models.build_projection_head(config.projection_head, encoder.output_shape[-1], config.projection_dim)
    model = momentum.MomentumSupCon(pipeline, encoder, head, config.queue_size, config.key_momentum,
                                    config.temperature, name="supcon_momentum")
    model.build(((None, *train_images.shape[1:]), (None,)))
    return model, encoder, pipeline


def contrastive_loss(config):
    """The phase-1 loss a SupCon config asks for (``SupConLoss``, SimCLR's, or ``NPairsLoss``)."""
    if config.loss == "npairs":
        return losses.NPairsLoss(config.temperature)
    return losses.SupConLoss(config.temperature, config.formulation, use_labels=config.loss == "supcon")


def accuracy_metric():
    """The "accuracy" metric as an object: made here, its variables exist before the first traced
    step (the string ``"accuracy"`` makes Keras create them inside it, and ``tf.function`` then
    traces the step twice)."""
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def build_compiled_model(config, train_images, num_classes, steps_per_epoch, jit_compile):
    """The model of ``config.method`` compiled as ``training.run`` compiles it, its optimizer built
    (call it inside the strategy's scope, if any); returns (model, encoder, pipeline)."""
    optimizer = optim.make_optimizer(config, steps_per_epoch, config.epochs)
    if config.method == "ce":
        model, encoder, pipeline = build_ce_model(config, train_images, num_classes)
        model.compile(optimizer=optimizer, loss=losses.SparseCrossEntropy(config.label_smoothing),
                      metrics=[accuracy_metric()], jit_compile=jit_compile)
    elif config.method == "hybrid":
        model, encoder, pipeline = build_hybrid_model(config, train_images, num_classes)
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      loss=losses.HybridLoss(num_classes, config.supcon_weight, config.temperature,
                                             config.label_smoothing))
    elif config.queue_size:
        model, encoder, pipeline = build_momentum_model(config, train_images)
        model.compile(optimizer=optimizer, jit_compile=jit_compile)  # the model adds its loss
    else:
        model, encoder, pipeline = build_supcon_model(config, train_images)
        model.compile(optimizer=optimizer, loss=contrastive_loss(config), jit_compile=jit_compile)
    # Its slots now, in the caller's strategy scope: made in the first traced step, they would
    # make tf.function trace (and XLA compile) that step twice.
    model.optimizer.build(model.trainable_variables)
    return model, encoder, pipeline



def inference_model(pipeline, encoder):
    """images -> features at inference: the pipeline (only its normalisation acts) then the encoder."""
    return keras.Sequential([pipeline, encoder], name="embedder")
