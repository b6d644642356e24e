"""Image transforms built from ``cfg.INPUT`` (Dassl's ``dassl.data.transforms.transforms``).

``build_transform`` reproduces Dassl's train and test pipelines step for step, including the
lines it prints (they appear in every ``log.txt`` and users compare them across runs). Each
choice maps to one small step builder that returns ``(printed line, transform)``; the pipeline
order is the order of the step tables below, which is Dassl's order.

The AutoAugment policies and the three RandAugment variants are Dassl's own re-implementations
and are not reproduced here: asking for them raises a ``ValueError`` before anything is built.
"""
from __future__ import annotations

import random
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms import functional as F
from torchvision.transforms.functional import InterpolationMode
from yacs.config import CfgNode

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "UNSUPPORTED_CHOICES",
    "build_transform",
    "Random2DTranslation",
    "InstanceNormalization",
    "Cutout",
    "GaussianNoise",
]

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # a no-op in training, as in Dassl: the test pipeline always center-crops
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

# Valid in Dassl but not implemented by dasslite (Dassl ships its own policy code for them).
UNSUPPORTED_CHOICES = [
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

Transform = Callable
Step = Tuple[str, Transform]


class Random2DTranslation:
    """With probability ``p``, enlarge to 1.125x and randomly crop back to (height, width).

    Why: Dassl's ``random_translation`` choice; otherwise the image is just resized. Uses
    Python's ``random`` like Dassl, so seeded runs draw the same offsets.
    """

    def __init__(
        self,
        height: int,
        width: int,
        p: float = 0.5,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    ) -> None:
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_width = int(round(self.width * 1.125))
        new_height = int(round(self.height * 1.125))
        resized = F.resize(img, [new_height, new_width], interpolation=self.interpolation)
        left = int(round(random.uniform(0, new_width - self.width)))
        top = int(round(random.uniform(0, new_height - self.height)))
        return F.crop(resized, top, left, self.height, self.width)


class InstanceNormalization:
    """Normalise each channel of a (C, H, W) tensor to zero mean and unit std."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        channels = img.shape[0]
        flat = img.reshape(channels, -1)
        mean = flat.mean(1).view(channels, 1, 1)
        std = flat.std(1).view(channels, 1, 1)
        return (img - mean) / (std + self.eps)


class Cutout:
    """Zero out ``n_holes`` square patches of side ``length`` (centres drawn with numpy)."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.size(1), img.size(2)
        mask = np.ones((h, w), np.float32)
        half = self.length // 2
        for _ in range(self.n_holes):
            y = np.random.randint(h)
            x = np.random.randint(w)
            y1, y2 = np.clip(y - half, 0, h), np.clip(y + half, 0, h)
            x1, x2 = np.clip(x - half, 0, w), np.clip(x + half, 0, w)
            mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)


