#!/usr/bin/env python
"""Training-step and evaluation speed, and peak memory, of every bundled prompt trainer.

Why: the toolkit's speed claims (text tower truncated to the longest prompt, frozen banks once
per run, cached class features at evaluation, one shared CLIP for frozen and prompted passes)
must be measurable without weights or datasets. Each trainer is built as ``train.py`` builds it
(its base-to-novel config from ``scripts/protocol.py``, so its published batch size and prompt
options) but directly from class names (``trainers.base.build_standalone``), on a randomly
initialised CLIP of the chosen architecture, and driven with synthetic images:

* train step: median wall time of ``forward_backward`` over ``--steps`` steps (fewer once
  ``--budget`` seconds are spent) after ``--warmup`` steps (mid-epoch steps: no LR step, no
  GPA), and images/s;
* evaluation: images/s of ``model_inference`` on ``--eval-batch`` images, model only, with the
  class text features cached where the method allows (every method but CoCoOp);
* peak memory: ``torch.cuda.max_memory_allocated`` over the training steps on CUDA; on CPU
  "n/a" (the process's peak RSS is printed below the table instead).

``--grad-checkpointing`` sets ``MODEL.GRAD_CHECKPOINTING True`` (each transformer block's
activations recomputed in the backward pass): run with and without it to see the trade-off,
a lower peak memory for a slower training step (same losses and gradients).

Prompt depths larger than the architecture's layers (e.g. depth 9 on the 2-layer ``tiny``) are
clamped to its layer count, TCP's class-token layer to its last block, MMRL's representation
layers to those it has (the last one if none). Class names are synthetic
(``"synthetic class <i>"``); trainers that
need class prototypes (DiSa, DAPT) get random unit vectors. DiSa's step includes its frozen
IMAGENET60 text bank only in the untimed warm-up (it is computed once per run).

Examples (from the repo root):

    python bench/bench_trainers.py --arch tiny --classes 50          # CPU smoke run (< 1 min)
    python bench/bench_trainers.py --arch ViT-B/16 --device cuda --prec fp16
    python bench/bench_trainers.py --arch ViT-B/16 --device cuda --prec fp16 --grad-checkpointing
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("DASSL_BACKEND", "dasslite")

import torch  # noqa: E402
from protocol import config_name, config_path  # noqa: E402
from tabulate import tabulate  # noqa: E402

from disakit.bundle import register  # noqa: E402
from disakit.clipkit.encoders import TextTower, VisionTower  # noqa: E402
from disakit.clipkit.random_clip import CLIP_ARCHS, build_random_clip  # noqa: E402
from disakit.dassl_api import get_cfg_default  # noqa: E402
from disakit.trainers.base import build_standalone  # noqa: E402
from disakit.trainers.config import extend_cfg  # noqa: E402

register(verbose=False)

DEFAULT_TRAINERS = ("CoOp", "CoCoOp", "KgCoOp", "MaPLe", "IVLP", "PromptSRC", "VPT", "DAPT", "DPL",
                    "DiSa", "TCP", "MMRL", "MMRLpp")
DEPTH_KEYS = ("PROMPT_DEPTH", "PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION")


def trainer_cfg(trainer: str, args: argparse.Namespace, layers: int):
    """The trainer's base-to-novel config, with this run's precision, batch size and depths."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(config_path(trainer, config_name(trainer, "base2new"))))
    cfg.TRAINER.NAME = trainer
    cfg.MODEL.GRAD_CHECKPOINTING = bool(args.grad_checkpointing)
    node = cfg.TRAINER[trainer.upper()]
    node.PREC = args.prec
    for key in DEPTH_KEYS:
        if key in node:
            node[key] = min(node[key], layers)
    if "CLASS_TOKEN_LAYER" in node:  # TCP's class-aware tokens: a block index (0-based)
        node.CLASS_TOKEN_LAYER = min(node.CLASS_TOKEN_LAYER, layers - 1)
    if "REP_LAYERS" in node:  # MMRL's 1-indexed representation layers: keep those that exist
        node.REP_LAYERS = [n for n in node.REP_LAYERS if n <= layers] or [layers]
    if args.batch_size:
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = args.batch_size
    return cfg


