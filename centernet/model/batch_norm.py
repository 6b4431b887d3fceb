"""BatchNormalization as one fused TensorFlow op in training: `FusedBatchNormalization`.

Keras 3's `BatchNormalization` normalises with a dozen separate ops (mean, squared
difference, subtract, multiply, ...) after casting a bfloat16 input up to float32 and back,
and its gradient is as many again. On a CPU those ops are memory-bound passes over every
feature map: profiled on a 2-core AMX Xeon (ResNet-18, 256 px, batch 8, mixed_bfloat16,
`python scripts/benchmark.py profile`), they and their casts held more time than every
convolution's backward pass. `tf.nn.fused_batch_norm` does the same normalisation in one
op (`FusedBatchNormV3`, oneDNN's where TensorFlow has it) on the bfloat16 input itself,
accumulating its statistics in float32, and its gradient in one more.

The layer keeps Keras' variables, names, arguments and semantics (the moving variance
averages the batch's biased variance, as Keras does), so checkpoints, weight files and
KerasHub presets load into it unchanged. Only training on the TensorFlow backend takes the
fused path; inference (evaluation, export) and the cases the fused op does not cover
(`synchronized` statistics across replicas, renorm, masks, an axis other than the last of a
4-D input) run Keras' own `call`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="centernet")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step is one `FusedBatchNormV3`
    (module docstring). Input `[B, H, W, C]` in the layer's compute dtype (bfloat16 under
    `mixed_bfloat16`), statistics and variables in float32, output in the compute dtype."""

    def _fused(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fused(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
        y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32), epsilon=self.epsilon,
            is_training=True)[:3]
        # the op returns the Bessel-corrected variance for the moving average; Keras
        # averages the biased one (the variance it normalised with): n values per channel
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        variance = unbiased_variance * ((count - 1.0) / tf.maximum(count, 1.0))
        self.moving_mean.assign(self.moving_mean * self.momentum
                                + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1.0 - self.momentum))
        return y


def batch_norm(name: str) -> FusedBatchNormalization:
    """The project's BatchNormalization: the original CenterNet's epsilon and momentum."""
    return FusedBatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)
