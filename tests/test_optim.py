"""The fused Adam and AdamW updates against Adam's formulas in float64 NumPy (Kingma & Ba,
with Keras' epsilon placement and AdamW's decoupled decay), and their variables named as
Keras' own optimizers name them (so checkpoints written before load)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from centernet.config import OptimizerConfig, PrecisionConfig
from centernet.engine.optim import FusedAdam, FusedAdamW, build_optimizer

LR, BETA_1, BETA_2, EPSILON = 1e-2, 0.9, 0.999, 1e-7


def adam_reference(weights, gradients, weight_decay=0.0):
    """`weights` after Adam (AdamW when `weight_decay` > 0) steps on `gradients`, float64."""
    w = weights.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(gradients, start=1):
        w = w - LR * weight_decay * w  # decoupled decay, before the step (Keras' order)
        m = BETA_1 * m + (1 - BETA_1) * g
        v = BETA_2 * v + (1 - BETA_2) * g * g
        alpha = LR * np.sqrt(1 - BETA_2 ** t) / (1 - BETA_1 ** t)
        w = w - alpha * m / (np.sqrt(v) + EPSILON)
    return w


@pytest.mark.parametrize("optimizer_class, weight_decay", [(FusedAdam, 0.0),
                                                            (FusedAdamW, 0.05)])
def test_fused_update_follows_adams_formula(optimizer_class, weight_decay):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 5)).astype(np.float32)
    gradients = [rng.normal(scale=10.0 ** -k, size=(6, 5)).astype(np.float32)
                 for k in range(6)]
    variable = keras.Variable(weights)
    kwargs = {"weight_decay": weight_decay} if weight_decay else {}
    optimizer = optimizer_class(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2,
                                epsilon=EPSILON, **kwargs)
    apply = tf.function(lambda gradient: optimizer.apply_gradients([(gradient, variable)]))
    for gradient in gradients:
        apply(tf.constant(gradient))
    want = adam_reference(weights, gradients, weight_decay)
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == len(gradients)


def test_built_optimizers_are_fused_and_named_as_keras_names_them():
    variables = [keras.Variable(np.ones((3, 2), np.float32), name="kernel")]
    for name, keras_class in (("adam", keras.optimizers.Adam),
                              ("adamw", keras.optimizers.AdamW)):
        built = build_optimizer(OptimizerConfig(name=name), 1e-3, PrecisionConfig())
        assert isinstance(built, (FusedAdam, FusedAdamW))
        plain = keras_class(learning_rate=1e-3)
        built.build(variables)
        plain.build(variables)
        assert [v.path for v in built.variables] == [v.path for v in plain.variables]
