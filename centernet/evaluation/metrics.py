"""Detection metrics: COCO AP through pycocotools, Pascal VOC AP50.

Pure NumPy and pycocotools: importing this module does not import TensorFlow, so scripts and
tests can use it cheaply. pycocotools' progress messages are silenced.

Conventions
-----------
* Boxes handed in are ``xyxy`` float pixels of the original image; the COCO dicts this module
  writes and reads hold ``bbox = [x, y, w, h]`` in the same pixels.
* Class ids inside the project are contiguous ``0..C-1``; ``category_ids[c]`` is the original
  dataset category id of class ``c`` (COCO: 1..90 with gaps). Everything this module returns,
  detections and metric keys alike, uses the original ids (and the names of the categories).
* Metrics are fractions in ``[0, 1]``, not percent. A metric that is undefined, because there is
  no ground truth to measure it on (pycocotools reports ``-1``: no object in that area range, or
  a class without objects), is returned as ``float("nan")`` rather than ``-1``, so that neither
  an average over classes or runs nor a "best checkpoint" comparison can take it for a score.

The COCO-format dicts these take are built in `coco_format` (`coco_ground_truth`,
`detections_to_coco`); VOC AP50 is computed in `voc_metrics`.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from typing import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from centernet.evaluation.coco_format import (category_names, check_detection_ids,
                                              detections_to_coco, ground_truth_subset)
from centernet.evaluation.voc_metrics import voc_ap50

COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
"""Names of the 12 standard COCOeval statistics, in pycocotools' ``stats`` order."""

VOC_METRIC_NAMES = ("VOC07_AP50", "VOC_AP50")
"""Keys :meth:`CocoEvaluator.evaluate` adds when asked for VOC metrics."""

PER_CLASS_PREFIX = "AP50/"
"""Prefix of the per-class COCO AP50 keys, followed by the category name."""


def coco_metrics(
    ground_truth: dict,
    detections: list[dict],
    class_names: Sequence[str] | None = None,
    *,
    print_summary: bool = False,
) -> dict[str, float]:
    """COCO box metrics of ``detections`` against ``ground_truth``, via pycocotools' COCOeval.

    Args:
        ground_truth: COCO-format dict as :func:`coco_ground_truth` builds (not modified).
        detections: COCO results entries as :func:`detections_to_coco` builds (not modified);
            may be empty.
        class_names: names for the per-class keys, one per entry of
            ``ground_truth["categories"]`` in that order; defaults to the categories' names.
        print_summary: print pycocotools' own 12-line summary to stdout (silent otherwise).

    Returns:
        Fractions in ``[0, 1]``: the 12 COCO statistics under :data:`COCO_STAT_NAMES`
        (``"AP"``, ``"AP50"``, ..., ``"ARl"``), then ``"AP50/<name>"`` for every category: the
        mean over COCO's 101 recall thresholds of the interpolated precision at IoU 0.5, area
        "all", 100 detections per image. A statistic pycocotools reports as ``-1`` (no ground
        truth in that area range) and the AP50 of a category without (non-crowd) ground truth
        are ``float("nan")``. With no detections every defined metric is 0.0.

    Raises:
        ValueError: when a detection refers to an image or a category id that is not in the
            ground truth (a contiguous-versus-original id mix-up would otherwise score 0).
    """
    names = category_names(ground_truth, class_names)
    check_detection_ids(ground_truth, detections)
    return cocoeval_metrics(run_cocoeval(ground_truth, detections, print_summary), names)


def cocoeval_metrics(evaluation: COCOeval, names: dict[int, str]) -> dict[str, float]:
    """:func:`coco_metrics`' dict from a summarised COCOeval and ``{category id: name}``."""
    metrics = {
        name: _nan_if_undefined(value) for name, value in zip(COCO_STAT_NAMES, evaluation.stats)
    }
    metrics.update(_per_class_ap50(evaluation, names))
    return metrics


def run_cocoeval(ground_truth: dict, detections: list[dict], print_summary: bool) -> COCOeval:
    """Evaluate, accumulate and summarise ``detections`` with COCOeval(iouType="bbox")."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco_api(_annotation_copies(ground_truth))
        coco_dt = _load_results(coco_gt, detections)
        evaluation = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.summarize()
    if print_summary:
        print(summary.getvalue(), end="")
    return evaluation


def _annotation_copies(dataset: dict) -> dict:
    """``dataset`` with its annotations copied (COCOeval writes an "ignore" key into them)."""
    return {**dataset, "annotations": [dict(annotation) for annotation in dataset["annotations"]]}


def _coco_api(dataset: dict) -> COCO:
    """A pycocotools COCO object over an in-memory dataset dict."""
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _load_results(coco_gt: COCO, detections: list[dict]) -> COCO:
    """Results as a COCO object; ``loadRes`` itself fails on an empty list, so build that one."""
    if detections:
        return coco_gt.loadRes([dict(detection) for detection in detections])
    return _coco_api({
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    })


def _nan_if_undefined(value: float) -> float:
    """pycocotools' ``-1`` ("no ground truth") as NaN; any other value as a Python float."""
    return float("nan") if value == -1 else float(value)


def _per_class_ap50(evaluation: COCOeval, names: dict[int, str]) -> dict[str, float]:
    """``{"AP50/<name>": AP}`` from COCOeval's precision at IoU 0.5, area all, 100 dets."""
    params = evaluation.params
    iou_index = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    precision = evaluation.eval["precision"][
        iou_index, :, :, params.areaRngLbl.index("all"), params.maxDets.index(100)
    ]  # [R recall thresholds, K categories]
    column = {category_id: k for k, category_id in enumerate(params.catIds)}
    metrics = {}
    for category_id, name in names.items():
        values = precision[:, column[category_id]]
        values = values[values > -1]
        metrics[PER_CLASS_PREFIX + name] = float(values.mean()) if values.size else float("nan")
    return metrics


