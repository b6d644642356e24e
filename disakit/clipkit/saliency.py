"""Saliency-aware patch masking (DiSa, docs/methods/disa.md) and pictures of it.

Why a module: DiSa greys out the least text-relevant patches of an image before a second pass
through the prompted image encoder. Scoring patches, choosing them and painting them are plain
tensor operations that do not need the engine, are exact to test, and are shared by the trainer
and by ``scripts/visualize_saliency.py``, so users see exactly what training masks.

* :func:`patch_saliency`: cosine between each final-layer patch token (through ``ln_post`` and
  the projection, like the CLS feature) and the text feature of a target class. Any monotonic
  score (softmax, dot product) gives the same ranking, hence the same mask.
* :func:`least_salient_patches`: the k lowest scores, with a stable sort (ties go to the lower
  patch index), so the mask is deterministic.
* :func:`mask_patches`: paint the chosen patch-grid cells with a per-channel fill value, given
  in the (normalised) space of the input; :func:`mask_fill_value` converts "grey" (RGB 128),
  "mean" and "black" to that space.

Everything runs without gradient: the mask is a data transformation, not part of the graph.
Grid and patch sizes always come from the model (``VisionTower.grid_size``/``patch_size``).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from disakit.clipkit.encoders import VisionTower

MaskFill = Literal["grey", "mean", "black"]
MASK_FILLS: tuple[str, ...] = ("grey", "mean", "black")
GREY = 128.0 / 255.0  # the overview figure's RGB (128, 128, 128)


def num_masked_patches(ratio: float, num_patches: int) -> int:
    """``k = round(ratio × num_patches)``, halves rounded up (0.25 × 196 = 49 at ViT-B/16)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"MASK_RATIO must be between 0 and 1, got {ratio}")
    return int(math.floor(ratio * num_patches + 0.5))


@torch.no_grad()
def patch_saliency(tokens: Tensor, tower: VisionTower, text_feats: Tensor,
                   targets: Tensor) -> Tensor:
    """Scores (B, N) of the N = grid² patch tokens against each image's target class.

    ``tokens`` (B, L, width) are final-layer states before ``ln_post`` (CLS at 0, patches at
    1..N, then any appended prompts); ``text_feats`` (C, E) class features; ``targets`` (B,)
    class indices. Returns fp32 cosines without gradient.
    """
    num_patches = tower.grid_size ** 2
    if tokens.shape[1] < 1 + num_patches:
        raise ValueError(f"expected at least {1 + num_patches} tokens (CLS + {num_patches} "
                         f"patches), got {tokens.shape[1]}")
    patches = F.normalize(tower.project_tokens(tokens[:, 1:1 + num_patches]).float(), dim=-1)
    text = F.normalize(text_feats.float(), dim=-1)[targets]
    return torch.einsum("bne,be->bn", patches, text)


@torch.no_grad()
def least_salient_patches(scores: Tensor, k: int) -> Tensor:
    """Indices (B, k) of the k lowest scores per row; a stable sort, so ties → lower index."""
    if not 0 <= k <= scores.shape[-1]:
        raise ValueError(f"cannot select {k} of {scores.shape[-1]} patches")
    return torch.sort(scores, dim=-1, stable=True).indices[:, :k]


@torch.no_grad()
def random_patches(batch: int, num_patches: int, k: int, device: torch.device) -> Tensor:
    """k distinct random patch indices per image (the ``MASK_SALIENCY random`` ablation)."""
    return least_salient_patches(torch.rand(batch, num_patches, device=device), k)


def mask_fill_value(fill: MaskFill, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                    normalized: bool = True) -> Tensor:
    """Per-channel fill (3,) in the input's space.

    In [0, 1] pixel space ``grey`` is 128/255, ``mean`` the dataset mean colour and ``black`` 0;
    with ``normalized`` inputs each becomes ``(v − mean_c) / std_c`` (so ``mean`` is 0). Returned
    in fp32, rounded once from float64.
    """
    mean = torch.tensor([float(m) for m in pixel_mean], dtype=torch.float64)
    std = torch.tensor([float(s) for s in pixel_std], dtype=torch.float64)
    values = {"grey": torch.full_like(mean, GREY), "mean": mean, "black": torch.zeros_like(mean)}
    if fill not in values:
        raise ValueError(f"MASK_FILL must be one of {list(MASK_FILLS)}, got {fill!r}")
    value = (values[fill] - mean) / std if normalized else values[fill]
    return value.float()  # computed in float64, rounded once