def fake_prototypes(obj, num_classes: int, dim: int, device: torch.device) -> None:
    """Random unit class prototypes for trainers that need them (DiSa's L_DiR, DAPT's L_intra):
    ``build_standalone`` has no dataset to compute them from, and their values do not change
    the cost of a step."""
    if hasattr(obj, "prototypes") and obj.prototypes is None:
        obj.prototypes = torch.nn.functional.normalize(torch.randn(num_classes, dim, device=device),
                                                       dim=-1)


def median_seconds(fn: Callable[[], object], args: argparse.Namespace, device: torch.device,
                   warmup: int) -> float:
    """Median wall time of ``fn`` after ``warmup`` untimed calls (CUDA synchronised).

    At most ``args.steps`` timed calls, fewer once ``args.budget`` seconds are spent (at least
    one), so that slow cases (CoCoOp's evaluation on CPU) keep the whole run short.
    """
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        timed()
    times: list[float] = []
    while len(times) < args.steps and (not times or sum(times) < args.budget):
        times.append(timed())
    return statistics.median(times)


def bench_one(trainer: str, args: argparse.Namespace, classnames: list[str]) -> list:
    """One table row: build the trainer quietly, then time training and evaluation."""
    device = torch.device(args.device)
    clip_model = build_random_clip(args.arch)
    layers = min(TextTower(clip_model).num_layers, VisionTower(clip_model).num_layers)
    cfg = trainer_cfg(trainer, args, layers)
    with contextlib.redirect_stdout(io.StringIO()):
        obj = build_standalone(cfg, clip_model, classnames, device)
    fake_prototypes(obj, len(classnames), clip_model.visual.output_dim, device)
    batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    size = clip_model.visual.input_resolution
    train_batch = {"img": torch.randn(batch, 3, size, size, device=device),
                   "label": torch.randint(len(classnames), (batch,), device=device)}
    obj.num_batches = 1 << 30  # mid-epoch steps only
    obj.set_model_mode("train")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = median_seconds(lambda: obj.forward_backward(train_batch), args, device, args.warmup)
    peak = (f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f}"
            if device.type == "cuda" else "n/a")
    obj.set_model_mode("eval")
    eval_images = torch.randn(args.eval_batch, 3, size, size, device=device)
    evaluation = median_seconds(lambda: obj.model_inference(eval_images), args, device,
                                warmup=1)  # the warm-up call also fills the text-feature cache
    params = sum(p.numel() for p in obj.model.prompt_learner.parameters())
    return [trainer, config_name(trainer, "base2new"), batch, f"{params:,}", f"{step * 1e3:.1f}",
            f"{batch / step:.1f}", f"{args.eval_batch / evaluation:.1f}", peak]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="tiny", choices=sorted(CLIP_ARCHS),
                        help="random CLIP architecture (default tiny)")
    parser.add_argument("--classes", type=int, default=500, help="number of classes (500)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="training batch size (default: each trainer's published one)")
    parser.add_argument("--eval-batch", type=int, default=100, help="evaluation batch (100)")
    parser.add_argument("--prec", default="fp16", choices=["fp16", "fp32", "amp"],
                        help="TRAINER.<NAME>.PREC (fp16 and amp run fp32 on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up training steps")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds after which a measurement stops adding timed steps (2)")
    parser.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS))
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="MODEL.GRAD_CHECKPOINTING True: recompute block activations in the "
                             "backward pass (less memory, slower steps)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.manual_seed(0)
    classnames = [f"synthetic class {i}" for i in range(args.classes)]
    rows = [bench_one(t, args, classnames) for t in args.trainers]
    print(f"arch {args.arch}, {args.classes} classes, prec {args.prec}, device {args.device}, "
          f"gradient checkpointing {'on' if args.grad_checkpointing else 'off'}, "
          f"median of <= {args.steps} steps ({args.budget:g} s budget) after {args.warmup} "
          f"warm-up, torch {torch.__version__}")
    print(tabulate(rows, headers=["trainer", "config", "batch", "learned params",
                                  "train step ms", "train img/s", "eval img/s", "peak MiB"],
                   tablefmt="github"))
    if args.device == "cpu":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"CPU: peak memory per trainer n/a; process peak RSS {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
