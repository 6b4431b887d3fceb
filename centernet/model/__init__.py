"""CenterNet networks: backbones, upsampling neck, heads."""

from centernet.model.build import build_model

__all__ = ["build_model"]