class GaussianNoise:
    """With probability ``p``, add N(mean, std) noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


def _interpolation(cfg: CfgNode) -> InterpolationMode:
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise ValueError(
            f"INPUT.INTERPOLATION must be one of {list(INTERPOLATION_MODES)}, got {name!r}"
        )
    return INTERPOLATION_MODES[name]


# ---- step builders: cfg -> (printed line, transform) -------------------------------------


def _random_translation(cfg: CfgNode) -> Step:
    size = cfg.INPUT.SIZE
    return "+ random translation", Random2DTranslation(size[0], size[1])


def _random_crop(cfg: CfgNode) -> Step:
    pad = cfg.INPUT.CROP_PADDING
    return f"+ random crop (padding = {pad})", RandomCrop(cfg.INPUT.SIZE, padding=pad)


def _random_resized_crop(cfg: CfgNode) -> Step:
    size, scale = cfg.INPUT.SIZE, cfg.INPUT.RRCROP_SCALE
    tfm = RandomResizedCrop(size, scale=scale, interpolation=_interpolation(cfg))
    return f"+ random resized crop (size={size}, scale={scale})", tfm


def _random_flip(cfg: CfgNode) -> Step:
    return "+ random flip", RandomHorizontalFlip()


def _colorjitter(cfg: CfgNode) -> Step:
    b, c = cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C
    s, h = cfg.INPUT.COLORJITTER_S, cfg.INPUT.COLORJITTER_H
    line = f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})"
    return line, ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)


def _randomgrayscale(cfg: CfgNode) -> Step:
    return "+ random gray scale", RandomGrayscale(p=cfg.INPUT.RGS_P)


def _gaussian_blur(cfg: CfgNode) -> Step:
    k, p = cfg.INPUT.GB_K, cfg.INPUT.GB_P
    return f"+ gaussian blur (kernel={k})", RandomApply([GaussianBlur(k)], p=p)


def _cutout(cfg: CfgNode) -> Step:
    n, length = cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN
    return f"+ cutout (n_holes={n}, length={length})", Cutout(n, length)


def _normalize(cfg: CfgNode) -> Step:
    mean, std = cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD
    return f"+ normalization (mean={mean}, std={std})", Normalize(mean=mean, std=std)


def _gaussian_noise(cfg: CfgNode) -> Step:
    mean, std = cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD
    return f"+ gaussian noise (mean={mean}, std={std})", GaussianNoise(mean, std)


def _instance_norm(cfg: CfgNode) -> Step:
    return "+ instance normalization", InstanceNormalization()


# Dassl's order. PIL-image steps come before ToTensor, tensor steps after it.
_TRAIN_PIL_STEPS = [
    ("random_translation", _random_translation),
    ("random_crop", _random_crop),
    ("random_resized_crop", _random_resized_crop),
    ("random_flip", _random_flip),
    ("colorjitter", _colorjitter),
    ("randomgrayscale", _randomgrayscale),
    ("gaussian_blur", _gaussian_blur),
]
_TRAIN_TENSOR_STEPS = [
    ("cutout", _cutout),
    ("normalize", _normalize),
    ("gaussian_noise", _gaussian_noise),
    ("instance_norm", _instance_norm),
]
_TEST_TENSOR_STEPS = [
    ("normalize", _normalize),
    ("instance_norm", _instance_norm),
]


def _check_choices(choices: Sequence[str]) -> None:
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ValueError(
                f"Unknown transform choice {choice!r} (in INPUT.TRANSFORMS or --transforms); "
                f"valid choices are {AVAI_CHOICES}"
            )
        if choice in UNSUPPORTED_CHOICES:
            raise ValueError(
                f"Transform choice {choice!r} is not implemented by dasslite; remove it from "
                f"INPUT.TRANSFORMS or install Dassl.pytorch, which provides it"
            )


def _apply_steps(cfg: CfgNode, choices: Sequence[str], table, pipeline: List) -> None:
    """Print and append the steps of ``table`` that are chosen, in table order."""
    for choice, make_step in table:
        if choice in choices:
            line, tfm = make_step(cfg)
            print(line)
            pipeline.append(tfm)


def _build_transform_train(cfg: CfgNode, choices: Sequence[str], target_size: str) -> Compose:
    print("Building transform_train")
    pipeline: List = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {target_size}")
        pipeline.append(Resize(cfg.INPUT.SIZE, interpolation=_interpolation(cfg)))
    _apply_steps(cfg, choices, _TRAIN_PIL_STEPS, pipeline)
    print("+ to torch tensor of range [0, 1]")
    pipeline.append(ToTensor())
    _apply_steps(cfg, choices, _TRAIN_TENSOR_STEPS, pipeline)
    return Compose(pipeline)


def _build_transform_test(cfg: CfgNode, choices: Sequence[str], target_size: str) -> Compose:
    print("Building transform_test")
    size = cfg.INPUT.SIZE
    print(f"+ resize the smaller edge to {max(size)}")
    pipeline: List = [Resize(max(size), interpolation=_interpolation(cfg))]
    print(f"+ {target_size} center crop")
    pipeline.append(CenterCrop(size))
    print("+ to torch tensor of range [0, 1]")
    pipeline.append(ToTensor())
    _apply_steps(cfg, choices, _TEST_TENSOR_STEPS, pipeline)
    return Compose(pipeline)


def build_transform(
    cfg: CfgNode, is_train: bool = True, choices: Optional[Sequence[str]] = None
) -> Optional[Compose]:
    """Build the train or test transform from ``cfg.INPUT`` (``choices`` default to TRANSFORMS).

    Why: one place decides the augmentation, so every trainer sees Dassl's exact pipelines
    (family config: RandomResizedCrop + flip + normalize for training; resize of the shorter
    edge + center crop + normalize for testing). Returns None when ``INPUT.NO_TRANSFORM``.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    _check_choices(choices)
    target_size = f"{cfg.INPUT.SIZE[0]}x{cfg.INPUT.SIZE[1]}"
    if is_train:
        return _build_transform_train(cfg, choices, target_size)
    return _build_transform_test(cfg, choices, target_size)
