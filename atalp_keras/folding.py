"""The attack's view of a classifier: each BatchNorm folded into the convolution
before it.

An attack calls the classifier in inference mode (``training=False``), where a
BatchNorm after a convolution is a fixed per-channel affine map. Folded into
the convolution's kernel and bias it costs nothing; left as it is, it is one
more pass over the activations forward and one backward in every attack step:
about a fifth of a PGD step of the 28x28 ResNet on this project's CPUs
(docs/benchmarks.md). The folded model shares the classifier's variables and
recomputes the folded kernel from them at every call, so it always attacks the
current weights; its logits and input gradients are the classifier's to float
rounding. Only what an attack calls is folded: training passes, which need the
batch statistics, use the classifier itself.
"""

import weakref

import keras
from keras import layers, ops
from keras.src.models.functional import Functional

from atalp_keras import backend
from atalp_keras.backbones.layers import FusedBatchNormalization
from atalp_keras.trace_switch import TraceSwitch

# The BatchNorm layers whose inference-mode function the fold reproduces.
_BATCH_NORMS = (layers.BatchNormalization, FusedBatchNormalization)

# classifier -> its folded view, for as long as the classifier lives.
_VIEWS = weakref.WeakKeyDictionary()
# Whether attacks traced now call the folded view (on unless turned off).
_FOLD = TraceSwitch(True)


class FoldedConvBatchNorm(layers.Layer):
    """``bn(conv(x), training=False)`` as one convolution with a bias.

    Holds no variables of its own: the kernel and bias are folded from the two
    layers' current values at every call.
    """

    def __init__(self, conv, batch_norm, **kwargs):
        super().__init__(name=f"{conv.name}_folded", dtype=conv.dtype_policy, **kwargs)
        self.conv = conv
        self.batch_norm = batch_norm

    def call(self, inputs):
        bn = self.batch_norm
        channels = self.conv.filters
        gamma = ops.cast(bn.gamma, "float32") if bn.scale else ops.ones((channels,))
        beta = ops.cast(bn.beta, "float32") if bn.center else ops.zeros((channels,))
        scale = gamma * ops.rsqrt(ops.cast(bn.moving_variance, "float32") + bn.epsilon)
        bias = ops.cast(self.conv.bias, "float32") if self.conv.use_bias else 0.0
        shift = beta + (bias - ops.cast(bn.moving_mean, "float32")) * scale
        kernel = ops.cast(ops.cast(self.conv.kernel, "float32") * scale, self.compute_dtype)
        outputs = self.conv.convolution_op(ops.cast(inputs, self.compute_dtype), kernel)
        # In the BatchNorm's compute dtype, as the pair's output was.
        return ops.cast(outputs + ops.cast(shift, self.compute_dtype), bn.compute_dtype)

    def compute_output_spec(self, inputs):
        return self.conv.compute_output_spec(inputs)


def _consumers(model):
    """How many calls in ``model``'s graph take each tensor (by id) as input:
    layers and raw ops alike (``b + c`` is a node too), and the outputs."""
    counts = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            for tensor in node.input_tensors:
                counts[id(tensor)] = counts.get(id(tensor), 0) + 1
    for tensor in model.outputs:
        counts[id(tensor)] = counts.get(id(tensor), 0) + 1
    return counts


def _foldable_pairs(model):
    """``{conv: batch_norm}`` for each Conv2D whose only consumer is a
    channels-last BatchNorm, both called once in ``model``."""
    consumers = _consumers(model)
    pairs = {}
    for bn in model.layers:
        # Exactly these classes: a subclass may compute something else.
        if type(bn) not in _BATCH_NORMS or len(bn._inbound_nodes) != 1:
            continue
        node = bn._inbound_nodes[0]
        if len(node.input_tensors) != 1:
            continue
        tensor = node.input_tensors[0]
        conv = tensor._keras_history.operation
        axis = bn.axis if bn.axis >= 0 else bn.axis + len(tensor.shape)
        if (type(conv) is layers.Conv2D and len(conv._inbound_nodes) == 1
                and conv.data_format == "channels_last" and axis == len(tensor.shape) - 1
                and conv.activation is keras.activations.linear
                and consumers.get(id(tensor)) == 1):
            pairs[conv] = bn
    return pairs


def fold_batchnorm(classifier):
    """A functional model computing ``classifier(x, training=False)`` with each
    Conv2D -> BatchNorm pair folded into one convolution.

    Args:
        classifier: A functional ``keras.Model``.

    Returns:
        A model sharing ``classifier``'s variables, meant to be called in
        inference mode only (it never updates BatchNorm statistics), or
        ``classifier`` itself when nothing can be folded.
    """
    pairs = _foldable_pairs(classifier)
    if not pairs:
        return classifier
    folded_norms = {id(bn) for bn in pairs.values()}

    def call_function(layer, *args, **kwargs):
        if layer in pairs:
            return FoldedConvBatchNorm(layer, pairs[layer])(*args)
        if id(layer) in folded_norms:
            return args[0]  # already applied by the folded convolution
        return layer(*args, **kwargs)

    # Keras' clone_model does this too, then compiles the copy when the
    # classifier is compiled (serialising its optimizer): not wanted here.
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name)
              for t in classifier.inputs]
    outputs = classifier._run_through_graph(inputs, operation_fn=lambda layer: layer,
                                            call_fn=call_function)
    return Functional(inputs, outputs, name=f"{classifier.name}_folded")


def attack_folding(enabled):
    """Attacks traced inside call the folded view (``enabled``, the default)
    or the classifier as it is (for comparisons and benchmarks).

    Example:
        >>> with atalp_keras.folding.attack_folding(False):
        ...     model.fit(x, y)  # the attack in train_step calls the unfolded model
    """
    return _FOLD.scope(enabled)


@backend.do_not_convert
def attack_view(model):
    """What attacks call instead of ``model``: `fold_batchnorm` of it, built
    once per model and kept while the model lives; ``model`` itself when it is
    not a functional Keras model (a Sequential, a subclass, a SavedModel
    wrapper), has nothing to fold, or folding is turned off
    (`attack_folding`)."""
    if type(model) is not Functional or not _FOLD.enabled():
        return model
    if model not in _VIEWS:
        with backend.init_scope():  # built eagerly, also when first asked inside a trace
            view = fold_batchnorm(model)
        # None for "nothing to fold": the model as a value would keep itself alive.
        _VIEWS[model] = None if view is model else view
    view = _VIEWS[model]
    return model if view is None else view
