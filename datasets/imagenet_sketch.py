"""ImageNet-Sketch: ``imagenet-sketch/images/<wnid>/*.JPEG`` (the archive's ``sketch/`` renamed)."""
from __future__ import annotations

from disakit.bundle import bundled_dataset

from .base import ImageNetVariant


@bundled_dataset
class ImageNetSketch(ImageNetVariant):
    """Test-only, 1000 classes; label = sorted-wnid index, name from ``classnames.txt``."""

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
