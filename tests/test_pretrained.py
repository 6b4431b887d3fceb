"""`model.pretrained=imagenet`: Keras fetches the backbone's ImageNet weights into its cache and
the backbone starts from exactly those weights, behind the preprocessing they were trained with.

Nothing can be downloaded here, so each test makes a weights file of the right architecture
(random values) and serves it to Keras as its download would: from the Keras cache
(`<keras home>/models/<file name>`) or through the `urlretrieve` Keras calls."""

from __future__ import annotations

import shutil
import urllib.error

import h5py
import keras
import numpy as np
import pytest
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from centernet.config import ModelConfig
from centernet.errors import CheckpointError, ConfigError
from centernet.model import build_model
from centernet.model.backbones import imagenet_weights_file

APPLICATIONS = {"mobilenetv2": keras.applications.MobileNetV2,
                "resnet50": keras.applications.ResNet50}
# The preprocessing each family's ImageNet weights were trained with, written out (RGB input).
PREPROCESS = {
    "mobilenetv2": lambda x: x / 127.5 - 1.0,
    "resnet50": lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32),
}


def small_config(name: str, input_size: int, **kwargs) -> ModelConfig:
    return ModelConfig(name=name, input_size=input_size, neck_channels=[8, 8, 8], head_conv=8,
                       **kwargs)


def make_weights_file(name: str, input_size: int, path) -> keras.Model:
    """A Keras-2-format `.h5` weights file, as keras.applications downloads, of the
    classifier-less `name` with random (not initial) values; returns the model saved."""
    model = APPLICATIONS[name](include_top=False, weights=None,
                               input_shape=(input_size, input_size, 3))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        values = rng.normal(0.0, 0.05, variable.shape)
        if "variance" in variable.path:  # BatchNorm moving variance must stay positive
            values = np.abs(values) + 0.5
        variable.assign(values.astype(np.float32))
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return model


def application_of(model: keras.Model, name: str) -> keras.Model:
    """The keras.applications model inside the CenterNet model's backbone."""
    backbone = model.get_layer(name)
    return next(layer for layer in backbone.layers if isinstance(layer, keras.Model))


def assert_same_weights(model: keras.Model, source: keras.Model) -> None:
    assert len(model.weights) == len(source.weights)
    for built, saved in zip(model.weights, source.weights):
        assert built.shape == saved.shape, (built.path, saved.path)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(built),
                                      keras.ops.convert_to_numpy(saved), err_msg=built.path)


