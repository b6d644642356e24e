"""Random-weight CLIP models and files in OpenAI's formats, for tests, benchmarks and demos.

Why: real weights cannot be downloaded here, yet loaders, trainers and benchmarks must run on
files that look exactly like the official ones (same keys, fp16 layout, TorchScript archive).
Models are the stock ``clip.model.CLIP`` with clip's own initialisation; every architecture
round-trips through ``clip.model.build_model`` (which infers heads as ``width // 64``).
"""
from __future__ import annotations

import copy
import difflib
import errno
import math
import os
import warnings
from pathlib import Path
from typing import Any, Literal, Union

import torch

from disakit.clipkit.compat import clip

__all__ = ["CLIP_ARCHS", "SAVE_FORMATS", "build_random_clip", "save_clip"]

SAVE_FORMATS = ("jit", "state_dict")
_SAVE_DTYPES = (torch.float16, torch.float32)
_PRETRAINED_LOGIT_SCALE = math.log(100.0)  # pretrained CLIP's exp(logit_scale) is 100


def _arch(embed_dim: int, vision_layers: Any, vision_width: int, patch: Any,
          text_width: int, text_layers: int, resolution: int = 224) -> dict[str, Any]:
    """kwargs of ``clip.model.CLIP``; text heads follow build_model's ``width // 64`` rule."""
    return dict(embed_dim=embed_dim, image_resolution=resolution, vision_layers=vision_layers,
                vision_width=vision_width, vision_patch_size=patch, context_length=77,
                vocab_size=49408, transformer_width=text_width,
                transformer_heads=text_width // 64, transformer_layers=text_layers)


CLIP_ARCHS: dict[str, dict[str, Any]] = {
    # Smallest model the real tokenizer works with (full vocabulary, 77 tokens): ~3.4M params.
    "tiny": _arch(64, 2, 64, 32, 64, 2),
    "ViT-B/32": _arch(512, 12, 768, 32, 512, 12),
    "ViT-B/16": _arch(512, 12, 768, 16, 512, 12),
    "ViT-L/14": _arch(768, 24, 1024, 14, 768, 12),
    "RN50": _arch(1024, (3, 4, 6, 3), 64, None, 512, 12),
}


def _arch_kwargs(arch: str) -> dict[str, Any]:
    if arch not in CLIP_ARCHS:
        close = difflib.get_close_matches(arch, list(CLIP_ARCHS), n=1, cutoff=0.0)
        raise ValueError(f"Unknown random-CLIP architecture {arch!r} (closest: {close[0]!r}); "
                         f"choose one of {', '.join(CLIP_ARCHS)}.")
    return dict(CLIP_ARCHS[arch])


def build_random_clip(arch: str, seed: int = 0) -> Any:
    """Build a stock CLIP with clip's random init, deterministic per ``seed``, fp32, eval mode.

    Returns a ``clip.model.CLIP``, typed ``Any``: the class comes from the installed ``clip``
    package, loaded at run time under a private name (:mod:`disakit.clipkit.compat`).

    ``logit_scale`` is set to ln(100), like pretrained CLIP. The global RNG is left untouched.
    """
    kwargs = _arch_kwargs(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip.model.CLIP(**kwargs)
    with torch.no_grad():
        model.logit_scale.fill_(_PRETRAINED_LOGIT_SCALE)
    return model.float().eval()


def _export_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """CPU copy in the official storage layout.

    fp16 means ``clip.model.convert_weights`` (conv/linear/attention/projections fp16,
    embeddings and LayerNorms fp32), which is how OpenAI's files and ``build_model`` store it.
    """
    export = copy.deepcopy(model).cpu().float().eval()
    if dtype == torch.float16:
        clip.model.convert_weights(export)
    return export


def _add_openai_metadata(model: Any) -> None:
    """Register the scalar entries OpenAI's archives carry (``build_model`` drops them).

    ``model`` is a stock ``clip.model.CLIP`` (``Any``: its attributes are read dynamically).
    """
    values = {"input_resolution": model.visual.input_resolution,
              "context_length": model.context_length, "vocab_size": model.vocab_size}
    for name, value in values.items():
        if hasattr(model, name) and name not in model._buffers:
            delattr(model, name)
        model.register_buffer(name, torch.tensor(int(value)))


def _example_inputs(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One blank image and one ``[SOT, EOT, pad...]`` sequence, enough to trace every op.

    ``model`` is a stock ``clip.model.CLIP`` (``Any``: its attributes are read dynamically).
    """
    size = int(model.visual.input_resolution)
    vocab, length = int(model.vocab_size), int(model.context_length)
    text = torch.zeros(1, length, dtype=torch.long)
    text[0, :2] = torch.tensor([vocab - 2, vocab - 1])
    return torch.zeros(1, 3, size, size), text


def _trace_openai_layout(export: torch.nn.Module) -> torch.jit.ScriptModule:
    """TorchScript archive with ``forward``, ``encode_image`` and ``encode_text``, like OpenAI's."""
    image, text = _example_inputs(export)
    _add_openai_metadata(export)
    methods = {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and torch.jit deprecation chatter
        # check_trace=False: the attention mask's dtype cast is a constant the checker rejects.
        return torch.jit.trace_module(export, methods, check_trace=False)


def _save_torchscript(module: torch.jit.ScriptModule, f) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(module, f)


def save_clip(model: torch.nn.Module, path: Union[str, "os.PathLike[str]"],
              fmt: Literal["jit", "state_dict"] = "jit",
              dtype: torch.dtype = torch.float16) -> Path:
    """Write ``model`` like an official CLIP file; returns the written path.

    ``"jit"`` gives a TorchScript archive whose ``state_dict()`` has OpenAI's key names (what
    ``clip.load(path, jit=False)`` and :func:`clipkit.loading.load_clip` read); ``"state_dict"``
    a plain ``torch.save`` of the state dict. ``dtype`` is float16 (official layout) or float32.
    """
    if fmt not in SAVE_FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(SAVE_FORMATS)}.")
    if dtype not in _SAVE_DTYPES:
        raise ValueError(f"Unsupported dtype {dtype}; use torch.float16 or torch.float32.")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    export = _export_copy(model, dtype)
    traced = _trace_openai_layout(export) if fmt == "jit" else None
    # Opened here, not by torch: an unwritable path is then an OSError naming it, not a
    # RuntimeError from torch's C++ writer.
    with open(path, "wb") as f:
        if traced is not None:
            _save_torchscript(traced, f)
        else:
            torch.save(export.state_dict(), f)
    return path
