"""avvp: weakly-supervised audio-visual video parsing on LLP (core shared by every stage)."""

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SNIPPETS
from avvp.errors import AnnotationError, AvvpError, StoreError

__version__ = "0.1.0"
__all__ = ["CLASSES", "NUM_CLASSES", "NUM_SNIPPETS", "AnnotationError", "AvvpError", "StoreError"]
