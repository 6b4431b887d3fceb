"""The TFDS source: VOC/COCO-style records in the common example format, clear errors."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from centernet.config import DatasetConfig
from centernet.data.sources import build_source, decode_record, record_layout, to_record
from centernet.errors import DataError


@pytest.mark.parametrize("name, ignore_key, has_id", [("voc/2007", "is_difficult", False),
                                                      ("coco/2017", "is_crowd", True)])
def test_tfds_detection_examples_become_common_examples(name, ignore_key, has_id):
    """Offline mock examples of the real TFDS builders: the layout is read from their
    features, boxes come out in pixels, the dataset's ignore flag becomes `is_crowd`, ids come
    from `image/id` or the file order."""
    with tfds.testing.mock_data(num_examples=3):
        builder = tfds.builder(name)
        layout = record_layout(builder.info.features)
        raw = list(builder.as_dataset(split="validation").take(3).as_numpy_iterator())
    assert layout == (has_id, ignore_key)
    for index, original in enumerate(raw):
        encoded = dict(original, image=tf.io.encode_png(original["image"]))
        example = decode_record(to_record(encoded, tf.constant(index, tf.int64), *layout))
        height, width = original["image"].shape[:2]
        ymin, xmin, ymax, xmax = np.asarray(original["objects"]["bbox"]).reshape(-1, 4).T
        expected = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], 1)
        np.testing.assert_allclose(example["boxes"].numpy(), expected, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(example["labels"].numpy(), original["objects"]["label"])
        np.testing.assert_array_equal(example["is_crowd"].numpy(),
                                      original["objects"][ignore_key].astype(bool))
        assert int(example["image_id"]) == (original["image/id"] if has_id else index)
        np.testing.assert_array_equal(example["image"].numpy(), original["image"])


def test_unprepared_tfds_dataset_is_named_and_nothing_downloads(tmp_path):
    with pytest.raises(DataError, match=r"voc/2007.*no prepared data.*never downloads"):
        build_source(DatasetConfig(source="tfds", name="voc/2007", data_dir=str(tmp_path)))


def test_unknown_tfds_name_is_named(tmp_path):
    with pytest.raises(DataError, match="no_such_dataset"):
        build_source(DatasetConfig(source="tfds", name="no_such_dataset",
                                   data_dir=str(tmp_path)))


def test_missing_split_lists_the_splits(tfds_dir):
    source = build_source(DatasetConfig(data_dir=str(tfds_dir), image_size=64, num_train=8,
                                        num_val=4, min_size=0.3, max_size=0.6, max_shapes=2))
    with pytest.raises(DataError, match="'test' does not exist.*train, validation"):
        source.num_examples("test")
