#!/usr/bin/env python
"""Write tiny synthetic copies of the benchmark datasets in their exact upstream layouts.

Why: every trainer and every dataset reader can then be run end to end (``--root DIR``)
without downloading the real data. Images are small JPEGs whose colour and stripes depend on
the class. Examples (from the repo root):

    python scripts/make_synthetic_dataset.py --dataset oxford_pets --root /tmp/data
    python scripts/make_synthetic_dataset.py --dataset all --root /tmp/data --classes 10 \\
        --per-class 16 4 8
    python scripts/make_synthetic_dataset.py --dataset Caltech101 --root /tmp/data \\
        --no-split-json      # the reader then rebuilds the split from the raw folders
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from disakit.datasets import YAML_NAMES  # noqa: E402
from disakit.datasets.synthetic import (  # noqa: E402
    DEFAULT_NUM_CLASSES,
    DEFAULT_PER_CLASS,
    make_dataset,
    resolve_name,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    names = ", ".join(f"{yaml} ({reg})" for reg, yaml in YAML_NAMES.items())
    parser = argparse.ArgumentParser(
        description="Write synthetic datasets in the CoOp layouts (see DATASETS.md).",
        epilog=f"Datasets (YAML name, registry name): {names}.",
    )
    parser.add_argument("--dataset", nargs="+", required=True,
                        help="YAML or registry name(s), or 'all' for all 15")
    parser.add_argument("--root", type=Path, required=True,
                        help="data root (DATASET.ROOT / --root of train.py)")
    parser.add_argument("--classes", type=int, default=DEFAULT_NUM_CLASSES,
                        help=f"classes per dataset (default {DEFAULT_NUM_CLASSES})")
    parser.add_argument("--per-class", "--shots-per-class", dest="per_class", type=int,
                        nargs=3, default=list(DEFAULT_PER_CLASS),
                        metavar=("TRAIN", "VAL", "TEST"),
                        help="images per class in train, val and test (default %(default)s)")
    parser.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--no-split-json", action="store_true",
                        help="leave out split_zhou_*.json so readers rebuild the split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image noise")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    wanted = list(YAML_NAMES) if "all" in args.dataset else args.dataset
    try:
        names = [resolve_name(name) for name in wanted]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in names:
        start = time.perf_counter()
        folder = make_dataset(name, args.root, num_classes=args.classes,
                              per_class=tuple(args.per_class), image_size=args.image_size,
                              with_split_json=not args.no_split_json, seed=args.seed)
        print(f"{name}: wrote {folder} in {time.perf_counter() - start:.2f}s")
    print(f"Use it with: --root {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