# --------------------------------------------------------------------------------------------
# Evaluator and report
# --------------------------------------------------------------------------------------------


class CocoEvaluator:
    """detectron2-style evaluator: :meth:`reset`, :meth:`process` per batch, :meth:`evaluate`.

    Only the images passed to :meth:`process` since the last :meth:`reset` are evaluated (with
    or without detections), so a periodic evaluation on the first batches of a validation set is
    measured on those images alone, not penalised for the ones it skipped.
    """

    def __init__(
        self,
        ground_truth: dict,
        category_ids: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        voc_metrics: bool = False,
        score_threshold: float = 0.0,
    ):
        """Args:
            ground_truth: COCO-format dict as :func:`coco_ground_truth` builds.
            category_ids: ``C`` original category ids indexed by contiguous class id; defaults
                to the ids of ``ground_truth["categories"]`` in their order, which is the
                mapping :func:`coco_ground_truth` wrote.
            class_names: names for the per-class keys (see :func:`coco_metrics`).
            voc_metrics: also report VOC AP50 (:data:`VOC_METRIC_NAMES`).
            score_threshold: detections scoring below it are dropped (see
                :func:`detections_to_coco`).
        """
        self._ground_truth = ground_truth
        if category_ids is None:
            category_ids = [category["id"] for category in ground_truth["categories"]]
        self._category_ids = [int(category_id) for category_id in category_ids]
        self._class_names = class_names
        self._voc_metrics = voc_metrics
        self._score_threshold = score_threshold
        self._known_image_ids = {int(image["id"]) for image in ground_truth["images"]}
        self._detections: list[dict] = []
        self._image_ids: set[int] = set()
        self.last_evaluation: COCOeval | None = None  # the last evaluate()'s, for its curves

    def reset(self) -> None:
        """Forget every processed image and detection."""
        self._detections = []
        self._image_ids = set()

    def process(self, image_ids, boxes, scores, classes) -> None:
        """Add one batch: ``image_ids [B]``, ``boxes [B, K, 4]`` xyxy original-image pixels,
        ``scores [B, K]``, ``classes [B, K]`` contiguous ids (NumPy arrays or tensors).

        Raises:
            ValueError: when an image id is not in the ground truth or was already processed
                (a repeated dataset would count its detections twice); the batch is not added.
        """
        ids = np.asarray(image_ids).reshape(-1).astype(np.int64).tolist()
        unknown = sorted(set(ids) - self._known_image_ids)
        if unknown:
            raise ValueError(f"image ids not in the ground truth: {unknown[:10]}")
        repeated = sorted(
            {i for i, n in Counter(ids).items() if n > 1 or i in self._image_ids}
        )
        if repeated:
            raise ValueError(f"image ids processed more than once since reset(): {repeated[:10]}")
        detections = detections_to_coco(
            ids, boxes, scores, classes, self._category_ids, self._score_threshold
        )
        self._detections.extend(detections)
        self._image_ids.update(ids)

    @property
    def detections(self) -> list[dict]:
        """The COCO results entries gathered so far (original category ids); a copy."""
        return list(self._detections)

    @property
    def ground_truth(self) -> dict:
        """The COCO-format ground truth of the images processed since the last reset."""
        return ground_truth_subset(self._ground_truth, self._image_ids)

    def evaluate(self) -> dict[str, float]:
        """:func:`coco_metrics` on the processed images, plus ``"VOC07_AP50"`` (11-point mAP)
        and ``"VOC_AP50"`` (area mAP) when ``voc_metrics``.

        Raises:
            RuntimeError: when no image has been processed.
        """
        if not self._image_ids:
            raise RuntimeError("CocoEvaluator.evaluate(): no image processed since reset()")
        ground_truth = self.ground_truth
        names = category_names(ground_truth, self._class_names)
        check_detection_ids(ground_truth, self._detections)
        self.last_evaluation = run_cocoeval(ground_truth, self._detections, print_summary=False)
        metrics = cocoeval_metrics(self.last_evaluation, names)
        if self._voc_metrics:
            for name, use_07_metric in zip(VOC_METRIC_NAMES, (True, False)):
                metrics[name] = voc_ap50(ground_truth, self._detections, use_07_metric)["mAP"]
        return metrics


def format_metrics_table(metrics: dict[str, float]) -> str:
    """A fixed-width two-column table of ``metrics`` in percent with one decimal.

    Rows: the 12 COCO statistics (in :data:`COCO_STAT_NAMES` order), the VOC numbers, the
    per-class ``AP50/<name>`` rows, then any other key in the dict's order. NaN shows as ``-``.
    Example row: ``AP          71.3``.
    """
    known = [*COCO_STAT_NAMES, *VOC_METRIC_NAMES]
    keys = [key for key in known if key in metrics]
    keys += [key for key in metrics if key.startswith(PER_CLASS_PREFIX)]
    keys += [key for key in metrics if key not in keys]
    width = max([len("metric"), *map(len, keys)])
    lines = [f"{'metric':<{width}}  {'%':>6}", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{key:<{width}}  {_percent(metrics[key]):>6}" for key in keys]
    return "\n".join(lines)


def _percent(value: float) -> str:
    """``value`` as a percentage with one decimal, ``-`` for NaN."""
    return "-" if math.isnan(value) else f"{100.0 * value:.1f}"
