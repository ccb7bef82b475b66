"""The datasets: the generated digits (:mod:`.digits`), the split tensors and batching
(:mod:`.splits`), the builder that picks a dataset by name (:mod:`.builder`) and the file formats
read from disk (:mod:`.formats`: coco, voc, yolo, and export)."""
