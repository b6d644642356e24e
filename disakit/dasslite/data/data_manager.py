"""Dataset -> transforms -> loaders (Dassl's ``dassl.data.data_manager``).

``DataManager`` is what ``SimpleTrainer.build_data_loader`` constructs: it builds the dataset
(few-shot sampling happens here, before the model is built), the train/test transforms and the
loaders, and prints the dataset summary table.

Loader settings follow Dassl exactly, because they decide iterations per epoch and the data
order of a seeded run:

* ``drop_last = is_train and len(data_source) >= batch_size``;
* ``pin_memory = torch.cuda.is_available() and cfg.USE_CUDA``;
* ``persistent_workers`` stays off (PyTorch's and Dassl's default). With it on, PyTorch draws
  the workers' base seed from torch's global RNG only for the first epoch instead of every
  epoch, so from the second epoch on the ``RandomSampler`` permutations (and the per-worker
  augmentation seeds) would differ from Dassl's for the same ``SEED``. Re-forking
  ``NUM_WORKERS`` workers per epoch is the price of identical data order.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset as TorchDataset
from yacs.config import CfgNode

from disakit.dasslite.utils import read_image

from .datasets import Datum, build_dataset
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "ImageReadError"]

# One transform, or a list/tuple of them (``img``, ``img2``, ...): DatasetWrapper tells them
# apart with isinstance(..., (list, tuple)).
TransformArg = Union[None, Callable, List[Callable], Tuple[Callable, ...]]


class ImageReadError(OSError):
    """An image listed by the dataset cannot be opened or decoded."""


def build_data_loader(
    cfg: CfgNode,
    sampler_type: str = "SequentialSampler",
    data_source: Optional[Sequence[Datum]] = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: TransformArg = None,
    is_train: bool = True,
    dataset_wrapper: Optional[type] = None,
) -> DataLoader:
    """Wrap ``data_source`` in a ``DataLoader`` with Dassl's sampler/drop_last/pin_memory rules.

    Why the drop_last rule: a training epoch is ``floor(N / batch)`` iterations, or 1 when there
    are fewer items than one batch (so tiny few-shot sets still train); evaluation never drops.
    """
    if data_source is None:
        raise TypeError("build_data_loader() needs a data_source (the items to load)")
    sampler = build_sampler(
        sampler_type, cfg=cfg, data_source=data_source,
        batch_size=batch_size, n_domain=n_domain, n_ins=n_ins,
    )
    wrapper_cls = DatasetWrapper if dataset_wrapper is None else dataset_wrapper
    loader = DataLoader(
        wrapper_cls(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=(torch.cuda.is_available() and cfg.USE_CUDA),
    )
    assert len(loader) > 0, f"the data loader is empty ({len(data_source)} items)"
    return loader


class DataManager:
    """Build the dataset, its transforms and its loaders from the config.

    Why: trainers get ``train_loader_x``, ``val_loader`` (None without a val split),
    ``test_loader``, ``num_classes``, ``num_source_domains``, ``lab2cname`` and ``dataset``
    from one object, built in Dassl's order so Python's ``random`` is consumed identically.
    """

    def __init__(
        self,
        cfg: CfgNode,
        custom_tfm_train: TransformArg = None,
        custom_tfm_test: TransformArg = None,
        dataset_wrapper: Optional[type] = None,
    ) -> None:
        dataset = build_dataset(cfg)
        tfm_train = _pick_transform(cfg, custom_tfm_train, is_train=True)
        tfm_test = _pick_transform(cfg, custom_tfm_test, is_train=False)
        loaders = cfg.DATALOADER

        def eval_loader(items: Optional[Sequence[Datum]]) -> DataLoader:
            return build_data_loader(
                cfg, sampler_type=loaders.TEST.SAMPLER, data_source=items,
                batch_size=loaders.TEST.BATCH_SIZE, tfm=tfm_test, is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        self.train_loader_x = _train_loader(
            cfg, loaders.TRAIN_X, dataset.train_x, tfm_train, dataset_wrapper
        )
        self.train_loader_u = None
        if dataset.train_u:
            node = loaders.TRAIN_X if loaders.TRAIN_U.SAME_AS_X else loaders.TRAIN_U
            self.train_loader_u = _train_loader(
                cfg, node, dataset.train_u, tfm_train, dataset_wrapper
            )
        self.val_loader = eval_loader(dataset.val) if dataset.val else None
        self.test_loader = eval_loader(dataset.test)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg: CfgNode) -> None:
        """Print Dassl's two-column dataset summary (``tabulate`` "simple" format)."""
        print(format_table(self._summary_rows(cfg)))

    def _summary_rows(self, cfg: CfgNode) -> List[List[Any]]:
        ds = self.dataset
        rows: List[List[Any]] = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(ds.train_x):,}"])
        if ds.train_u:
            rows.append(["# train_u", f"{len(ds.train_u):,}"])
        if ds.val:
            rows.append(["# val", f"{len(ds.val):,}"])
        assert ds.test is not None  # the test loader was built from it
        rows.append(["# test", f"{len(ds.test):,}"])
        return rows


