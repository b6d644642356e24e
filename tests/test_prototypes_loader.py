"""Class prototypes (trainers/prototypes.py) through the data layer: the engine's loader gives
exactly the by-hand computation (both views, with and without loader workers), and their cache
follows the dataset layer's rules (SEED < 0, an unwritable folder)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import disakit.trainers.prototypes as prototypes_module
from disakit.dassl_api import read_image
from disakit.datasets.store import FEWSHOT_DIR
from disakit.trainers.prototypes import (
    class_prototypes,
    compute_trainer_prototypes,
    trainer_prototypes,
)

SEED = 3


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(4, 1, 2), image_size=32)
    return root


def build_trainer(data_root, clip_path, *opts, seed: int = SEED, workers: int = 0):
    import train
    from disakit.dassl_api import build_trainer as build

    args = train.build_parser().parse_args(
        ["--root", str(data_root), "--seed", str(seed), "--trainer", "DAPT",
         "--dataset-config-file", "configs/datasets/eurosat.yaml", "--config-file",
         "configs/trainers/DAPT/vit_b16.yaml", "--backbone", str(clip_path),
         "DATALOADER.NUM_WORKERS", str(workers), "DATALOADER.TEST.BATCH_SIZE", "3",
         "DATASET.NUM_SHOTS", "3", "DATASET.SUBSAMPLE_CLASSES", "base", *opts])
    return build(train.setup_cfg(args))


def by_hand_batches(trainer, transform: str, workers: int) -> list[dict]:
    """The prototype batches built without any loader, from what torch documents: a loader's
    base seed is the first int64 its generator draws; worker ``w`` seeds torch with
    ``base + w`` and makes batches ``w, w + W, ...``; without workers the main process makes
    every batch from its own (here freshly seeded) RNG."""
    cfg, items = trainer.cfg, trainer.dm.dataset.train_x
    loader = trainer.train_loader_x if transform == "train" else trainer.test_loader
    tfm, size = loader.dataset.transform, cfg.DATALOADER.TEST.BATCH_SIZE
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    batches = []
    with torch.random.fork_rng(devices=[]):
        base = int(torch.empty((), dtype=torch.int64)
                   .random_(generator=torch.Generator().manual_seed(SEED)).item())
        states = []
        for w in range(max(workers, 1)):
            torch.manual_seed(base + w if workers else SEED)
            states.append(torch.get_rng_state())
        for b, chunk in enumerate(chunks):
            w = b % workers if workers else 0
            torch.set_rng_state(states[w])
            imgs = torch.stack([tfm(read_image(item.impath)) for item in chunk])
            states[w] = torch.get_rng_state()
            batches.append({"img": imgs, "label": torch.tensor([i.label for i in chunk])})
    return batches


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("transform, normalize", [("train", False), ("test", True)])
@torch.no_grad()
def test_prototypes_from_the_engines_loader_equal_the_by_hand_computation(
        data_root, tiny_clip_path, monkeypatch, workers, transform, normalize):
    trainer = build_trainer(data_root, tiny_clip_path, workers=workers)
    calls = []
    real = prototypes_module.build_data_loader

    def spy(cfg, **kwargs):
        calls.append(kwargs)
        return real(cfg, **kwargs)

    monkeypatch.setattr(prototypes_module, "build_data_loader", spy)
    rng = torch.get_rng_state()
    ours = compute_trainer_prototypes(trainer, transform, normalize)
    assert torch.equal(torch.get_rng_state(), rng)  # the run's RNG is left alone
    loader = trainer.train_loader_x if transform == "train" else trainer.test_loader
    assert calls == [{"sampler_type": "SequentialSampler",
                      "data_source": trainer.dm.dataset.train_x, "batch_size": 3,
                      "tfm": loader.dataset.transform, "is_train": False}]

    batches = by_hand_batches(trainer, transform, workers)
    with trainer.precision.autocast():
        expected = class_prototypes(trainer.model.frozen_image_features, batches, 2, normalize,
                                    trainer.device)
    assert torch.equal(ours, expected)
    again = compute_trainer_prototypes(trainer, transform, normalize)
    assert torch.equal(again, ours)  # deterministic, whatever the workers


def test_an_unseeded_run_computes_prototypes_and_caches_nothing(data_root, tiny_clip_path,
                                                               capsys):
    trainer = build_trainer(data_root, tiny_clip_path, seed=-1)
    folder = Path(trainer.dm.dataset.split_fewshot_dir)
    before = sorted(p.name for p in folder.iterdir())
    protos = trainer_prototypes(trainer, "test", normalize=False, tag="dapt")
    assert protos.shape == (2, 64)
    assert "Note: class prototypes not cached (SEED < 0" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == before


def test_an_unwritable_data_folder_skips_the_prototype_cache_and_training_goes_on(
        tmp_path, tiny_clip_path, capsys):
    from disakit.datasets.synthetic import make_dataset

    make_dataset("eurosat", tmp_path, num_classes=4, per_class=(4, 1, 2), image_size=32)
    (tmp_path / "eurosat" / FEWSHOT_DIR).write_text("in the way")  # no write can succeed here
    trainer = build_trainer(tmp_path, tiny_clip_path, "TRAINER.DAPT.PROTO_TRANSFORM", "test")
    capsys.readouterr()
    first = trainer.load_prototypes()
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and notes[0].startswith("Note: class prototypes not cached: cannot "
                                                   "write ")
    assert "Saving class prototypes" not in out
    assert torch.equal(trainer.load_prototypes(), first)  # recomputed identically
