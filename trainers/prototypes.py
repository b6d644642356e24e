"""Class prototypes: per-class means of frozen CLIP image features over the training set.

Why a module: DAPT pulls prompted image features towards them (unnormalised mean, one seeded
training-augmented view per image, docs/methods/dapt.md) and DiSa as directions (normalised
mean, test transform, docs/methods/disa.md). Both need the same things, written once here:

* the prototypes of the **current** ``train_x`` labels (after base/new subsampling, which
  relabels classes; upstream DAPT mixed the two), from the **frozen**
  image encoder (the same CLIP with prompts off);
* a loader from the data layer: the engine's ``build_data_loader`` (through the seam, so a real
  Dassl builds it when it is the engine), sequential, test batch size, ``is_train=False``: the
  workers and pin-memory rule are the engine's, not repeated here;
* a seeded, isolated random view: computing prototypes never changes the run's RNG streams, so
  training draws the same batches and augmentations whether or not they came from the cache
  (:func:`isolated_rng`, :func:`prototype_batches`);
* a cache in the dataset's ``split_fewshot/`` folder, computed once when training starts,
  through the dataset layer's cache API (:mod:`datasets.store`: where the file lives, atomic
  writes, nothing for ``SEED < 0`` or a dataset without that folder, a read-only folder skipped
  with one line, safe loading, key check). Upstream DAPT pickled an fp16 tensor to
  ``shot_<K>-seed_<S>_prototype.pkl`` in a separate run; here the file is
  ``shot_<K>-seed_<S>_<tag>-prototype_<subsample>_<transform>.pt`` (``torch.save`` of plain
  tensors and strings, loaded with ``weights_only=True``, never colliding with upstream's
  pickle). It stores the full key it was computed for (backbone, input size, dataset, shots,
  seed, subsample, transform, normalisation, class names and a digest of the labelled image
  list); a file whose key differs is recomputed, never used.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from disakit.dassl_api import build_data_loader
from disakit.datasets.base import dataset_cache
from disakit.datasets.store import KeyedFile

ProtoTransform = Literal["train", "test"]
CACHE_FORMAT = "disakit/clipkit/class-prototypes/v1"


@torch.no_grad()
def class_prototypes(encode: Callable[[Tensor], Tensor], batches: Iterable[dict],
                     num_classes: int, normalize: bool = False,
                     device: Optional[torch.device] = None) -> Tensor:
    """``s_c = mean_k normalize(encode(x_k))`` over the images of each class c, in fp32 (C, E).

    ``normalize`` renormalises each mean (DiSa); DAPT keeps it as is (``‖s_c‖ ≤ 1``). Every
    class must have at least one image.
    """
    sums: Optional[Tensor] = None
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for batch in batches:
        images, labels = batch["img"], batch["label"].long()
        feats = F.normalize(encode(images.to(device) if device else images).float(), dim=-1)
        if sums is None:
            sums = torch.zeros(num_classes, feats.shape[-1], dtype=torch.float64)
        sums.index_add_(0, labels, feats.double().cpu())
        counts += torch.bincount(labels, minlength=num_classes).double()
    empty = (counts == 0).nonzero().flatten().tolist()
    if sums is None or empty:
        raise ValueError(f"cannot compute class prototypes: classes {empty or 'all'} have no "
                         f"training image; check DATASET.NUM_SHOTS and SUBSAMPLE_CLASSES")
    means = (sums / counts[:, None]).float()
    return F.normalize(means, dim=-1) if normalize else means


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[torch.Generator]:
    """Seed torch's CPU RNG for the block and restore it afterwards; yield a seeded generator
    for a loader (its workers' seeds then come from it, not from the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


def prototype_batches(cfg, items: Sequence, transform: Callable,
                      generator: torch.Generator) -> DataLoader:
    """A sequential loader over ``items`` with ``transform``, from the engine's
    ``build_data_loader`` (test batch size, ``DATALOADER.NUM_WORKERS``, its pin-memory rule).

    ``generator`` (from :func:`isolated_rng`) is the loader's: ``build_data_loader`` takes none,
    and a loader without one draws its base seed from torch's global RNG each time it is
    iterated. With ``NUM_WORKERS > 0`` that draw would equal the generator's (both are seeded
    with the same seed inside :func:`isolated_rng`), but with ``NUM_WORKERS 0`` it would consume
    the global RNG that the main process's transforms then draw from, shifting every random
    augmentation of the ``train`` view (tests/test_prototypes_loader.py checks both against a
    by-hand computation). The generator keeps the draws those of earlier versions, so cached
    and recomputed prototypes agree.
    """
    loader = build_data_loader(cfg, sampler_type="SequentialSampler", data_source=items,
                               batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=transform,
                               is_train=False)
    loader.generator = generator  # read when the loader is iterated (torch's DataLoader)
    return loader


def items_digest(items: Sequence) -> str:
    """SHA-1 of the (image path, label) list: a cache is valid only for these exact images."""
    digest = hashlib.sha1()
    for item in items:
        digest.update(f"{item.impath}\t{item.label}\n".encode())
    return digest.hexdigest()


def _plain(node: Any) -> Any:
    """A config node as plain dicts, lists and scalars (what a tensor file may store)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def prototype_cache(trainer, transform: ProtoTransform, normalize: bool, tag: str) -> KeyedFile:
    """The cache file of ``trainer``'s current training set, in its dataset's store (disabled,
    with the reason, for a dataset without a few-shot folder -- the test-only variants, a reader
    not built on this toolkit's templates -- or with ``SEED < 0``, whose draws are not
    reproducible)."""
    cfg, dataset = trainer.cfg, trainer.dm.dataset
    shots, seed = cfg.DATASET.NUM_SHOTS, cfg.SEED
    subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
    # Everything the stored values depend on: the frozen encoder and its precision, the whole
    # INPUT node (size, transforms and their parameters, normalisation), the images and labels,
    # and for the random training view also the loader (which worker, seeded how, augments
    # which image depends on the number of workers and the batch size).
    key = {"backbone": cfg.MODEL.BACKBONE.NAME, "input_size": list(cfg.INPUT.SIZE),
           "input": _plain(cfg.INPUT), "prec": trainer.precision.prec,
           "dataset": cfg.DATASET.NAME, "num_shots": shots, "seed": seed, "subsample": subsample,
           "transform": transform, "normalize": normalize, "classnames": list(dataset.classnames),
           "items": items_digest(dataset.train_x)}
    if transform == "train":
        key["loader"] = {"num_workers": cfg.DATALOADER.NUM_WORKERS,
                         "batch_size": cfg.DATALOADER.TEST.BATCH_SIZE}
    shots_text = shots if shots >= 1 else "all"
    name = f"shot_{shots_text}-seed_{seed}_{tag}-prototype_{subsample}_{transform}.pt"
    return dataset_cache(dataset).keyed_file(name, seed, CACHE_FORMAT, key, "class prototypes")


def compute_trainer_prototypes(trainer, transform: ProtoTransform, normalize: bool) -> Tensor:
    """Prototypes of ``trainer.dm.dataset.train_x`` with the frozen, unprompted image encoder.

    ``train``: one random training-augmented view per image, seeded by ``SEED`` (0 when
    unseeded) and isolated from the run's RNG; ``test``: the deterministic test transform.
    """
    cfg = trainer.cfg
    loader = trainer.train_loader_x if transform == "train" else trainer.test_loader
    tfm = loader.dataset.transform
    print(f"Computing class prototypes ({transform} transform, frozen image encoder)")
    with isolated_rng(max(cfg.SEED, 0)) as generator, trainer.precision.autocast():
        batches = prototype_batches(cfg, trainer.dm.dataset.train_x, tfm, generator)
        return class_prototypes(trainer.model.frozen_image_features, batches,
                                len(trainer.dm.dataset.classnames), normalize, trainer.device)


def trainer_prototypes(trainer, transform: ProtoTransform = "test", normalize: bool = True,
                       tag: str = "disa", auto: bool = True, regenerate: bool = False) -> Tensor:
    """Load or compute-and-cache the prototypes of ``trainer``'s current classes (C, E), fp32,
    on ``trainer.device``.

    ``auto=False`` refuses to compute when a cache is expected but missing (upstream DAPT's
    separate generation run); ``regenerate`` ignores an existing file.
    """
    if transform not in ("train", "test"):
        raise ValueError(f"prototype transform must be 'train' or 'test', got {transform!r}")
    cache = prototype_cache(trainer, transform, normalize, tag)
    stored = None if regenerate else cache.load()
    if stored is not None:
        return stored["prototypes"].to(trainer.device)
    if not auto and not regenerate and cache.path is not None:
        raise FileNotFoundError(
            f"class prototypes not found (or stale) at {cache.path}; generate them first with "
            f"the same options plus TRAINER.{trainer.CFG_NODE}.PROTOTYPE_GEN True, or set "
            f"TRAINER.{trainer.CFG_NODE}.PROTO_AUTO True")
    prototypes = compute_trainer_prototypes(trainer, transform, normalize)
    cache.save({"prototypes": prototypes.detach().float().cpu()})
    return prototypes.to(trainer.device)
