"""`build_model(cfg, num_classes)`: backbone -> upsampling neck -> CenterNet heads.

The model takes `[B, S, S, 3]` uint8 (or float `[0, 255]`) RGB images and returns a dict of
float32 tensors at stride 4 (`S / 4`): `heatmap` `[B, S/4, S/4, C]` class logits, `wh`
`[B, S/4, S/4, 2]` box size and `reg` `[B, S/4, S/4, 2]` centre offset, both in output pixels.
Heads compute in float32 whatever the mixed-precision policy, so the loss sees float32, unless
`head_dtype=None`: then they compute in the policy's dtype (`precision.heads=compute`).

The backbone starts from `model.weights` (a file) if set, else from ImageNet weights with
`model.pretrained=imagenet` (fetched by Keras, `centernet.model.backbones`), else from scratch.
"""

from __future__ import annotations

import os
import re
import traceback

import keras
from keras import layers

from centernet.config import ModelConfig
from centernet.errors import CheckpointError
from centernet.model.backbones import (BACKBONE_BUILDERS, BN_EPSILON, BN_MOMENTUM,
                                       imagenet_weights_file)


def upsampling_neck(x, channels):
    """Three 4x4 stride-2 transposed convs (BN, ReLU): stride 32 -> stride 4."""
    for index, filters in enumerate(channels, start=1):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer="he_normal", name=f"neck_deconv{index}")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                      name=f"neck_bn{index}")(x)
        x = layers.ReLU(name=f"neck_relu{index}")(x)
    return x


def head(x, name: str, channels: int, head_conv: int, bias: float = 0.0,
         dtype: str | None = "float32"):
    """3x3 conv (ReLU) -> 1x1 conv with `channels` outputs, the last layer in `dtype` (None:
    the mixed-precision policy's)."""
    x = layers.Conv2D(head_conv, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    return layers.Conv2D(channels, 1, name=f"{name}_out", dtype=dtype,
                         bias_initializer=keras.initializers.Constant(bias))(x)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _raised_in(error: BaseException, function: str) -> bool:
    """Whether `function` (a function name) is on `error`'s traceback."""
    return any(frame.name == function for frame in traceback.extract_tb(error.__traceback__))


def _pretrained_backbone(cfg: ModelConfig, inputs) -> keras.Model:
    """The backbone with its `cfg.pretrained` weights, which Keras fetches into its cache; a
    failed download or an unreadable cached file becomes a one-line `CheckpointError`."""
    file_name, url = imagenet_weights_file(cfg.name, cfg.input_size)
    try:
        return BACKBONE_BUILDERS[cfg.name](inputs, cfg.pretrained)
    except Exception as error:  # pylint: disable=broad-except  (narrowed below)
        key = f"model.pretrained={cfg.pretrained}"
        reason = re.sub(r"^URL fetch failure on \S+: (None -- )?", "", _one_line(error))
        if _raised_in(error, "get_file"):
            raise CheckpointError(
                f"{key}: could not download the ImageNet weights of {cfg.name} from {url} "
                f"({reason}); without network, fetch that file elsewhere and pass "
                f"model.weights=PATH") from error
        if _raised_in(error, "load_weights"):
            raise CheckpointError(
                f"{key}: the cached ImageNet weights file {file_name} of {cfg.name} does not "
                f"load ({reason}); delete it from the Keras cache (~/.keras/models/ or "
                f"$KERAS_HOME/models/) to download it again, or pass model.weights=PATH"
            ) from error
        raise


def _load_backbone_weights(backbone: keras.Model, path: str) -> None:
    """Load `path` into `backbone`: a `.weights.h5` file saved from such a backbone, or a
    Keras 2 style `.h5` file (as keras.applications downloads) into the keras.applications
    model inside it."""
    if not os.path.exists(path):
        raise CheckpointError(f"model.weights={path!r}: no such file")
    target = backbone
    if path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5"):
        nested = [layer for layer in backbone.layers if isinstance(layer, keras.Model)]
        target = nested[0] if nested else backbone
    try:
        target.load_weights(path)
    except Exception as error:  # Keras raises ValueError/KeyError on mismatched files
        raise CheckpointError(f"model.weights={path!r} does not fit backbone "
                              f"{backbone.name}: {_one_line(error)}") from error


def build_model(cfg: ModelConfig, num_classes: int, initial_weights: bool = True,
                head_dtype: str | None = "float32") -> keras.Model:
    """The CenterNet Keras model (module docstring), named after its backbone.

    `initial_weights=False` builds the backbone from scratch, ignoring `model.weights` and
    `model.pretrained`, for a model whose weights all come from a checkpoint next.
    `head_dtype` is the heads' last layers' dtype, None for the mixed-precision policy's."""
    inputs = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    image = layers.Activation("linear", dtype="float32", name="to_float")(inputs)
    backbone_inputs = keras.Input((cfg.input_size, cfg.input_size, 3))
    if initial_weights and cfg.pretrained and not cfg.weights:
        backbone = _pretrained_backbone(cfg, backbone_inputs)
    else:
        backbone = BACKBONE_BUILDERS[cfg.name](backbone_inputs)
    if initial_weights and cfg.weights:
        _load_backbone_weights(backbone, cfg.weights)
    features = upsampling_neck(backbone(image), cfg.neck_channels)
    outputs = {
        "heatmap": head(features, "heatmap", num_classes, cfg.head_conv, cfg.heatmap_bias,
                        head_dtype),
        "wh": head(features, "wh", 2, cfg.head_conv, dtype=head_dtype),
        "reg": head(features, "reg", 2, cfg.head_conv, dtype=head_dtype),
    }
    return keras.Model(inputs, outputs, name=f"centernet_{cfg.name}")
