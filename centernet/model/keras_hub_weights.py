"""ImageNet weights for the ResNet-18 backbone from KerasHub (`model.pretrained=imagenet`).

`keras.applications` has no ResNet-18; KerasHub, Keras' maintained model hub, publishes
`resnet_18_imagenet` (torchvision's ImageNet ResNet-18, the backbone of the original
CenterNet's ResNet-18 model). Our ResNet-18 (`backbones.resnet18`) keeps its own layers, so
the rest of the model and every checkpoint stay as they are; its weights are copied in from
KerasHub's `ResNetBackbone`, layer for layer by the two naming schemes:

    ours                          KerasHub
    stem_conv / stem_bn           conv1_conv / conv1_bn
    stage{s}_block{b}_{k}_conv    stack{s-1}_block{b-1}_{k}_conv   (k = 1, 2; _bn likewise)
    stage{s}_block{b}_down_conv   stack{s-1}_block{b-1}_0_conv     (the projection shortcut)

Both normalise inputs the same way (ImageNet mean and standard deviation of [0, 255] pixels,
KerasHub's as `x / 255` then the [0, 1] statistics).

`model.preset` names where KerasHub reads the preset: a preset name (default
`resnet_18_imagenet`, which KerasHub downloads once from Kaggle into its cache) or a local
preset folder (what `Backbone.save_to_preset` writes, or a copy of KerasHub's cache), for
machines without network.
"""

from __future__ import annotations

import re
from typing import Dict

import keras

RESNET18_PRESET = "resnet_18_imagenet"
_OURS = re.compile(r"^stage(\d)_block(\d)_(1|2|down)_(conv|bn)$")


def keras_hub_name(layer_name: str) -> str:
    """KerasHub's name of our ResNet-18 layer `layer_name` (a conv or BatchNorm layer)."""
    if layer_name in ("stem_conv", "stem_bn"):
        return layer_name.replace("stem", "conv1")
    match = _OURS.match(layer_name)
    if not match:
        raise ValueError(f"{layer_name} is not a ResNet-18 conv or BatchNorm layer")
    stage, block, part, kind = match.groups()
    part = "0" if part == "down" else part
    return f"stack{int(stage) - 1}_block{int(block) - 1}_{part}_{kind}"


def load_keras_hub_weights(backbone: keras.Model, preset: str) -> Dict[str, str]:
    """Copy the weights of KerasHub's ResNet-18 `preset` into `backbone` (ours), every weight
    of every conv and BatchNorm layer, exactly. Returns our layer name -> KerasHub's.

    Raises:
        ImportError: KerasHub is not installed.
        ValueError: the preset's backbone is not a ResNet-18 (a layer is missing, left over or
            of another shape); the message names the layer.
        (KerasHub's own errors for a preset it cannot find or download pass through.)
    """
    import keras_hub

    hub = keras_hub.models.Backbone.from_preset(preset)
    hub_layers = {layer.name: layer for layer in hub.layers if layer.weights}
    copied: Dict[str, str] = {}
    for layer in backbone.layers:
        if not layer.weights or not isinstance(layer, (keras.layers.Conv2D,
                                                       keras.layers.BatchNormalization)):
            continue
        name = keras_hub_name(layer.name)
        if name not in hub_layers:
            raise ValueError(f"preset {preset} has no layer {name} (for our {layer.name}): "
                             f"not a ResNet-18 backbone")
        source = hub_layers[name].get_weights()
        target = layer.get_weights()
        if [w.shape for w in source] != [w.shape for w in target]:
            raise ValueError(f"preset {preset}'s {name} has weights of shapes "
                             f"{[w.shape for w in source]}, our {layer.name} "
                             f"{[w.shape for w in target]}: not a ResNet-18 backbone")
        layer.set_weights(source)
        copied[layer.name] = name
    left_over = sorted(set(hub_layers) - set(copied.values()))
    if left_over:
        raise ValueError(f"preset {preset} has layers ResNet-18 does not "
                         f"({', '.join(left_over[:4])}"
                         f"{', ...' if len(left_over) > 4 else ''}): not a ResNet-18 backbone")
    return copied
