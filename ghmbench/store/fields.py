"""What a run record (a run folder's metrics.json) says: the COCO metric names of its metrics and
its status. Defined once here, without imports, so that every module (configuration checks,
evaluation, the report) can use them."""

METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"]
"""COCO metric names, in faster-coco-eval's ``stats`` order."""

COMPLETED = "completed"
DIVERGED = "diverged"
FAILED = "failed"
COMPLETE_STATUSES = (COMPLETED, DIVERGED)
"""A record with one of these statuses is finished: a repeated command reuses it."""
