"""The network and its loss: backbone, neck and heads; the focal-loss form and the weights of
the loss parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from centernet.config.checks import at_least, choice, fail


PRETRAINED = ("imagenet",)
# ImageNet weights: keras.applications ships ResNet-50's and MobileNetV2's, KerasHub ResNet-18's
PRETRAINED_BACKBONES = ("resnet18", "resnet50", "mobilenetv2")
BACKBONES = ("resnet18", "resnet50", "mobilenetv2")
NECKS = ("deconv", "shortcut")
LOSS_IMPLS = ("stable", "naive", "clamped", "per_image")
DOWN_RATIO = 4


@dataclass
class ModelConfig:
    """Backbone, upsampling neck and heads. The output stride is always 4. `neck`: `deconv`,
    the original CenterNet's three deconvolutions from stride 32, or `shortcut`, the same with
    TTFNet's shortcuts adding the backbone's stride-16, 8 and 4 features on the way up.
    `sync_bn`: BatchNormalization takes its batch statistics over all replicas of a
    distributed run (the global batch) instead of each replica's own share. `preset`: where
    `model.pretrained=imagenet` loads ResNet-18's weights from KerasHub, a preset name
    (default `resnet_18_imagenet`, downloaded once) or a local preset folder. `input_size`
    null: chosen from the training split's object sizes when the run starts
    (`centernet/engine/data_choices.py`)."""

    # backbone: resnet18, resnet50 or mobilenetv2
    name: str = "resnet18"
    # network input side (a multiple of 32); null: chosen from the data's object sizes
    input_size: Optional[int] = 512
    # deconv: three deconvolutions from stride 32; shortcut: adding stride 16, 8, 4 features
    neck: str = "deconv"
    # the neck's channels from stride 32 to 4
    neck_channels: List[int] = field(default_factory=lambda: [256, 128, 64])
    # channels of each head's 3x3 convolution
    head_conv: int = 64
    # the heatmap head's initial bias (-2.19: a prior of 0.1)
    heatmap_bias: float = -2.19
    # a backbone weights file (.weights.h5 or Keras' .h5), offline
    weights: Optional[str] = None
    # imagenet: ImageNet weights for the backbone (downloaded once)
    pretrained: Optional[str] = None
    # resnet18's KerasHub preset: a name (default resnet_18_imagenet) or a local folder
    preset: Optional[str] = None
    # BatchNorm statistics over all replicas (the global batch) instead of each one's
    sync_bn: bool = False

    def __post_init__(self) -> None:
        choice("model.name", self.name, BACKBONES)
        choice("model.neck", self.neck, NECKS)
        if self.pretrained is not None:
            choice("model.pretrained", self.pretrained, PRETRAINED)
            if self.name not in PRETRAINED_BACKBONES:
                fail("model.pretrained", self.pretrained,
                      f"backbone {self.name} has no ImageNet weights; "
                      f"choose model.name={' or model.name='.join(PRETRAINED_BACKBONES)}, or "
                      f"pass model.weights=PATH")
        if self.input_size is not None and (self.input_size < 64 or self.input_size % 32):
            fail("model.input_size", self.input_size,
                  "must be a multiple of 32 and at least 64 (e.g. 128, 256, 512)")
        if len(self.neck_channels) != 3 or min(self.neck_channels) < 1:
            fail("model.neck_channels", list(self.neck_channels),
                  "must be three positive channel counts (stride 32 -> 4), e.g. [256, 128, 64]")
        at_least("model.head_conv", self.head_conv, 1)


@dataclass
class LossConfig:
    """Focal-loss implementation and the weights of the three loss parts."""

    # focal-loss form: stable (logit space), naive, clamped (the original's) or per_image
    impl: str = "stable"
    # focal loss' alpha
    alpha: float = 2.0
    # focal loss' beta, the weight (1 - z)^beta of negatives near a centre
    beta: float = 4.0
    # weight of the heatmap's focal loss
    heatmap_weight: float = 1.0
    # weight of the size's L1 loss
    wh_weight: float = 0.1
    # weight of the offset's L1 loss
    offset_weight: float = 1.0
    # weight of the GIoU loss (0: logged, not trained on)
    giou_weight: float = 0.0

    def __post_init__(self) -> None:
        choice("loss.impl", self.impl, LOSS_IMPLS)
        for key in ("alpha", "beta", "heatmap_weight", "wh_weight", "offset_weight",
                    "giou_weight"):
            at_least(f"loss.{key}", getattr(self, key), 0.0)
