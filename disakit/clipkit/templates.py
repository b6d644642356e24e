"""Hand-crafted prompt templates and frozen text banks (docs/methods/README.md).

The tables are data; :func:`text_bank` is the one function that turns templates and class names
into frozen class features, with the two averaging conventions the methods use:
``"normalized_mean"`` (ZeroshotCLIP2: normalise each template's feature, average, renormalise)
and ``"raw_mean"`` (PromptSRC, DiSa: average the raw features in fp32; normalised at use).
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from disakit.clipkit.encoders import TextTower
from disakit.clipkit.prompts import clean_classname, tokenize

BankMode = Literal["normalized_mean", "raw_mean"]

CUSTOM_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."

# KgCoOp's table differs from CUSTOM_TEMPLATES for DTD only.
KGCOOP_TEMPLATES: dict[str, str] = {
    **CUSTOM_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."
}

# TCP (docs/methods/tcp.md), as in its official code. TCP_TEMPLATES: the learned prompt; its
# first 4 tokens are replaced by the context, also where they are words ("a photo of a" for
# UCF101 and the ImageNet family). StanfordCars has no final period there (as upstream).
_IMAGENET_FAMILY = ("ImageNet", "ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR")
TCP_TEMPLATES: dict[str, str] = {
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "EuroSAT": "X X X X {}.",
    "StanfordCars": "X X X X {}, a type of car",
    "Food101": "X X X X {}, a type of food.",
    "SUN397": "X X X X {}.",
    "Caltech101": "X X X X {}.",
    "UCF101": "a photo of a person doing {}.",
    **{name: "a photo of a {}." for name in _IMAGENET_FAMILY},
}
# TCP's hand-crafted prompts: the frozen class features that feed its class-aware token
# generator and its knowledge-guided term.
TCP_KNOWLEDGE_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of an aircraft {}.",
    "DescribableTextures": "a photo of a {}, a type of texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of a {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    **{name: "a photo of a {}." for name in _IMAGENET_FAMILY},
}
# Datasets outside TCP's tables (toolkit choice): 4 context tokens before the class name, and
# the generic hand-crafted prompt.
TCP_DEFAULT_TEMPLATE = "X X X X {}."

SELECT7: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

IMAGENET80: tuple[str, ...] = (
    'a bad photo of a {}.',
    'a photo of many {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
)
# PromptSRC's frozen text teacher: the first 60 of the 80 templates.
IMAGENET60: tuple[str, ...] = IMAGENET80[:60]

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet80": IMAGENET80,
    "imagenet60": IMAGENET60,
    "select7": SELECT7,
    "single": (DEFAULT_TEMPLATE,),
}


def custom_template(dataset_name: str) -> str:
    """The per-dataset hand-crafted template; unknown (e.g. user) datasets get the generic one."""
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def resolve_templates(name: str, dataset_name: str) -> tuple[str, ...]:
    """Template set by config name: a key of :data:`TEMPLATE_SETS`, or ``custom``."""
    key = name.lower()
    if key == "custom":
        return (custom_template(dataset_name),)
    if key not in TEMPLATE_SETS:
        raise ValueError(
            f"unknown template set {name!r}; choose one of {sorted(TEMPLATE_SETS) + ['custom']}"
        )
    return TEMPLATE_SETS[key]


@torch.no_grad()
def text_bank(tower: TextTower, classnames: Sequence[str], templates: Sequence[str],
              mode: BankMode = "normalized_mean", chunk: int = 1024) -> Tensor:
    """Frozen class features (C, E) in fp32 from an ensemble of templates.

    Every (template, class) sentence is encoded once with the unprompted tower (truncated to its
    longest EOT, which is exact), in chunks so that 1000 classes x 80 templates fit in memory.
    """
    names = [clean_classname(c) for c in classnames]
    sentences = [t.format(c) for t in templates for c in names]
    # Any: the tower holds the stock model's tensors, which nn.Module's __getattr__ types as
    # ``Tensor | Module``; this is the positional-embedding Parameter.
    embedding: Any = tower.positional_embedding
    device = embedding.device
    feats = torch.cat([
        tower.encode_tokens(tokenize(sentences[i:i + chunk]).to(device)).float()
        for i in range(0, len(sentences), chunk)
    ]).view(len(templates), len(names), -1)
    if mode == "raw_mean":
        return feats.mean(dim=0)
    if mode != "normalized_mean":
        raise ValueError(f"bank mode must be 'normalized_mean' or 'raw_mean', got {mode!r}")
    return F.normalize(F.normalize(feats, dim=-1).mean(dim=0), dim=-1)
