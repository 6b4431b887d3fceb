"""From a model to numbers: inference on a split (`inference`), COCO and VOC metrics through
pycocotools (`metrics`), and where the errors are (`error_analysis`)."""
