"""The dataset file formats read from disk (COCO, Pascal VOC, YOLO) and the exports.

Every format ends up as a COCO instances dict (:class:`~ghmbench.data.formats.source.SourceSpec`),
validated annotation by annotation (``on_invalid=error`` stops at the first problem with a
one-line message naming the file and annotation; ``skip`` drops it and counts it), and turned
into a :class:`~ghmbench.data.splits.DetectionSplit`: images resized with their aspect ratio kept
(longer side = ``image_size``) and padded right/bottom to a square, boxes transformed with them
(torchvision.transforms.v2 on tv_tensors). The split keeps the original annotations, so
detections mapped back through its per-image scales evaluate against the files on disk.

Modules: ``images`` (decoding, letterboxing, the image cache), ``source`` (validation and the
split), ``coco``, ``voc``, ``yolo`` (the readers), ``export`` (COCO and YOLO writers).
"""
