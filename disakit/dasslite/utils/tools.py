"""Small filesystem, seeding and string helpers (Dassl's ``dassl.utils.tools``).

Kept dependency-light: PIL, numpy and torch are imported only inside the functions that need
them, so that ``import dasslite.utils`` stays cheap.
"""
from __future__ import annotations

import difflib
import errno
import json
import os
import os.path as osp
import random
import warnings
from typing import Any, List, Optional, Sequence

__all__ = [
    "mkdir_if_missing",
    "check_isfile",
    "read_json",
    "write_json",
    "read_image",
    "listdir_nohidden",
    "tolist_if_not",
    "get_most_similar_str_to_a_from_b",
    "set_random_seed",
    "collect_env_info",
]


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents) unless it exists; tolerant of a concurrent creator."""
    if not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def check_isfile(fpath: str) -> bool:
    """Return whether ``fpath`` is a file, warning when it is not (Dassl behaviour)."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn('No file found at "{}"'.format(fpath), stacklevel=2)
    return isfile


def read_json(fpath: str) -> Any:
    """Load a JSON file."""
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as JSON with Dassl's layout (indent 4), creating the parent folder."""
    mkdir_if_missing(osp.dirname(fpath) or ".")
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def read_image(path: str):
    """Open an image as RGB (``PIL.Image.Image``)."""
    from PIL import Image

    return Image.open(path).convert("RGB")


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """List entries of ``path`` not starting with ``.``; ``os.listdir`` order unless ``sort``."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def tolist_if_not(x: Any) -> list:
    """Wrap ``x`` in a list unless it already is one."""
    if not isinstance(x, list):
        x = [x]
    return x


def get_most_similar_str_to_a_from_b(a: str, b: Sequence[str]) -> Optional[str]:
    """Return the string of ``b`` most similar to ``a`` (ties go to the later candidate)."""
    highest_sim: float = 0
    chosen = None
    for candidate in b:
        sim = difflib.SequenceMatcher(None, a, candidate).ratio()
        if sim >= highest_sim:
            highest_sim = sim
            chosen = candidate
    return chosen


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy and torch (CPU and all CUDA devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def get_rng_state() -> dict:
    """All global RNG states (Python, numpy, torch CPU and CUDA) as checkpoint-safe data.

    Saved with each checkpoint so that a resumed run draws the same batches and augmentations
    as an uninterrupted one. Only tensors and plain Python values (``weights_only``-loadable).
    """
    import numpy as np
    import torch

    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    # The global RandomState is MT19937, whose legacy state is always the 5-tuple.
    assert isinstance(np_state, tuple)
    kind, keys, pos, has_gauss, cached = np_state
    return {
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    import numpy as np
    import torch

    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def collect_env_info() -> str:
    """PyTorch's environment report plus the Pillow version (slow: may take seconds)."""
    import PIL
    from torch.utils.collect_env import get_pretty_env_info

    env_str = get_pretty_env_info()
    env_str += "\n        Pillow ({})".format(PIL.__version__)
    return env_str
