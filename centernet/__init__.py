"""CenterNet object detection on TensorFlow 2 / Keras 3.

Importing the package is cheap: TensorFlow is only imported by the modules that need it
(`centernet.data`, `centernet.model`, `centernet.losses`, ...), never by `centernet.config`.
"""

__version__ = "0.1.0"
