"""Backbones: image `[B, S, S, 3]` float in `[0, 255]` -> stride-32 feature map.

`resnet18` is the original CenterNet's (torchvision layout: 7x7 stem, four stages of two basic
blocks); `resnet50` and `mobilenetv2` come from `keras.applications` without their classifier,
each behind the `preprocess_input` its ImageNet weights were trained with (ResNet-50: RGB -> BGR
and the ImageNet mean subtracted; MobileNetV2: scaled to [-1, 1]).

All train from scratch unless `model.pretrained=imagenet` (`resnet50`, `mobilenetv2`: Keras
downloads its ImageNet weights once into `~/.keras/models/`, or `$KERAS_HOME/models/`;
`resnet18`: KerasHub's `resnet_18_imagenet`, copied into it by `keras_hub_weights.py`) or
`model.weights` names a weights file.
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import keras
from keras import layers

from centernet.config import PRETRAINED_BACKBONES  # noqa: F401  (re-exported)
from centernet.model.batch_norm import batch_norm

# The origin of each ImageNet weights file Keras fetches for PRETRAINED_BACKBONES (it is named
# after its URL's last part) is given by `imagenet_weights_file`.
_MOBILENET_V2_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
                     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{}_no_top.h5")
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)  # trained input sizes; others get 224's weights
_RESNET50_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def imagenet_weights_file(name: str, input_size: int) -> Tuple[str, str]:
    """`(file name, URL)` of the ImageNet weights Keras fetches for backbone `name` at
    `input_size` (its cache holds them as `~/.keras/models/<file name>`)."""
    if name == "resnet50":
        url = _RESNET50_URL
    elif name == "mobilenetv2":
        url = _MOBILENET_V2_URL.format(input_size if input_size in _MOBILENET_V2_SIZES else 224)
    else:
        raise ValueError(f"backbone {name} has no ImageNet weights in keras.applications")
    return url.rsplit("/", 1)[1], url


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    """Conv (no bias) -> BatchNorm -> optional ReLU."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters: int, stride: int, name: str):
    """ResNet basic block: two 3x3 convs and a (projected when needed) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, stride, f"{name}_down", relu=False)
    y = conv_bn(x, filters, 3, stride, f"{name}_1")
    y = conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet18(inputs, pretrained: Optional[str] = None) -> keras.Model:
    """ResNet-18 to stride 32 (512 channels), inputs normalised as ImageNet models expect."""
    if pretrained:
        raise ValueError("resnet18's ImageNet weights come from KerasHub: see "
                         "centernet.model.keras_hub_weights")
    x = layers.Normalization(mean=[123.675, 116.28, 103.53],
                             variance=[58.395 ** 2, 57.12 ** 2, 57.375 ** 2],
                             name="normalize")(inputs)
    x = conv_bn(x, 64, 7, 2, "stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (filters, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        x = basic_block(x, filters, stride, f"stage{stage}_block1")
        x = basic_block(x, filters, 1, f"stage{stage}_block2")
    return keras.Model(inputs, x, name="resnet18")


def _preprocess_resnet50(x):
    return keras.applications.resnet.preprocess_input(x)


def _preprocess_mobilenetv2(x):
    return keras.applications.mobilenet_v2.preprocess_input(x)


def resnet50(inputs, pretrained: Optional[str] = None) -> keras.Model:
    """keras.applications ResNet-50 (caffe-style `preprocess_input`), `pretrained` weights
    ("imagenet" or None) fetched by Keras."""
    x = _preprocess_resnet50(inputs)
    base = keras.applications.ResNet50(include_top=False, weights=pretrained,
                                       input_shape=tuple(inputs.shape[1:]))
    return keras.Model(inputs, base(x), name="resnet50")


def mobilenetv2(inputs, pretrained: Optional[str] = None) -> keras.Model:
    """keras.applications MobileNetV2 (inputs scaled to [-1, 1]), `pretrained` weights
    ("imagenet" or None) fetched by Keras. Without a classifier the weights fit any input
    size; at sizes ImageNet models were not trained at, Keras takes the 224 px ones."""
    x = _preprocess_mobilenetv2(inputs)
    size = inputs.shape[1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*will be loaded as the default")
        base = keras.applications.MobileNetV2(include_top=False, weights=pretrained,
                                              input_shape=tuple(inputs.shape[1:]),
                                              name=f"mobilenetv2_1.00_{size}")
    return keras.Model(inputs, base(x), name="mobilenetv2")


BACKBONE_BUILDERS = {"resnet18": resnet18, "resnet50": resnet50, "mobilenetv2": mobilenetv2}

# The layers whose outputs are each backbone's stride 4, 8, 16 and 32 features (the last
# layer at each resolution; MobileNetV2's are its inverted-residual sums).
FEATURE_TAPS = {
    "resnet18": ("stage1_block2_out", "stage2_block2_out", "stage3_block2_out",
                 "stage4_block2_out"),
    "resnet50": ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    "mobilenetv2": ("block_2_add", "block_5_add", "block_12_add", "out_relu"),
}
_PREPROCESS = {"resnet50": _preprocess_resnet50, "mobilenetv2": _preprocess_mobilenetv2}


def feature_pyramid(backbone: keras.Model, name: str) -> keras.Model:
    """A model sharing `backbone`'s layers (and weights) that returns its stride 4, 8, 16 and
    32 feature maps, `[B, S/4, S/4, c2]` ... `[B, S/32, S/32, c5]`, for necks with shortcuts.
    Named like the backbone, so `model.get_layer(name)` finds it either way."""
    nested = [layer for layer in backbone.layers if isinstance(layer, keras.Model)]
    inner = nested[0] if nested else backbone
    taps = keras.Model(inner.inputs, [inner.get_layer(tap).output for tap in FEATURE_TAPS[name]],
                       name=inner.name)
    if not nested:
        return taps
    image = backbone.inputs[0]
    return keras.Model(image, taps(_PREPROCESS[name](image)), name=backbone.name)