@torch.no_grad()
def patch_mask(patch_idx: Tensor, grid: int, patch_size: int) -> Tensor:
    """Boolean pixel mask (B, 1, grid·p, grid·p): True inside the selected (row-major) patches."""
    cells = torch.zeros(patch_idx.shape[0], grid * grid, dtype=torch.bool, device=patch_idx.device)
    cells.scatter_(1, patch_idx, True)
    cells = cells.view(-1, 1, grid, grid)
    return cells.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)


@torch.no_grad()
def mask_patches(images: Tensor, patch_idx: Tensor, patch_size: int,
                 fill_value_per_channel: Tensor) -> Tensor:
    """A copy of ``images`` (B, 3, H, W) with the patches ``patch_idx`` (B, k) set to the fill.

    Patches are numbered row-major on the ViT grid (``H // patch_size`` per side), as the
    encoder's ``conv1`` flattens them. Pixels beyond the grid (if H is not a multiple of the
    patch size; CLIP's conv ignores them) are left unchanged.
    """
    grid = images.shape[-1] // patch_size
    mask = patch_mask(patch_idx, grid, patch_size)
    pad = (0, images.shape[-1] - mask.shape[-1], 0, images.shape[-2] - mask.shape[-2])
    mask = F.pad(mask, pad, value=False)
    fill = fill_value_per_channel.to(images.device, images.dtype).view(1, -1, 1, 1)
    return torch.where(mask, fill, images)


# -------------------------------------------------------------------- pictures
_HEAT_STOPS = np.array([[0, 0, 128], [0, 96, 255], [0, 220, 220], [255, 230, 0], [220, 20, 0]],
                       dtype=np.float64)  # low (blue) -> high (red) saliency


def to_uint8(images: Tensor, pixel_mean: Optional[Sequence[float]] = None,
             pixel_std: Optional[Sequence[float]] = None) -> np.ndarray:
    """Normalised images (B, 3, H, W) → uint8 RGB arrays (B, H, W, 3) (undo mean/std if given)."""
    x = images.detach().float().cpu()
    if pixel_mean is not None and pixel_std is not None:
        x = x * torch.tensor(pixel_std).view(1, 3, 1, 1) + torch.tensor(pixel_mean).view(1, 3, 1, 1)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def heat_colours(scores: np.ndarray) -> np.ndarray:
    """Scores (N,) → RGB (N, 3) uint8, min-max scaled per image, blue (low) to red (high)."""
    span = scores.max() - scores.min()
    t = (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)
    pos = t * (len(_HEAT_STOPS) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(_HEAT_STOPS) - 2)
    frac = (pos - lo)[:, None]
    return np.round(_HEAT_STOPS[lo] * (1 - frac) + _HEAT_STOPS[lo + 1] * frac).astype(np.uint8)


def heat_overlay(image: np.ndarray, scores: np.ndarray, grid: int, patch_size: int,
                 alpha: float = 0.75) -> np.ndarray:
    """The patch-grid heat map (nearest upsampling) blended over an (H, W, 3) uint8 image."""
    heat = heat_colours(scores).reshape(grid, grid, 3)
    heat = heat.repeat(patch_size, axis=0).repeat(patch_size, axis=1)
    out = image.astype(np.float64).copy()
    h, w = heat.shape[:2]
    out[:h, :w] = (1 - alpha) * out[:h, :w] + alpha * heat
    return np.round(out).astype(np.uint8)


def saliency_grid(rows: Sequence[Sequence[np.ndarray]], margin: int = 4) -> Image.Image:
    """Tile equally sized (H, W, 3) panels: one row per image, white margins around each."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + margin) + margin, cols * (w + margin) + margin, 3), 255,
                     dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            top, left = margin + i * (h + margin), margin + j * (w + margin)
            canvas[top:top + h, left:left + w] = panel
    return Image.fromarray(canvas)


def saliency_rows(images: Tensor, masked: Tensor, scores: Optional[Tensor], patch_idx: Tensor,
                  patch_size: int, pixel_mean: Optional[Sequence[float]] = None,
                  pixel_std: Optional[Sequence[float]] = None) -> list[list[np.ndarray]]:
    """Per image: [original, saliency heat map over it, masked image] as uint8 RGB panels.

    ``scores`` None (random masking) draws the masked patches as the low end of the heat map.
    ``pixel_mean``/``pixel_std`` undo the input normalisation (omit for [0, 1] inputs).
    """
    grid = images.shape[-1] // patch_size
    if scores is None:
        scores = torch.ones(patch_idx.shape[0], grid * grid).scatter_(1, patch_idx.cpu(), 0.0)
    originals = to_uint8(images, pixel_mean, pixel_std)
    greyed = to_uint8(masked, pixel_mean, pixel_std)
    heat = scores.detach().float().cpu().numpy()
    return [[orig, heat_overlay(orig, h, grid, patch_size), grey]
            for orig, h, grey in zip(originals, heat, greyed)]