def assert_preprocessed_as_trained(model: keras.Model, source: keras.Model, name: str,
                                   input_size: int) -> None:
    """The backbone on [0, 255] RGB images = the weights' own network on images preprocessed
    the way those weights were trained."""
    images = np.random.default_rng(1).uniform(0, 255, (2, input_size, input_size, 3))
    images = images.astype(np.float32)
    expected = source(PREPROCESS[name](images), training=False)
    actual = model.get_layer(name)(images, training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(actual),
                               keras.ops.convert_to_numpy(expected), rtol=1e-4, atol=1e-4)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras home (its `models/` is the download cache) and no network: Keras's
    `urlretrieve` fails as it would offline."""
    home = tmp_path / "keras_home"
    home.mkdir()  # Keras falls back to /tmp/.keras when its home is not a writable folder
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))

    def offline(url, filename, reporthook=None):
        raise urllib.error.URLError(f"[Errno -3] Temporary failure in name resolution: {url}")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    return home


def _keras_hub_preset(path, blocks=(2, 2, 2, 2)):
    """A KerasHub ResNet preset folder (as KerasHub's cache holds `resnet_18_imagenet`) with
    random (not initial) weights; returns the KerasHub backbone saved."""
    import keras_hub

    hub = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", use_pre_activation=False,
        image_shape=(None, None, 3))
    rng = np.random.default_rng(1)
    for variable in hub.weights:
        values = rng.normal(0.0, 0.05, variable.shape)
        if "variance" in variable.path:
            values = np.abs(values) + 0.5
        variable.assign(values.astype(np.float32))
    hub.save_to_preset(str(path))
    return hub


def _hub_name(ours: str) -> str:
    """KerasHub's layer name for ours, written out independently of the loader."""
    if ours.startswith("stem_"):
        return "conv1_" + ours.split("_")[1]
    stage, block, part, kind = ours.split("_")
    part = {"1": "1", "2": "2", "down": "0"}[part]
    return f"stack{int(stage[5:]) - 1}_block{int(block[5:]) - 1}_{part}_{kind}"


def test_resnet18_starts_from_a_keras_hub_preset_folder_bit_for_bit(tmp_path):
    hub = _keras_hub_preset(tmp_path / "resnet_18_imagenet")
    model = build_model(small_config("resnet18", 64, pretrained="imagenet",
                                     preset=str(tmp_path / "resnet_18_imagenet")), 3)
    backbone = model.get_layer("resnet18")
    weighted = [layer for layer in backbone.layers if layer.weights
                and not isinstance(layer, keras.layers.Normalization)]
    assert len(weighted) == 40  # 20 convolutions (17 + 3 projections), 20 BatchNorms
    for layer in weighted:
        source = hub.get_layer(_hub_name(layer.name)).get_weights()
        target = layer.get_weights()
        assert len(source) == len(target) and all(
            np.array_equal(s, t) for s, t in zip(source, target)), layer.name
    assert sum(w.size for layer in weighted for w in layer.get_weights()) == hub.count_params()


def test_resnet18_rebuilt_for_a_checkpoint_reads_no_preset(tmp_path):
    model = build_model(small_config("resnet18", 64, pretrained="imagenet",
                                     preset=str(tmp_path / "absent")), 3,
                        initial_weights=False)
    assert model.name == "centernet_resnet18"


def test_a_preset_that_is_not_resnet18_is_named(tmp_path):
    _keras_hub_preset(tmp_path / "resnet34", blocks=(3, 4, 6, 3))
    with pytest.raises(CheckpointError) as error:
        build_model(small_config("resnet18", 64, pretrained="imagenet",
                                 preset=str(tmp_path / "resnet34")), 3)
    message = str(error.value)
    assert message.startswith(f"model.preset={tmp_path / 'resnet34'}: ")
    assert "stack0_block2" in message and "not a ResNet-18 backbone" in message
    assert "\n" not in message


def test_a_missing_preset_folder_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as error:
        build_model(small_config("resnet18", 64, pretrained="imagenet",
                                 preset=str(tmp_path / "nowhere" / "resnet_18_imagenet")), 3)
    message = str(error.value)
    assert "nowhere" in message and "\n" not in message


def test_pretrained_is_refused_for_an_unknown_choice():
    with pytest.raises(ConfigError, match="model.pretrained='coco' is invalid"):
        small_config("resnet18", 64, pretrained="coco")


@pytest.mark.parametrize("input_size", [96, 64])  # 64: not an ImageNet size, Keras uses 224's
def test_mobilenetv2_starts_from_the_cached_imagenet_weights(keras_home, tmp_path, input_size,
                                                             recwarn):
    file_name, url = imagenet_weights_file("mobilenetv2", input_size)
    assert url.endswith("/" + file_name)
    (keras_home / "models").mkdir(parents=True)
    source = make_weights_file("mobilenetv2", input_size, keras_home / "models" / file_name)

    model = build_model(small_config("mobilenetv2", input_size, pretrained="imagenet"), 3)

    assert_same_weights(application_of(model, "mobilenetv2"), source)
    assert_preprocessed_as_trained(model, source, "mobilenetv2", input_size)
    assert not [w for w in recwarn if "loaded as the default" in str(w.message)]


def test_resnet50_weights_are_downloaded_into_the_cache(keras_home, tmp_path, monkeypatch):
    """ResNet-50's file has a checksum, so the test's file is served as a download (and its
    checksum accepted) rather than found in the cache."""
    file_name, url = imagenet_weights_file("resnet50", 64)
    served = tmp_path / file_name
    source = make_weights_file("resnet50", 64, served)
    requested = []

    def download(origin, filename, reporthook=None):
        requested.append(origin)
        shutil.copyfile(served, filename)

    monkeypatch.setattr(file_utils, "urlretrieve", download)
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)

    model = build_model(small_config("resnet50", 64, pretrained="imagenet"), 3)

    assert requested == [url]
    assert (keras_home / "models" / file_name).is_file()
    assert_same_weights(application_of(model, "resnet50"), source)
    assert_preprocessed_as_trained(model, source, "resnet50", 64)


def test_offline_download_failure_is_one_line_naming_the_file(keras_home):
    _, url = imagenet_weights_file("mobilenetv2", 96)
    with pytest.raises(CheckpointError) as error:
        build_model(small_config("mobilenetv2", 96, pretrained="imagenet"), 3)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("model.pretrained=imagenet: could not download")
    assert url in message and "model.weights=PATH" in message
    assert "name resolution" in message


def test_keras_weights_file_given_as_model_weights_needs_no_network(keras_home, tmp_path):
    """The file downloaded elsewhere, passed as `model.weights=PATH`, replaces the download."""
    file_name, _ = imagenet_weights_file("mobilenetv2", 96)
    path = tmp_path / file_name
    source = make_weights_file("mobilenetv2", 96, path)
    config = small_config("mobilenetv2", 96, pretrained="imagenet", weights=str(path))

    model = build_model(config, 3)

    assert_same_weights(application_of(model, "mobilenetv2"), source)


def test_models_rebuilt_for_a_checkpoint_fetch_nothing(keras_home):
    config = small_config("mobilenetv2", 96, pretrained="imagenet")
    model = build_model(config, 3, initial_weights=False)
    assert model.name == "centernet_mobilenetv2"
    assert not (keras_home / "models").exists() or not any((keras_home / "models").iterdir())
