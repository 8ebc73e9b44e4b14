"""One module per head type; each registers its `HeadType` with `HEAD_TYPES.register`."""

from preprocessing.heads.base import label_name

__all__ = ["label_name"]
