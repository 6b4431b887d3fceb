"""`analyze_errors` on a scene whose every figure is worked out by hand below."""

import pytest

from centernet.evaluation.error_analysis import analyze_errors, format_error_table


def box(x1, y1, x2, y2):
    return [x1, y1, x2 - x1, y2 - y1]  # COCO xywh


def annotation(ann_id, image_id, category_id, xyxy, crowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": box(*xyxy),
            "area": (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1]), "iscrowd": crowd}


def detection(image_id, category_id, xyxy, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": box(*xyxy),
            "score": score}


GROUND_TRUTH = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "categories": [{"id": 0, "name": "circle"}, {"id": 1, "name": "square"}],
    "annotations": [
        annotation(1, 1, 0, (0, 0, 10, 10)),      # A
        annotation(2, 1, 1, (20, 20, 40, 40)),    # B
        annotation(3, 1, 1, (80, 80, 100, 100), crowd=1),
        annotation(4, 2, 1, (0, 0, 20, 20)),      # C: never detected
    ],
}

DETECTIONS = [
    detection(1, 0, (0, 0, 10, 10), 0.9),     # A exactly: true positive
    detection(1, 0, (1, 0, 11, 10), 0.8),     # IoU 90/110 with A, already matched: duplicate
    detection(1, 0, (20, 20, 40, 40), 0.7),   # B's box with class 0: wrong class
    detection(1, 1, (20, 20, 30, 40), 0.6),   # IoU 200/400 = 0.5 with B: true positive
    detection(1, 1, (60, 60, 70, 70), 0.5),   # nothing there: background
    detection(1, 0, (0, 0, 10, 30), 0.4),     # IoU 100/300 with A: localisation
    detection(1, 1, (85, 85, 95, 95), 0.35),  # inside the crowd region: ignored
    detection(1, 1, (0, 0, 10, 10), 0.1),     # below the score threshold: not counted
]


def test_hand_computed_scene():
    result = analyze_errors(GROUND_TRUTH, DETECTIONS, iou_threshold=0.5, score_threshold=0.3)
    assert result["objects"] == 3  # the crowd box is not an object
    # best same-class IoU: A 1.0, B 0.5, C 0
    assert result["recall@0.5"] == pytest.approx(2 / 3)
    assert result["recall@0.75"] == pytest.approx(1 / 3)
    assert result["recall@0.9"] == pytest.approx(1 / 3)
    assert result["recall@0.5/circle"] == 1.0 and result["recall@0.5/square"] == 0.5
    assert result["recall@0.75/square"] == 0.0
    # B's highest-scoring hit is the class-0 box (0.7 > 0.6); C has no hit.
    assert result["top_is_other_class"] == pytest.approx(1 / 3)
    assert result["no_detection"] == pytest.approx(1 / 3)
    assert {k: result[k] for k in ("detections", "true_positive", "duplicate", "wrong_class",
                                   "localisation", "background", "ignored")} == {
        "detections": 7, "true_positive": 2, "duplicate": 1, "wrong_class": 1,
        "localisation": 1, "background": 1, "ignored": 1}


def test_score_threshold_and_iou_threshold_move_the_figures():
    strict = analyze_errors(GROUND_TRUTH, DETECTIONS, iou_threshold=0.6, score_threshold=0.65)
    # Only the 0.9, 0.8 and 0.7 detections count; at IoU 0.6 the duplicate (0.82) still hits A.
    assert strict["detections"] == 3
    assert (strict["true_positive"], strict["duplicate"], strict["wrong_class"]) == (1, 1, 1)
    assert strict["recall@0.5"] == pytest.approx(1 / 3)


def test_no_detections():
    result = analyze_errors(GROUND_TRUTH, [])
    assert result["recall@0.5"] == 0.0 and result["no_detection"] == 1.0
    assert result["detections"] == 0


def test_report_names_the_figures():
    text = format_error_table(analyze_errors(GROUND_TRUTH, DETECTIONS))
    assert "objects 3" in text and "recall@0.5 66.7%" in text
    assert "wrong_class 1" in text and "duplicate 1" in text
    assert "recall@0.75 per class: circle 100.0%, square 0.0%" in text
