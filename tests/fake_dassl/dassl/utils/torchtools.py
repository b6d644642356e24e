"""``dassl.utils.torchtools``: checkpoint files as Dassl 0.6.3 writes and reads them.

* ``save_checkpoint`` writes the state with ``torch.save`` straight into place (the state holds
  what ``state_dict()`` returned, so a warm-up scheduler's successor *object*), then the
  ``checkpoint`` pointer;
* ``load_checkpoint`` is ``torch.load`` with torch's default ``weights_only`` (True since torch
  2.6, which refuses Dassl's own files: they pickle the successor);
* ``resume_from_checkpoint`` restores model, optimizer and scheduler from the pointed-to file.
"""
import os.path as osp
import pickle
import shutil
import warnings
from collections import OrderedDict
from functools import partial

import torch

from .tools import mkdir_if_missing

__all__ = ["save_checkpoint", "load_checkpoint", "resume_from_checkpoint", "count_num_param",
           "load_pretrained_weights"]


def _without_module_prefix(state_dict):
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _without_module_prefix(state["state_dict"])
    fpath = osp.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    torch.save(state, fpath)
    print(f"Checkpoint saved to {fpath}")
    with open(osp.join(save_dir, "checkpoint"), "w+") as pointer:
        pointer.write(f"{osp.basename(fpath)}\n")
    if is_best:
        best_fpath = osp.join(osp.dirname(fpath), "model-best.pth.tar")
        shutil.copy(fpath, best_fpath)
        print(f'Best checkpoint saved to "{best_fpath}"')


def load_checkpoint(fpath):
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location)  # torch's weights_only default
    except UnicodeDecodeError:
        pickle.load = partial(pickle.load, encoding="latin1")
        pickle.Unpickler = partial(pickle.Unpickler, encoding="latin1")
        return torch.load(fpath, pickle_module=pickle, map_location=map_location)
    except Exception:
        print(f'Unable to load checkpoint from "{fpath}"')
        raise


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    with open(osp.join(fdir, "checkpoint"), "r") as pointer:
        fpath = osp.join(fdir, pointer.readlines()[0].strip("\n"))
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and "optimizer" in checkpoint.keys():
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and "scheduler" in checkpoint.keys():
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def count_num_param(model=None, params=None):
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("model and params must provide at least one.")


def load_pretrained_weights(model, weight_path):
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in _without_module_prefix(state_dict).items():
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)", stacklevel=2)
        return
    print(f"Successfully loaded pretrained weights from {weight_path}")
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")
