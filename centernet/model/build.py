"""`build_model(cfg, num_classes)`: backbone -> upsampling neck -> CenterNet heads.

The model takes `[B, S, S, 3]` uint8 (or float `[0, 255]`) RGB images and returns a dict of
float32 tensors at stride 4 (`S / 4`): `heatmap` `[B, S/4, S/4, C]` class logits, `wh`
`[B, S/4, S/4, 2]` box size and `reg` `[B, S/4, S/4, 2]` centre offset, both in output pixels.
Heads compute in float32 whatever the mixed-precision policy, so the loss sees float32.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from centernet.config import ModelConfig
from centernet.errors import CheckpointError
from centernet.model.backbones import BACKBONE_BUILDERS, BN_EPSILON, BN_MOMENTUM


def upsampling_neck(x, channels):
    """Three 4x4 stride-2 transposed convs (BN, ReLU): stride 32 -> stride 4."""
    for index, filters in enumerate(channels, start=1):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer="he_normal", name=f"neck_deconv{index}")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                      name=f"neck_bn{index}")(x)
        x = layers.ReLU(name=f"neck_relu{index}")(x)
    return x


def head(x, name: str, channels: int, head_conv: int, bias: float = 0.0):
    """3x3 conv (ReLU) -> 1x1 conv with `channels` outputs, the last layer in float32."""
    x = layers.Conv2D(head_conv, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    return layers.Conv2D(channels, 1, name=f"{name}_out", dtype="float32",
                         bias_initializer=keras.initializers.Constant(bias))(x)


def _load_backbone_weights(backbone: keras.Model, path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"model.weights={path!r}: no such file")
    try:
        backbone.load_weights(path)
    except Exception as error:  # Keras raises ValueError/KeyError on mismatched files
        raise CheckpointError(f"model.weights={path!r} does not fit backbone "
                              f"{backbone.name}: {error}") from error


def build_model(cfg: ModelConfig, num_classes: int) -> keras.Model:
    """The CenterNet Keras model (module docstring), named after its backbone."""
    inputs = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    image = layers.Activation("linear", dtype="float32", name="to_float")(inputs)
    backbone = BACKBONE_BUILDERS[cfg.name](keras.Input((cfg.input_size, cfg.input_size, 3)))
    if cfg.weights:
        _load_backbone_weights(backbone, cfg.weights)
    features = upsampling_neck(backbone(image), cfg.neck_channels)
    outputs = {
        "heatmap": head(features, "heatmap", num_classes, cfg.head_conv, cfg.heatmap_bias),
        "wh": head(features, "wh", 2, cfg.head_conv),
        "reg": head(features, "reg", 2, cfg.head_conv),
    }
    return keras.Model(inputs, outputs, name=f"centernet_{cfg.name}")
