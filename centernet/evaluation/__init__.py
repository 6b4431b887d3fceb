"""From a model to numbers: decoding outputs into boxes (`decode`), inference on a split
(`inference`), COCO and VOC metrics through pycocotools (`metrics`), and where the errors are
(`error_analysis`)."""
