"""Deployable files of a trained detector: SavedModel, LiteRT (TFLite) and ONNX."""
