"""Classifiers whose stage outputs (conv2_x .. conv5_x) carry known layer names.

Every builder returns a functional ``keras.Model`` from raw ``[0, 1]`` pixels to
logits (no softmax), with input normalisation inside the model, and names the
last block of stage ``s`` as ``conv{s}_block{n}_out`` like
``keras.applications`` does, so `stage_layer_names` finds them for all.

Built-in architectures are registered by name (`names`, `build_backbone`,
`backbone_options`); ``TrainConfig.model`` and ``--model`` take these names.
"""

from atalp_keras.backbones.applications import application_resnet
from atalp_keras.backbones.cnn import simple_cnn
from atalp_keras.backbones.layers import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_CAFFE_MEAN_BGR,
                                          FusedBatchNormalization, PixelNormalization)
from atalp_keras.backbones.registry import (backbone_options, build_backbone, describe, names,
                                            stage_layer_names)
from atalp_keras.backbones.resnet import (basic_block, basic_resnet, cifar_resnet,
                                          fmnist_resnet, tiny_resnet)

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "FusedBatchNormalization", "IMAGENET_CAFFE_MEAN_BGR",
    "PixelNormalization",
    "application_resnet", "backbone_options", "basic_block", "basic_resnet",
    "build_backbone", "cifar_resnet", "describe", "fmnist_resnet", "names", "simple_cnn",
    "stage_layer_names", "tiny_resnet",
]
