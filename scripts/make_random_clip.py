#!/usr/bin/env python
"""Write a random-weight CLIP file in OpenAI's format (TorchScript archive or state dict).

Why: real CLIP weights cannot be downloaded on the project's machines, but tests, benchmarks and
demo runs need files that load exactly like the official ones. Examples (from the repo root):

    python scripts/make_random_clip.py --arch tiny --out /tmp/clip/tiny.pt
    CLIP_CACHE_DIR=/tmp/clip python scripts/make_random_clip.py --arch ViT-B/16 \\
        --out /tmp/clip/random-vit-b-16.pt --seed 1

Note: a file written under an official name (e.g. ViT-B-16.pt) inside the CLIP cache folder is
SHA256-checked at load time and rejected; give random weights another name and pass the path.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from disakit.clipkit.random_clip import CLIP_ARCHS, SAVE_FORMATS, build_random_clip, save_clip  # noqa: E402

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
logger = logging.getLogger("make_random_clip")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options; ``--help`` shows the examples from the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, choices=list(CLIP_ARCHS),
                        help="architecture: 'tiny' (fast tests) or a real OpenAI size")
    parser.add_argument("--out", required=True, type=Path, help="output file (folders are created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--format", default="jit", choices=SAVE_FORMATS,
                        help="'jit': TorchScript archive like OpenAI's files (default); "
                        "'state_dict': plain torch.save of the state dict")
    parser.add_argument("--dtype", default="fp16", choices=list(DTYPES),
                        help="storage precision; fp16 is the official layout (default)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build the random model and write it; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    model = build_random_clip(args.arch, seed=args.seed)
    try:
        path = save_clip(model, args.out, fmt=args.format, dtype=DTYPES[args.dtype])
    except OSError as err:  # a read-only folder, a parent that is a file, a full disk, ...
        blocker = err.filename and Path(err.filename)
        reason = (f"{blocker} is a file, not a folder"
                  if blocker and blocker.exists() and not blocker.is_dir()
                  and blocker != args.out.expanduser() else err.strerror or str(err))
        print(f"make_random_clip.py: error: cannot write {args.out}: {reason}. Fix: pass --out "
              "a file path in a writable folder, e.g. --out /tmp/clip/tiny.pt", file=sys.stderr)
        return 1
    logger.info("Wrote random CLIP (arch=%s, seed=%d, format=%s, dtype=%s) to %s",
                args.arch, args.seed, args.format, args.dtype, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
