"""The tf.data pipeline: letterboxing, targets wired to the right boxes, determinism, resume."""

import copy

import cv2
import numpy as np
import pytest
import tensorflow as tf

from centernet.config import DOWN_RATIO, validate
from centernet.data.augment import flip_horizontal
from centernet.data.letterbox import letterbox_boxes, letterbox_image
from centernet.data.pipeline import eval_dataset, train_dataset, train_example
from centernet.data.sources import build_source, decode_record
from centernet.data.targets import render_targets, render_ttf_targets
from centernet.evaluation.decode import to_original_pixels
from conftest import compose_config


@pytest.fixture(scope="module")
def smoke(tfds_dir):
    run = validate(compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}"]))
    return run, build_source(run.dataset)


def _png_record(image, boxes_xyxy, labels, is_crowd):
    """A `Source.read`-style record: encoded image, normalised ymin/xmin/ymax/xmax boxes."""
    height, width = image.shape[:2]
    boxes = np.asarray(boxes_xyxy, np.float32)
    normalised = boxes[:, [1, 0, 3, 2]] / np.array([height, width, height, width], np.float32)
    return {"image": tf.constant(cv2.imencode(".png", image[..., ::-1])[1].tobytes()),
            "image_id": tf.constant(7, tf.int64), "boxes": tf.constant(normalised),
            "labels": tf.constant(labels, tf.int32), "is_crowd": tf.constant(is_crowd)}


def test_train_batches_have_the_documented_structure(smoke):
    run, source = smoke
    batch = next(iter(train_dataset(source, run)))
    size, grid, k = run.model.input_size, run.model.input_size // DOWN_RATIO, run.targets.max_objects
    assert batch["image"].dtype == tf.uint8
    assert batch["image"].shape == (run.train.batch_size, size, size, 3)
    assert batch["heatmap"].shape == (run.train.batch_size, grid, grid, source.num_classes)
    assert batch["wh"].shape == batch["reg"].shape == (run.train.batch_size, k, 2)
    assert batch["ind"].dtype == tf.int32 and batch["mask"].shape == (run.train.batch_size, k)
    assert float(tf.reduce_sum(batch["mask"])) >= run.train.batch_size  # every image has objects


