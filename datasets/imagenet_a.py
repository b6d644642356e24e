"""ImageNet-A: ``imagenet-adversarial/imagenet-a/<wnid>/*.jpg`` (200 wnids)."""
from __future__ import annotations

from disakit.bundle import bundled_dataset

from .base import ImageNetVariant


@bundled_dataset
class ImageNetA(ImageNetVariant):
    """Test-only, 200 classes: labels 0..199 over the sorted wnid folders (README.txt ignored)."""

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
