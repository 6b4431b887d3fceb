"""Backbones: image `[B, S, S, 3]` float in `[0, 255]` -> stride-32 feature map.

`resnet18` is the original CenterNet's (torchvision layout: 7x7 stem, four stages of two basic
blocks); `resnet50` and `mobilenetv2` come from `keras.applications` without their classifier.
All train from scratch unless `model.weights` names a weights file (nothing is downloaded).
"""

from __future__ import annotations

import keras
from keras import layers

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    """Conv (no bias) -> BatchNorm -> optional ReLU."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters: int, stride: int, name: str):
    """ResNet basic block: two 3x3 convs and a (projected when needed) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, stride, f"{name}_down", relu=False)
    y = conv_bn(x, filters, 3, stride, f"{name}_1")
    y = conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet18(inputs) -> keras.Model:
    """ResNet-18 to stride 32 (512 channels), inputs normalised as ImageNet models expect."""
    x = layers.Normalization(mean=[123.675, 116.28, 103.53],
                             variance=[58.395 ** 2, 57.12 ** 2, 57.375 ** 2],
                             name="normalize")(inputs)
    x = conv_bn(x, 64, 7, 2, "stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (filters, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        x = basic_block(x, filters, stride, f"stage{stage}_block1")
        x = basic_block(x, filters, 1, f"stage{stage}_block2")
    return keras.Model(inputs, x, name="resnet18")


def resnet50(inputs) -> keras.Model:
    x = keras.applications.resnet.preprocess_input(inputs)
    base = keras.applications.ResNet50(include_top=False, weights=None,
                                       input_shape=tuple(inputs.shape[1:]))
    return keras.Model(inputs, base(x), name="resnet50")


def mobilenetv2(inputs) -> keras.Model:
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    base = keras.applications.MobileNetV2(include_top=False, weights=None,
                                          input_shape=tuple(inputs.shape[1:]))
    return keras.Model(inputs, base(x), name="mobilenetv2")


BACKBONE_BUILDERS = {"resnet18": resnet18, "resnet50": resnet50, "mobilenetv2": mobilenetv2}
