"""CenterNet object detection on TensorFlow 2 / Keras 3.

Importing the package is cheap: TensorFlow is only imported by the modules that need it
(`centernet.data`, `centernet.model`, `centernet.losses`, ...), never by `centernet.config`.

Importing it also sets `TF_CPU_ALLOCATOR_USE_BFC=true` (unless it is set already): TensorFlow's
pooled CPU allocator, which keeps freed buffers for reuse instead of returning them to the
system and taking fresh zeroed pages (page faults) for the next step's tensors. It takes
effect when imported before TensorFlow allocates its first tensor, as every script here does.
Measured side by side (docs/results.md, "Time to a good detector"): the ResNet-18 train step
and target rendering run faster with it; `TF_CPU_ALLOCATOR_USE_BFC=false` in the environment
turns it off, except where TensorFlow runs oneDNN (its default on CPUs with AVX-512 VNNI, BF16
or AMX): there its oneDNN CPU allocator pools anyway.
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

__version__ = "0.1.0"
