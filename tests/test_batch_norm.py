"""`FusedBatchNormalization` against BatchNorm's formulas in float64 NumPy: the training
output, its gradients, the moving statistics (Keras' biased-variance convention), in float32
and under mixed_bfloat16; inference and the cases it leaves to Keras run Keras' own code."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from centernet.model.batch_norm import FusedBatchNormalization

EPSILON, MOMENTUM = 1e-5, 0.9


def reference(x, gamma, beta, upstream):
    """BatchNorm over N, H, W in float64: output, d loss/d (x, gamma, beta) for
    loss = sum(output * upstream), and the batch's biased variance."""
    mean = x.mean(axis=(0, 1, 2))
    variance = x.var(axis=(0, 1, 2))
    inv = 1.0 / np.sqrt(variance + EPSILON)
    normalised = (x - mean) * inv
    output = gamma * normalised + beta
    d_normalised = upstream * gamma
    d_x = inv * (d_normalised - d_normalised.mean(axis=(0, 1, 2))
                 - normalised * (d_normalised * normalised).mean(axis=(0, 1, 2)))
    d_gamma = (upstream * normalised).sum(axis=(0, 1, 2))
    d_beta = upstream.sum(axis=(0, 1, 2))
    return output, (d_x, d_gamma, d_beta), mean, variance


def _data(seed=0, shape=(4, 5, 6, 3)):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, shape)
    gamma = rng.uniform(0.5, 2.0, shape[-1])
    beta = rng.normal(0.0, 1.0, shape[-1])
    upstream = rng.normal(0.0, 1.0, shape)
    return x, gamma, beta, upstream


def _train_step(layer, x, upstream):
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(output, tf.float32) * upstream)
    grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    return output, grads


@pytest.fixture
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _layer(gamma, beta):
    layer = FusedBatchNormalization(epsilon=EPSILON, momentum=MOMENTUM)
    layer.build((None, None, None, len(gamma)))
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    layer.moving_mean.assign(np.full(len(gamma), 0.5))
    layer.moving_variance.assign(np.full(len(gamma), 2.0))
    return layer


def test_training_matches_the_formulas_in_float32(float32_policy):
    x, gamma, beta, upstream = _data()
    layer = _layer(gamma, beta)
    output, grads = _train_step(layer, x, upstream.astype(np.float32))
    want, want_grads, mean, variance = reference(x, gamma, beta, upstream)
    np.testing.assert_allclose(output.numpy(), want, rtol=1e-4, atol=1e-4)
    for got, expected in zip(grads, want_grads):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(layer.moving_mean.numpy(),
                               0.5 * MOMENTUM + mean * (1 - MOMENTUM), rtol=1e-5)
    # the biased variance, as keras.layers.BatchNormalization averages it (not the op's
    # Bessel-corrected one: 120 values per channel make them differ by 0.8%)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               2.0 * MOMENTUM + variance * (1 - MOMENTUM), rtol=1e-5)


def test_training_under_mixed_bfloat16_stays_in_bfloat16(float32_policy):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x, gamma, beta, upstream = _data(seed=1, shape=(2, 8, 8, 4))
    layer = _layer(gamma, beta)
    assert layer.gamma.dtype == "float32"
    output, grads = _train_step(layer, x, upstream.astype(np.float32))
    assert output.dtype == tf.bfloat16
    # the layer sees x, and its gradient arrives, rounded to bfloat16 (8 bits of mantissa);
    # from there the statistics and the gradient's sums are float32 inside the op
    rounded = lambda a: tf.cast(tf.cast(a, tf.bfloat16), tf.float64).numpy()  # noqa: E731
    want, want_grads, mean, variance = reference(rounded(x), gamma, beta, rounded(upstream))
    np.testing.assert_allclose(output.numpy().astype(np.float64), want, atol=0.02, rtol=0.01)
    for got, expected in zip(grads, want_grads):
        np.testing.assert_allclose(got.numpy().astype(np.float64), expected, atol=0.02,
                                   rtol=0.01)
    np.testing.assert_allclose(layer.moving_mean.numpy(),
                               0.5 * MOMENTUM + mean * (1 - MOMENTUM), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               2.0 * MOMENTUM + variance * (1 - MOMENTUM), rtol=1e-4)


def test_inference_and_unfused_cases_are_keras_own(float32_policy):
    x, gamma, beta, upstream = _data(seed=2)
    fused, plain = _layer(gamma, beta), keras.layers.BatchNormalization(
        epsilon=EPSILON, momentum=MOMENTUM)
    plain.build(x.shape)
    plain.set_weights(fused.get_weights())
    assert [w.path.split("/")[-1] for w in fused.weights] == \
        [w.path.split("/")[-1] for w in plain.weights]
    np.testing.assert_array_equal(fused(x, training=False).numpy(),
                                  plain(x, training=False).numpy())
    # synchronized statistics (sync_bn) take Keras' path: same output, same moving stats
    fused.synchronized = plain.synchronized = True
    np.testing.assert_array_equal(fused(x, training=True).numpy(),
                                  plain(x, training=True).numpy())
    np.testing.assert_array_equal(fused.moving_variance.numpy(),
                                  plain.moving_variance.numpy())


def test_the_model_uses_it_and_a_keras_config_round_trips(float32_policy):
    from centernet.config import ModelConfig
    from centernet.model.build import build_model

    model = build_model(ModelConfig(name="resnet18", input_size=64), 3)
    norms = [layer for layer in model.get_layer("resnet18").layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(layer, FusedBatchNormalization) for layer in norms)
    rebuilt = keras.layers.deserialize(keras.layers.serialize(norms[0]))
    assert isinstance(rebuilt, FusedBatchNormalization)
    assert (rebuilt.epsilon, rebuilt.momentum) == (EPSILON, MOMENTUM)
