"""ghmbench: benchmark CE, Focal Loss and GHM on a RetinaNet-style detector."""

__version__ = "0.1.0"
