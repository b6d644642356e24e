"""Checkpoint I/O and layer helpers (Dassl's ``dassl.utils.torchtools``).

Checkpoints written here are tensor/primitive-only, and every file is read through
:func:`runkit.safe_load.safe_torch_load` (``weights_only=True`` plus the allow-list of what
real Dassl pickles), so loading never runs code from a file. They are written atomically
(temporary file in the same folder, then ``os.replace``): an interrupted save never leaves a
truncated ``model.pth.tar-N`` nor destroys an existing one.
"""
from __future__ import annotations

import os
import os.path as osp
import shutil
import tempfile
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import torch
import torch.nn as nn

from disakit.runkit.safe_load import UnsafeCheckpointError, safe_torch_load

from .tools import mkdir_if_missing

__all__ = [
    "RESUME_FILE",
    "remove_stale_temp_files",
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "restore_checkpoint",
    "load_pretrained_weights",
    "count_num_param",
    "open_all_layers",
    "open_specified_layers",
    "init_network_weights",
]


def _strip_module_prefix(state_dict: Dict[str, Any]) -> "OrderedDict[str, Any]":
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    return OrderedDict(
        (k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items()
    )


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(fpath: str, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``fpath``, then move it into place."""
    folder, name = osp.split(fpath)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
    os.close(fd)
    try:
        os.chmod(tmp, _default_file_mode())  # mkstemp creates 0600; use the usual mode
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, fpath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


# The rolling checkpoint written after every epoch that keeps no ``model.pth.tar-<epoch>``: a
# kill loses at most the epoch in progress, and disk use stays one file per model.
RESUME_FILE = "model-resume.pth.tar"


def remove_stale_temp_files(folder: str) -> list[str]:
    """Delete the temporary files an interrupted :func:`_atomic_write` left in ``folder``.

    Why: a kill between writing and ``os.replace`` leaves ``.<name>.<random>.tmp`` behind; the
    complete files and the pointer are untouched, so the leftovers are garbage. Call it only
    while holding the run's folder lock (no concurrent writer).
    """
    if not osp.isdir(folder):
        return []
    stale = [osp.join(folder, f) for f in os.listdir(folder)
             if f.startswith(".") and f.endswith(".tmp")]
    for path in stale:
        os.remove(path)
        print(f"Removed {path} (left by an interrupted checkpoint write)")
    return stale


def _write_torch(obj: Any) -> Callable[[str], None]:
    # Saving through a file object names the zip's inner folder "archive" instead of the
    # (random) temporary file name, so identical states give byte-identical files.
    def write(path: str) -> None:
        with open(path, "wb") as f:
            torch.save(obj, f)

    return write


def _write_text(text: str) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    return write


def save_checkpoint(
    state: Dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> None:
    """Save ``state`` as ``save_dir/model.pth.tar-<epoch>`` (or ``save_dir/<model_name>``).

    Also (re)writes the ``checkpoint`` pointer file read by ``resume_from_checkpoint`` and, with
    ``is_best``, copies the file to ``model-best.pth.tar``. ``state`` holds ``state_dict``,
    ``epoch`` (1-based), ``optimizer``, ``scheduler``, ``val_result`` and optional extras.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _strip_module_prefix(state["state_dict"])
    if not model_name:
        model_name = "model.pth.tar-" + str(state["epoch"])
    fpath = osp.join(save_dir, model_name)
    _atomic_write(fpath, _write_torch(state))
    print(f"Checkpoint saved to {fpath}")
    pointer = osp.join(save_dir, "checkpoint")
    _atomic_write(pointer, _write_text("{}\n".format(osp.basename(fpath))))
    resume_file = osp.join(save_dir, RESUME_FILE)
    if osp.basename(fpath).startswith("model.pth.tar-") and osp.exists(resume_file):
        os.remove(resume_file)  # superseded: the pointer now names a newer, kept checkpoint
    if is_best:
        best_fpath = osp.join(osp.dirname(fpath), "model-best.pth.tar")
        _atomic_write(best_fpath, lambda tmp: shutil.copyfile(fpath, tmp))
        print('Best checkpoint saved to "{}"'.format(best_fpath))


def load_checkpoint(fpath: Optional[str]) -> Any:
    """Load a checkpoint on CPU, never running code from it (:mod:`runkit.safe_load`).

    Files written by a real Dassl (which pickles its scheduler) load too. Raises
    ``UnsafeCheckpointError`` for a file that needs any other class, ``ValueError`` for
    ``None``, ``FileNotFoundError`` for a missing file, and ``RuntimeError`` naming the path
    for a corrupt or truncated file.
    """
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError('File is not found at "{}"'.format(fpath))
    try:
        return safe_torch_load(fpath)
    except UnsafeCheckpointError:
        raise
    except Exception as e:
        print('Unable to load checkpoint from "{}"'.format(fpath))
        raise RuntimeError(
            f'Checkpoint "{fpath}" is corrupt or truncated and cannot be loaded '
            f"({type(e).__name__}: {e}); delete it (and fix the 'checkpoint' pointer file "
            "next to it) or re-create it"
        ) from e


def _read_pointer(fdir: str) -> str:
    pointer = osp.join(fdir, "checkpoint")
    with open(pointer, "r") as f:
        lines = f.readlines()
    if not lines or not lines[0].strip():
        raise RuntimeError(f'Checkpoint pointer file "{pointer}" is empty; delete {fdir} '
                           "to train from scratch")
    return osp.join(fdir, lines[0].strip("\n"))


def restore_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    prepare: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """Like ``resume_from_checkpoint`` but return the whole loaded checkpoint dict.

    Why: trainers that store extra entries (e.g. an accumulator) read them back from it.
    ``prepare`` maps the saved ``state_dict`` to what ``model`` loads (saved-key renames).
    """
    fpath = _read_pointer(fdir)
    print('Loading checkpoint from "{}"'.format(fpath))
    checkpoint = load_checkpoint(fpath)
    state_dict = checkpoint["state_dict"]
    model.load_state_dict(state_dict if prepare is None else prepare(state_dict))
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    print("Previous epoch: {}".format(checkpoint["epoch"]))
    return checkpoint


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
) -> int:
    """Restore model/optimizer/scheduler from the file named in ``fdir/checkpoint``.

    Returns the stored ``epoch``, which is the 0-based index of the next epoch to run.
    """
    return restore_checkpoint(fdir, model, optimizer, scheduler)["epoch"]


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the entries of a checkpoint (read safely, as every file) whose key and shape match
    ``model``.

    Why: ``MODEL.INIT_WEIGHTS`` may come from a model with a different head; mismatching
    layers are reported and skipped instead of failing.
    """
    checkpoint = load_checkpoint(weight_path)
    load_matching_weights(model, checkpoint.get("state_dict", checkpoint), weight_path)


def load_matching_weights(model: nn.Module, state_dict: Dict[str, Any], source: str) -> None:
    """``load_pretrained_weights`` on a state dict already read from ``source`` (a file name
    for the messages): e.g. a trainer's, after undoing its saved-key renames."""
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in _strip_module_prefix(state_dict).items():
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {source} (check the key names manually)", stacklevel=3)
        return
    print(f"Successfully loaded pretrained weights from {source}")
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")


def count_num_param(
    model: Optional[nn.Module] = None, params: Optional[Iterable[Any]] = None
) -> int:
    """Number of parameter elements of ``model``, or of ``params`` (tensors or param groups)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("count_num_param() needs a model or params; both were None")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.DataParallel) else model


def open_all_layers(model: nn.Module) -> None:
    """Put the model in train mode with every parameter trainable."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    module.train(trainable)
    for p in module.parameters():
        p.requires_grad = trainable


def open_specified_layers(model: nn.Module, open_layers: Union[str, List[str]]) -> None:
    """Train only the named children (train mode, trainable); freeze the rest in eval mode."""
    model = _unwrap(model)
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    for layer in open_layers:
        assert hasattr(model, layer), f"{layer} is not an attribute"
    for name, module in model.named_children():
        _set_trainable(module, name in open_layers)


def _init_weight(weight: torch.Tensor, init_type: str, gain: float) -> None:
    if init_type == "normal":
        nn.init.normal_(weight, 0.0, gain)
    elif init_type == "xavier":
        nn.init.xavier_normal_(weight, gain=gain)
    elif init_type == "kaiming":
        nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
    elif init_type == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    else:
        raise NotImplementedError(
            f"init_type must be normal, xavier, kaiming or orthogonal, got {init_type!r}"
        )


def init_network_weights(model: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialise Conv/Linear weights (bias 0) and set norm layers to weight 1, bias 0."""

    def _init_func(m: nn.Module) -> None:
        classname = m.__class__.__name__
        is_conv_or_linear = "Conv" in classname or "Linear" in classname
        weight = getattr(m, "weight", None)
        bias = getattr(m, "bias", None)
        if is_conv_or_linear and weight is not None:
            _init_weight(weight.data, init_type, gain)
            if bias is not None:
                nn.init.constant_(bias.data, 0.0)
        elif "BatchNorm" in classname or "InstanceNorm" in classname:
            if weight is not None and bias is not None:
                nn.init.constant_(weight.data, 1.0)
                nn.init.constant_(bias.data, 0.0)

    model.apply(_init_func)
