"""ImageNetV2: ``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/``."""
from __future__ import annotations

from typing import Dict, List, Tuple

from disakit.bundle import bundled_dataset

from .base import ImageNetVariant


@bundled_dataset
class ImageNetV2(ImageNetVariant):
    """Test-only. Folder ``i`` holds class ``i``: the i-th line of ``classnames.txt``."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"

    def label_folders(self, classnames: Dict[str, str]) -> List[Tuple[str, str]]:
        return [(str(label), wnid) for label, wnid in enumerate(classnames)]