def _pick_transform(cfg: CfgNode, custom: TransformArg, is_train: bool) -> TransformArg:
    if custom is None:
        return build_transform(cfg, is_train=is_train)
    print(f"* Using custom transform for {'training' if is_train else 'testing'}")
    return custom


def _train_loader(
    cfg: CfgNode, node: CfgNode, items: Sequence[Datum], tfm: TransformArg,
    dataset_wrapper: Optional[type],
) -> DataLoader:
    return build_data_loader(
        cfg, sampler_type=node.SAMPLER, data_source=items, batch_size=node.BATCH_SIZE,
        n_domain=node.N_DOMAIN, n_ins=node.N_INS, tfm=tfm, is_train=True,
        dataset_wrapper=dataset_wrapper,
    )


# ---- summary table -------------------------------------------------------------------------


def format_table(rows: Sequence[Sequence[Any]]) -> str:
    """Render rows like ``tabulate(rows)``; a built-in renderer is used when it is missing."""
    try:
        from tabulate import tabulate
    except ImportError:
        return _format_table_plain(rows)
    return tabulate(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format_table_plain(rows: Sequence[Sequence[Any]]) -> str:
    """tabulate's "simple" format without headers: dash rules, 2-space gaps, no trailing blanks.

    Like tabulate, a column whose non-empty cells are all numbers is right-aligned.
    """
    columns = list(zip(*[[str(cell) for cell in row] for row in rows]))
    widths = [max(len(cell) for cell in col) for col in columns]
    numeric = [all(_is_number(c) for c in col if c) for col in columns]
    rule = "  ".join("-" * w for w in widths)
    lines = [rule]
    for row in zip(*columns):
        cells = [
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(row, widths, numeric)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(rule)
    return "\n".join(lines)


# ---- dataset wrapper -----------------------------------------------------------------------


class DatasetWrapper(TorchDataset):
    """Turn a list of ``Datum`` into loader items: dicts with label, domain, impath, index, img.

    Why: trainers read ``batch["img"]`` and ``batch["label"]`` (Dassl's contract). ``transform``
    may be one transform or a list/tuple of them (giving ``img``, ``img2``, ...); with
    ``DATALOADER.K_TRANSFORMS = K > 1`` (training only) each ``img*`` is a list of K views; with
    ``DATALOADER.RETURN_IMG0`` an un-augmented ``img0`` is added.
    """

    def __init__(
        self,
        cfg: CfgNode,
        data_source: Sequence[Datum],
        transform: TransformArg = None,
        is_train: bool = False,
    ) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        # Augmenting an image K > 1 times is only allowed during training.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"Cannot augment the image {self.k_tfm} times because transform is None; "
                f"set DATALOADER.K_TRANSFORMS 1 or pass a transform"
            )
        self.to_tensor = _build_img0_transform(cfg)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        item = self.data_source[idx]
        output: Dict[str, Any] = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = self._read(item.impath, idx)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                key = "img" if i == 0 else f"img{i + 1}"
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)  # without any augmentation
        return output

    def _read(self, impath: str, idx: int):
        try:
            return read_image(impath)
        except Exception as err:  # PIL raises OSError, ValueError, DecompressionBombError...
            split = "train" if self.is_train else "val/test"
            raise ImageReadError(
                f"Cannot read image {impath} (item {idx} of the {split} set): "
                f"{type(err).__name__}: {err}. Re-extract or remove this file (if you remove "
                f"it, also delete the split file / few-shot cache entries that list it)"
            ) from err

    def _transform_image(self, tfm: Callable, img0) -> Any:
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views


def _build_img0_transform(cfg: CfgNode) -> T.Compose:
    """Resize to INPUT.SIZE -> ToTensor (-> Normalize if "normalize" is chosen)."""
    interp_mode = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    steps: List[Callable] = [T.Resize(cfg.INPUT.SIZE, interpolation=interp_mode), T.ToTensor()]
    if "normalize" in cfg.INPUT.TRANSFORMS:
        steps.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
    return T.Compose(steps)
