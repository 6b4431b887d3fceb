"""Model construction: stride-4 float32 heads, the heatmap prior, backbones, user weights."""

import keras
import numpy as np
import pytest

from centernet.config import ModelConfig
from centernet.errors import CheckpointError
from centernet.model import build_model


def _outputs(model, size, batch=2):
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype(np.uint8)
    return model(images, training=False)


def test_resnet18_heads_are_stride_4_float32_with_the_focal_prior():
    model = build_model(ModelConfig(name="resnet18", input_size=64), num_classes=5)
    out = _outputs(model, 64)
    assert out["heatmap"].shape == (2, 16, 16, 5)
    assert out["wh"].shape == out["reg"].shape == (2, 16, 16, 2)
    assert all(t.dtype.name == "float32" for t in out.values())
    bias = model.get_layer("heatmap_out").bias.numpy()
    np.testing.assert_allclose(bias, -2.19)  # sigmoid(-2.19) = 0.1, the CenterNet prior
    assert model.get_layer("neck_deconv1").filters == 256
    assert model.get_layer("heatmap_conv").filters == 64


def test_heads_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(ModelConfig(name="resnet18", input_size=64, neck_channels=[16, 16, 16],
                                        head_conv=8), num_classes=3)
        out = _outputs(model, 64)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(t.dtype.name == "float32" for t in out.values())


@pytest.mark.parametrize("policy, dtype", [("mixed_bfloat16", "bfloat16"),
                                           ("mixed_float16", "float16")])
def test_heads_follow_the_policy_with_precision_heads_compute(policy, dtype):
    """precision.heads=compute (head_dtype=None): the outputs, and so the loss, are in the
    policy's compute dtype, as in a model built without a float32 output layer."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(ModelConfig(name="resnet18", input_size=64, neck_channels=[16, 16, 16],
                                        head_conv=8), num_classes=3, head_dtype=None)
        out = _outputs(model, 64)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(t.dtype.name == dtype for t in out.values())


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_keras_application_backbones_build_at_stride_4(name):
    model = build_model(ModelConfig(name=name, input_size=64, neck_channels=[32, 16, 16],
                                    head_conv=8), num_classes=2)
    assert _outputs(model, 64, batch=1)["heatmap"].shape == (1, 16, 16, 2)


def test_backbone_weights_file_is_loaded(tmp_path):
    config = ModelConfig(name="resnet18", input_size=64, neck_channels=[16, 16, 16], head_conv=8)
    source = build_model(config, num_classes=2)
    path = tmp_path / "backbone.weights.h5"
    source.get_layer("resnet18").save_weights(path)
    config.weights = str(path)
    loaded = build_model(config, num_classes=2)
    for a, b in zip(source.get_layer("resnet18").weights, loaded.get_layer("resnet18").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_weights_file_is_named(tmp_path):
    config = ModelConfig(name="resnet18", input_size=64, weights=str(tmp_path / "nope.h5"))
    with pytest.raises(CheckpointError, match="nope.h5"):
        build_model(config, num_classes=2)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2"])
@pytest.mark.parametrize("size", [64, 160])
def test_shortcut_neck_output_shapes_for_every_backbone_and_input_size(name, size):
    """model.neck=shortcut: the backbone's stride 16, 8 and 4 features join the upsampling,
    and the heads stay at stride 4 for any input size that is a multiple of 32."""
    model = build_model(ModelConfig(name=name, input_size=size, neck="shortcut",
                                    neck_channels=[32, 24, 16], head_conv=8), num_classes=3)
    out = _outputs(model, size, batch=1)
    assert out["heatmap"].shape == (1, size // 4, size // 4, 3)
    assert out["wh"].shape == out["reg"].shape == (1, size // 4, size // 4, 2)
    for index, (filters, stride) in enumerate([(32, 16), (24, 8), (16, 4)], start=1):
        shortcut = model.get_layer(f"neck_shortcut{index}")
        assert shortcut.output.shape == (None, size // stride, size // stride, filters)


def test_shortcut_neck_shares_the_backbone_weights_and_uses_the_finer_features():
    """The pyramid is the backbone's own layers (same variables), and the output depends on
    the stride-4 features: changing the first stage's weights changes it."""
    cfg = ModelConfig(name="resnet18", input_size=64, neck="shortcut",
                      neck_channels=[16, 16, 16], head_conv=8)
    model = build_model(cfg, num_classes=2)
    names = [w.path for w in model.weights]
    assert len(names) == len(set(names))
    deconv = build_model(ModelConfig(name="resnet18", input_size=64, neck_channels=[16, 16, 16],
                                     head_conv=8), num_classes=2)
    backbone_weights = {w.path for w in deconv.get_layer("resnet18").weights}
    assert backbone_weights <= {w.path for w in model.get_layer("resnet18").weights}
    before = _outputs(model, 64)["wh"].numpy()
    kernel = model.get_layer("resnet18").get_layer("stage1_block2_2_conv").kernel
    kernel.assign(kernel * 0.0)
    assert not np.allclose(_outputs(model, 64)["wh"].numpy(), before)
