#!/usr/bin/env python
"""Show what DiSa masks: PNG grids of (original | saliency heat map | masked image) per image.

Takes ``train.py``'s arguments (dataset and trainer configs, ``--backbone``, optional
``--model-dir``/``--load-epoch`` for learned prompts, trailing ``KEY VALUE`` options) and runs
exactly the trainer's saliency scoring and masking (``TRAINER.DISA.MASK_*``) on the first
``--num-images`` images, without gradient:

    python scripts/visualize_saliency.py --root $DATA \\
        --dataset-config-file configs/datasets/eurosat.yaml \\
        --config-file configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml \\
        --model-dir \\
        output/base2new/train_base/eurosat/shots_16/DiSa/vit_b16_c2_ep20_batch4_4+4ctx/seed1 \\
        --load-epoch 20 --num-images 8 --out saliency_pngs DATASET.SUBSAMPLE_CLASSES base

``--split train`` (default) uses the few-shot training images with the deterministic test
transform (crops would hide what is masked); ``--split test`` the test set. Heat maps run from
blue (least salient, masked first) to red. Writes ``<out>/saliency_<i>.png``, ``--per-grid``
images per file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

import train  # noqa: E402  (registers datasets and trainers; its parser and config setup)
from disakit.clipkit import saliency  # noqa: E402
from disakit.dassl_api import build_trainer  # noqa: E402
from disakit.trainers.disa import DiSa  # noqa: E402
from disakit.trainers.prototypes import isolated_rng, prototype_batches  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = train.build_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--num-images", type=int, default=8, help="images to show (8)")
    parser.add_argument("--per-grid", type=int, default=8, help="images per PNG file (8)")
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    return parser


def image_batches(trainer: DiSa, split: str) -> Iterator[dict]:
    """Batches of the chosen split with the deterministic test transform."""
    if split == "test":
        yield from trainer.test_loader
        return
    tfm = trainer.test_loader.dataset.transform
    with isolated_rng(0) as generator:
        yield from prototype_batches(trainer.cfg, trainer.dm.dataset.train_x, tfm, generator)


@torch.no_grad()
def panels(trainer: DiSa, images: torch.Tensor, labels: torch.Tensor) -> list[list]:
    """The trainer's own scoring and masking of one batch, rendered as image rows."""
    with trainer.precision.autocast():
        feats = trainer.batch_features(images, tokens=True, frozen_tokens=True)
        batch = trainer.mask_batch(images, labels, feats)
    patch = trainer.model.vision.patch_size
    masked = saliency.mask_patches(images, batch.patch_idx, patch, trainer.mask_fill_value())
    inp = trainer.cfg.INPUT
    norm = "normalize" in inp.TRANSFORMS
    return saliency.saliency_rows(images, masked, batch.scores, batch.patch_idx, patch,
                                  inp.PIXEL_MEAN if norm else None, inp.PIXEL_STD if norm else None)


def main(argv: list[str] | None = None) -> list[Path]:
    args = build_parser().parse_args(argv)
    args.trainer = args.trainer or "DiSa"
    args.output_dir = args.output_dir or args.out
    trainer = build_trainer(train.setup_cfg(args))
    if not isinstance(trainer, DiSa):
        raise SystemExit(f"--trainer must be DiSa (or a subclass), got {args.trainer}")
    if args.model_dir:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    trainer.set_model_mode("eval")
    rows: list = []
    for batch in image_batches(trainer, args.split):
        images, labels = trainer.parse_batch_test(batch)
        rows += panels(trainer, images, labels)
        if len(rows) >= args.num_images:
            break
    rows = rows[:args.num_images]
    os.makedirs(args.out, exist_ok=True)
    written = []
    for i in range(0, len(rows), args.per_grid):
        path = Path(args.out) / f"saliency_{i // args.per_grid:03d}.png"
        saliency.saliency_grid(rows[i:i + args.per_grid]).save(path)
        written.append(path)
    print(f"Wrote {len(rows)} images to {len(written)} PNG file(s) in {args.out}")
    return written


if __name__ == "__main__":
    main()
