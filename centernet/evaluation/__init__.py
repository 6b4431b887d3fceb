"""From a model to numbers and pictures: decoding outputs into boxes (`decode`), inference on a
split (`inference`), COCO and VOC metrics through pycocotools (`metrics`), where the errors are
(`error_analysis`), and detections drawn on images and videos (`predict`)."""
