"""Benchmark dataset readers (the CoOp suite): importing this package registers all of them.

Registry names follow upstream (``ImageNet``, ``Caltech101``, ``OxfordPets``, ``StanfordCars``,
``OxfordFlowers``, ``Food101``, ``FGVCAircraft``, ``SUN397``, ``DescribableTextures``,
``EuroSAT``, ``UCF101``, ``ImageNetV2``, ``ImageNetSketch``, ``ImageNetA``, ``ImageNetR``); the
layouts are described in DATASETS.md. ``ImageFolder`` (:mod:`datasets.imagefolder`) reads a
user's own class folders from a dataset YAML, and :mod:`datasets.check` is ``python -m disakit
check-data``. Shared logic is in :mod:`datasets.common` (splits,
subsampling, checks), :mod:`datasets.cache` (few-shot and ImageNet caches) and
:mod:`datasets.base` (reader templates); :mod:`datasets.synthetic` writes tiny fake copies of
every layout for tests and demos.
"""
from . import (  # noqa: F401  (registration by import side effect)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagefolder,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)

# Registry name -> configs/datasets/<yaml>.yaml file stem.
YAML_NAMES = {
    "ImageNet": "imagenet",
    "Caltech101": "caltech101",
    "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars",
    "OxfordFlowers": "oxford_flowers",
    "Food101": "food101",
    "FGVCAircraft": "fgvc_aircraft",
    "SUN397": "sun397",
    "DescribableTextures": "dtd",
    "EuroSAT": "eurosat",
    "UCF101": "ucf101",
    "ImageNetV2": "imagenetv2",
    "ImageNetSketch": "imagenet_sketch",
    "ImageNetA": "imagenet_a",
    "ImageNetR": "imagenet_r",
}
TEST_ONLY = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")


def registry_name(name: str) -> str:
    """Registry name for a registry name or a ``configs/datasets`` YAML stem."""
    for registry, yaml_name in YAML_NAMES.items():
        if name in (registry, yaml_name):
            return registry
    raise ValueError(f"Unknown dataset {name!r}; known: {', '.join(YAML_NAMES)}")


def load_dataset(name: str, root, *, num_shots: int = -1, seed: int = -1,
                 subsample: str = "all", verbose: bool = False):
    """Build dataset ``name`` (registry or YAML name) from ``root`` without a config file.

    Why: tests, demos and benchmarks need a dataset object with a few settings; this fills
    ``DATASET.ROOT/NAME/NUM_SHOTS/SUBSAMPLE_CLASSES`` and ``SEED`` on the engine defaults and
    calls the registry's builder, exactly as ``train.py`` does.
    """
    from disakit.dassl_api import build_dataset, get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = registry_name(name)
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    cfg.VERBOSE = verbose
    return build_dataset(cfg)
