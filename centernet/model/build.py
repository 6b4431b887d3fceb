"""`build_model(cfg, num_classes)`: backbone -> upsampling neck (`model.neck`) -> CenterNet heads.

The model takes `[B, S, S, 3]` uint8 (or float `[0, 255]`) RGB images and returns a dict of
float32 tensors at stride 4 (`S / 4`): `heatmap` `[B, S/4, S/4, C]` class logits, `wh`
`[B, S/4, S/4, 2]` box size and `reg` `[B, S/4, S/4, 2]` centre offset, both in output pixels.
Heads compute in float32 whatever the mixed-precision policy, so the loss sees float32, unless
`head_dtype=None`: then they compute in the policy's dtype (`precision.heads=compute`).

The backbone starts from `model.weights` (a file) if set, else from ImageNet weights with
`model.pretrained=imagenet` (fetched by Keras, `centernet.model.backbones`; ResNet-18's from
KerasHub, `centernet.model.keras_hub_weights`), else from scratch.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import Sequence

import keras
from keras import layers

from centernet.config import ModelConfig
from centernet.errors import CheckpointError
from centernet.model.backbones import (BACKBONE_BUILDERS, feature_pyramid,
                                       imagenet_weights_file)
from centernet.model.batch_norm import batch_norm
from centernet.model.keras_hub_weights import RESNET18_PRESET, load_keras_hub_weights


def _upsample(x, filters: int, index: int):
    """A 4x4 stride-2 transposed conv, BN, ReLU: twice the resolution."""
    x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                               kernel_initializer="he_normal", name=f"neck_deconv{index}")(x)
    x = batch_norm(f"neck_bn{index}")(x)
    return layers.ReLU(name=f"neck_relu{index}")(x)


def upsampling_neck(x, channels):
    """The original CenterNet's: three upsamplings from stride 32 to stride 4 (`model.neck=
    deconv`). `x`: `[B, S/32, S/32, c]` -> `[B, S/4, S/4, channels[-1]]`."""
    for index, filters in enumerate(channels, start=1):
        x = _upsample(x, filters, index)
    return x


def shortcut_neck(features: Sequence, channels):
    """TTFNet's (Liu et al. 2020) shortcuts (`model.neck=shortcut`): the same three
    upsamplings, each followed by adding the backbone's feature map of the new stride (16, 8,
    then 4) through a 3x3 conv, so the stride-4 output sees fine detail and semantics alike.

    `features`: the backbone's `[B, S/4, S/4, c2]`, `S/8`, `S/16`, `S/32` maps (`feature_pyramid`)
    -> `[B, S/4, S/4, channels[-1]]`."""
    *finer, x = features
    for index, (filters, skip) in enumerate(zip(channels, reversed(finer)), start=1):
        x = _upsample(x, filters, index)
        shortcut = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal",
                                 name=f"neck_shortcut{index}")(skip)
        x = layers.Add(name=f"neck_add{index}")([x, shortcut])
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


def _keras_hub_resnet18(cfg: ModelConfig, inputs) -> keras.Model:
    """Our ResNet-18 with the ImageNet weights of KerasHub's preset `model.preset`; a missing
    KerasHub, an unreachable or wrong preset becomes a one-line `CheckpointError`."""
    backbone = BACKBONE_BUILDERS["resnet18"](inputs)
    preset = cfg.preset or RESNET18_PRESET
    key = f"model.pretrained={cfg.pretrained}"
    try:
        load_keras_hub_weights(backbone, preset)
    except ImportError as error:
        raise CheckpointError(
            f"{key}: ResNet-18's ImageNet weights come from KerasHub ({RESNET18_PRESET}), "
            f"which is not installed: pip install keras-hub (or the package's [pretrained] "
            f"extra), or pass model.weights=PATH") from error
    except ValueError as error:
        raise CheckpointError(f"model.preset={preset}: {_one_line(error)}") from error
    except Exception as error:  # pylint: disable=broad-except  (KerasHub's download errors)
        raise CheckpointError(
            f"{key}: KerasHub could not load the preset {preset} ({_one_line(error)}); without "
            f"network, copy a saved preset folder (KerasHub's cache, or Backbone.save_to_preset) "
            f"to this machine and pass model.preset=DIR") from error
    return backbone


def _pretrained_backbone(cfg: ModelConfig, inputs) -> keras.Model:
    """The backbone with its `cfg.pretrained` weights, which Keras fetches into its cache
    (ResNet-18's: KerasHub); a failed download or an unreadable cached file becomes a
    one-line `CheckpointError`."""
    if cfg.name == "resnet18":
        return _keras_hub_resnet18(cfg, inputs)
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
    if cfg.neck == "shortcut":
        features = shortcut_neck(feature_pyramid(backbone, cfg.name)(image), cfg.neck_channels)
    else:
        features = upsampling_neck(backbone(image), cfg.neck_channels)
    outputs = {
        "heatmap": head(features, "heatmap", num_classes, cfg.head_conv, cfg.heatmap_bias,
                        head_dtype),
        "wh": head(features, "wh", 2, cfg.head_conv, dtype=head_dtype),
        "reg": head(features, "reg", 2, cfg.head_conv, dtype=head_dtype),
    }
    model = keras.Model(inputs, outputs, name=f"centernet_{cfg.name}")
    if cfg.sync_bn:
        synchronize_batch_norm(model)
    return model


def synchronize_batch_norm(layer: keras.layers.Layer) -> None:
    """Make every BatchNormalization inside `layer` take its training statistics over all
    replicas (Keras' `synchronized=True`, read when the layer is called)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.synchronized = True
    for inner in getattr(layer, "layers", []):
        synchronize_batch_norm(inner)
