"""The registry of built-in architectures and the stage-layer lookup.

Each entry says which keyword options its builder takes, so a caller (the
training loop) passes exactly those and an option an architecture cannot use
is refused instead of silently dropped.
"""

import dataclasses
import re
from typing import Callable

from atalp_keras.backbones.applications import application_resnet
from atalp_keras.backbones.cnn import simple_cnn
from atalp_keras.backbones.resnet import cifar_resnet, fmnist_resnet, tiny_resnet


@dataclasses.dataclass(frozen=True)
class _Entry:
    build: Callable  # (input_shape, num_classes, **options) -> keras.Model
    options: tuple  # keyword options the builder takes
    description: str


_RESNET_OPTIONS = ("synchronized_bn", "weight_decay", "fused_bn")
_REGISTRY = {
    "tiny": _Entry(
        lambda shape, n, **o: tiny_resnet(shape, n, **o), ("widths",) + _RESNET_OPTIONS,
        "tiny ResNet, one basic block per stage (digits, tests)"),
    "tiny_deep": _Entry(
        lambda shape, n, **o: tiny_resnet(shape, n, blocks_per_stage=(2, 2, 2, 2),
                                          name="tiny_resnet_deep", **o),
        ("widths",) + _RESNET_OPTIONS,
        "tiny ResNet with two blocks per stage (a black-box source for tiny)"),
    "fmnist": _Entry(
        lambda shape, n, **o: fmnist_resnet(shape, n, **o), ("widths",) + _RESNET_OPTIONS,
        "28x28 ResNet, stage maps 28/14/7/4 (Fashion-MNIST)"),
    "fmnist_deep": _Entry(
        lambda shape, n, **o: fmnist_resnet(shape, n, blocks_per_stage=(2, 2, 2, 2),
                                            name="fmnist_resnet_deep", **o),
        ("widths",) + _RESNET_OPTIONS,
        "fmnist with two blocks per stage (a black-box source for fmnist)"),
    "fmnist_wide": _Entry(
        lambda shape, n, **o: fmnist_resnet(shape, n, **{"widths": (16, 32, 64, 128),
                                                         "name": "fmnist_resnet_wide", **o}),
        ("widths",) + _RESNET_OPTIONS,
        "fmnist with twice the filters (4x the weights; the long runs' capacity step)"),
    "cnn": _Entry(lambda shape, n, **o: simple_cnn(shape, n, **o), ("widths",),
                  "plain CNN, no residuals or BatchNorm (a black-box source)"),
    "resnet18": _Entry(lambda shape, n, **o: cifar_resnet(18, shape, n, **o), _RESNET_OPTIONS,
                       "CIFAR ResNet-18"),
    "resnet34": _Entry(lambda shape, n, **o: cifar_resnet(34, shape, n, **o), _RESNET_OPTIONS,
                       "CIFAR ResNet-34"),
}
for _depth in (50, 101, 152):
    _REGISTRY[f"resnet{_depth}"] = _Entry(
        lambda shape, n, _d=_depth, **o: application_resnet(_d, shape, n, **o), ("weights",),
        f"keras.applications ResNet-{_depth} (ImageNet stem)")


def names():
    """The registered architecture names, in registration order."""
    return tuple(_REGISTRY)


def describe():
    """``{name: one-line description}`` of every registered architecture."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def _entry(name):
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown model {name!r}. Expected one of: {', '.join(_REGISTRY)} "
            f"(or a path to a .keras file). Received: model={name!r}")
    return _REGISTRY[name]


def backbone_options(name):
    """The keyword options the builder of ``name`` takes."""
    return _entry(name).options


def build_backbone(name, input_shape, num_classes, **options):
    """Builds a registered classifier by name.

    Args:
        name: One of `names()`.
        input_shape: ``(H, W, C)``.
        num_classes: Number of logits.
        **options: Options of that architecture (see `backbone_options`).

    Raises:
        ValueError: For an unknown name, or an option the architecture does
            not take.
    """
    entry = _entry(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(
            f"Model {name!r} does not take the option(s) {', '.join(unknown)}; it takes: "
            f"{', '.join(entry.options) or 'none'}. Received: {options}")
    return entry.build(tuple(input_shape), num_classes, **options)


_STAGE_PATTERN = re.compile(r"^conv([2-5])_block(\d+)_out$")


def stage_layer_names(model):
    """The last block of each ResNet stage conv2_x .. conv5_x, by layer name.

    Raises:
        ValueError: If the model has none of the ``conv{s}_block{n}_out`` layers.
    """
    last = {}
    for layer in model.layers:
        match = _STAGE_PATTERN.match(layer.name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            if block >= last.get(stage, (0, ""))[0]:
                last[stage] = (block, layer.name)
    if not last:
        raise ValueError(
            f"Model {model.name!r} has no layers named conv{{2..5}}_block{{N}}_out, so "
            "its stage outputs cannot be found automatically. Pass stage_layers=[...] "
            "with the names of the layers to pair."
        )
    return [last[s][1] for s in sorted(last)]