def test_letterbox_keeps_aspect_and_maps_boxes_exactly():
    """A 60x150 image with a solid rectangle: after letterboxing to 128 the rectangle's pixels
    sit where the mapped box says, and mapping back gives the original box."""
    image = np.zeros((60, 150, 3), np.uint8)
    image[20:40, 30:90] = (250, 10, 10)
    letterboxed, params = letterbox_image(tf.constant(image), 128)
    scale = 128 / 150
    new_h = round(60 * scale)
    np.testing.assert_allclose(params.numpy(), [128 / 150, new_h / 60, 0, (128 - new_h) // 2],
                               rtol=1e-6)
    box = letterbox_boxes(tf.constant([[30.0, 20.0, 90.0, 40.0]]), params).numpy()[0]
    red = np.argwhere(letterboxed.numpy()[..., 0] > 200)
    assert abs(red[:, 1].min() - box[0]) <= 1 and abs(red[:, 1].max() + 1 - box[2]) <= 1
    assert abs(red[:, 0].min() - box[1]) <= 1 and abs(red[:, 0].max() + 1 - box[3]) <= 1
    assert letterboxed.numpy()[: int(params[3]) - 1].max() == 0  # top padding is black
    back = to_original_pixels(tf.constant(box[None, None] / DOWN_RATIO), params[None],
                              tf.constant([[60, 150]]))
    np.testing.assert_allclose(back.numpy()[0, 0], [30, 20, 90, 40], atol=1e-4)


@pytest.mark.parametrize("kind", ["centernet", "ttfnet"])
def test_pipeline_targets_come_from_the_letterboxed_boxes(smoke, kind):
    """Without augmentation, each example's targets equal render_targets (render_ttf_targets
    for targets.kind=ttfnet) of its boxes mapped by the letterbox formula computed here in
    NumPy."""
    run, source = copy.deepcopy(smoke[0]), smoke[1]
    run.augment.flip = 0.0
    run.targets.kind = kind
    record = next(iter(source.read(run.dataset.train_split)))
    example = decode_record(record)
    height, width = example["image"].shape[:2]
    scale = run.model.input_size / max(height, width)
    pad = np.array([(run.model.input_size - round(width * scale)) // 2,
                    (run.model.input_size - round(height * scale)) // 2] * 2)
    boxes = example["boxes"].numpy() * scale + pad
    render, keys = render_targets, ("heatmap", "wh", "reg", "ind", "mask")
    if kind == "ttfnet":
        render, keys = render_ttf_targets, keys + ("box_target", "box_weight")
    expected = render(boxes / DOWN_RATIO, example["labels"],
                      run.model.input_size // DOWN_RATIO, source.num_classes,
                      run.targets.max_objects, clip_to_edge=run.targets.clip_to_edge)
    produced = train_example(record, tf.constant([0, 0], tf.int64), run, source.num_classes)
    for key in keys:
        np.testing.assert_allclose(produced[key].numpy(), expected[key].numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["centernet", "ttfnet"])
def test_batches_hold_each_examples_own_targets(smoke, kind):
    """The pipeline renders targets after padding a batch's boxes: each image of a batch has
    exactly the targets `train_example` renders for its record alone (the test above checks
    those against the letterboxed boxes), though the images have different numbers of boxes."""
    run, source = copy.deepcopy(smoke[0]), smoke[1]
    run.dataset.shuffle_buffer, run.targets.kind = 1, kind  # records in file order
    batch = next(iter(train_dataset(source, run)))
    records = list(source.read(run.dataset.train_split).take(run.train.batch_size))
    counts = set()
    for index, record in enumerate(records):
        alone = train_example(record, tf.constant([run.train.seed, index], tf.int64), run,
                              source.num_classes)
        counts.add(int(alone["mask"].numpy().sum()))
        for key, value in alone.items():
            np.testing.assert_array_equal(batch[key][index].numpy(), value.numpy(), err_msg=key)
    assert len(counts) > 1  # the padding was exercised


def test_crowd_boxes_are_not_trained_on(smoke):
    run, source = copy.deepcopy(smoke[0]), smoke[1]
    run.augment.flip = 0.0
    image = np.full((64, 64, 3), 90, np.uint8)
    record = _png_record(image, [[4, 4, 20, 20], [30, 30, 60, 60]], [0, 1], [False, True])
    produced = train_example(record, tf.constant([0, 0], tf.int64), run, source.num_classes)
    assert produced["mask"].numpy().sum() == 1
    assert produced["heatmap"].numpy()[..., 1].max() == 0.0


def test_flip_moves_pixels_and_boxes_together():
    image = np.zeros((10, 20, 3), np.uint8)
    image[2:5, 1:4] = 255
    flipped, boxes = flip_horizontal(tf.constant(image), tf.constant([[1.0, 2.0, 4.0, 5.0]]))
    cols = np.argwhere(flipped.numpy()[..., 0] == 255)[:, 1]
    np.testing.assert_allclose(boxes.numpy(), [[16.0, 2.0, 19.0, 5.0]])
    assert (cols.min(), cols.max() + 1) == (16, 19)


def test_seeded_pipeline_is_deterministic_and_resume_skips_exactly(smoke):
    run, source = copy.deepcopy(smoke[0]), smoke[1]
    first = [b["image"].numpy() for b in train_dataset(source, run).take(3)]
    again = [b["image"].numpy() for b in train_dataset(source, run).take(3)]
    resumed = next(iter(train_dataset(source, run, start_step=2)))["image"].numpy()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed, first[2])
    run.train.seed = 1
    other = next(iter(train_dataset(source, run)))["image"].numpy()
    assert not np.array_equal(other, first[0])


def test_eval_batches_carry_what_maps_detections_back(smoke):
    run, source = smoke
    batch = next(iter(eval_dataset(source, run.dataset.val_split, run.model.input_size, 4)))
    assert batch["image"].shape[1:] == (run.model.input_size, run.model.input_size, 3)
    assert batch["letterbox"].shape == (4, 4) and batch["original_size"].shape == (4, 2)
    np.testing.assert_array_equal(batch["original_size"].numpy(),
                                  [[run.dataset.image_size] * 2] * 4)
