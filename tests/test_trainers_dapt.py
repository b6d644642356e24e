"""DAPT (docs/methods/dapt.md): dispersion losses against their formulas, gradient routing, class
prototypes (frozen encoder, current labels, cache) and what trains, with the tiny random CLIP
(the scripts run end to end in test_trainers_dapt_dpl_e2e.py)."""
from __future__ import annotations

import io
import math
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import toolkit_cfg

from disakit.clipkit.loading import load_clip
from disakit.clipkit.losses import inter_dispersion, intra_dispersion
from disakit.clipkit.prompts import ContextInit
from disakit.clipkit.random_clip import build_random_clip
from disakit.dassl_api import read_image
from disakit.trainers.base import build_standalone
from disakit.trainers.dapt import DAPTPromptLearner, visual_prompt_init
from disakit.trainers.prototypes import prototype_cache, trainer_prototypes

CLASSNAMES = ["cat", "golden_retriever", "car"]


# ------------------------------------------------------------------------ losses
def test_dispersion_losses_equal_their_formulas():
    torch.manual_seed(0)
    image, protos, labels = torch.randn(3, 4), torch.randn(2, 4), torch.tensor([1, 0, 1])
    expected = sum(float(((image[b] - protos[labels[b]]) ** 2).sum()) for b in range(3)) / (3 * 4)
    assert math.isclose(intra_dispersion(image, protos[labels]).item(), expected, rel_tol=1e-6)

    text, t = F.normalize(torch.randn(5, 3), dim=-1), 2.0
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    expected = 2 / (5 * 4) * sum(math.exp(-t * float(((text[i] - text[j]) ** 2).sum()))
                                 for i, j in pairs)
    assert math.isclose(inter_dispersion(text, t).item(), expected, rel_tol=1e-5)
    cos = text @ text.t()  # on unit vectors exp(-t‖a-b‖²) = exp(-2t(1-cos))
    via_cos = torch.stack([torch.exp(-2 * t * (1 - cos[i, j])) for i, j in pairs]).mean()
    assert math.isclose(inter_dispersion(text, t).item(), via_cos.item(), rel_tol=1e-5)
    assert inter_dispersion(text[:1], t).item() == 0.0
    same = torch.stack([text[0], text[0]]).requires_grad_()
    inter_dispersion(same, t).backward()
    assert torch.isfinite(same.grad).all()  # equal rows: no NaN gradient


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


def make_cfg(*opts):
    return toolkit_cfg("DAPT", "OPTIM.LR", 2.0, *opts)


def test_each_dispersion_term_reaches_only_its_prompts(tiny):
    trainer = build_standalone(make_cfg(), tiny, CLASSNAMES)
    model, learner = trainer.model, trainer.model.prompt_learner
    images = torch.randn(2, 3, 224, 224)
    intra_dispersion(model.image_features(images), torch.randn(2, 64)).backward()
    assert learner.ctx.grad is None and learner.vis_ctx.grad.abs().sum() > 0
    learner.vis_ctx.grad = None
    inter_dispersion(model.text_features(), 2.0).backward()
    assert learner.vis_ctx.grad is None and learner.ctx.grad.abs().sum() > 0


def test_training_steps_change_only_the_prompts(tiny):
    frozen = {k: v.clone() for k, v in tiny.state_dict().items()}
    trainer = build_standalone(make_cfg("TRAINER.DAPT.VIS_DROPOUT", 0.1), tiny, CLASSNAMES)
    trainer.prototypes = F.normalize(torch.randn(3, 64), dim=-1) * 0.8
    learner = trainer.model.prompt_learner
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    assert set(before) == {"ctx", "vis_ctx"}
    saved = trainer.state_dict_for_checkpoint("prompt_learner")
    assert set(saved) == {"txt_ctx", "vis_ctx"}  # upstream DAPT's checkpoint keys
    batch = {"img": torch.randn(4, 3, 224, 224), "label": torch.tensor([0, 1, 2, 0])}
    for _ in range(2):
        summary = trainer.forward_backward(batch)
    assert set(summary) == {"loss", "acc"}
    assert all(not torch.equal(before[k], v) for k, v in learner.state_dict().items())
    assert all(torch.equal(frozen[k], v) for k, v in tiny.state_dict().items())
    assert {n for n, p in trainer.model.named_parameters() if p.requires_grad} == {
        "prompt_learner.ctx", "prompt_learner.vis_ctx"}
    fresh = build_standalone(make_cfg(), build_random_clip("tiny", seed=0), CLASSNAMES)
    fresh.model.prompt_learner.load_state_dict(learner.state_dict())
    assert torch.equal(fresh.model.prompt_learner.ctx, learner.ctx)


def test_prompt_shapes_and_init_at_vit_b16():
    vis = visual_prompt_init(16, 768, 16)
    assert vis.abs().max() <= 0.0625 and vis.abs().max() > 0.06  # VPT bound sqrt(6/(768+768))
    learner = DAPTPromptLearner(ContextInit(torch.zeros(16, 512), " ".join(["X"] * 16)), vis)
    assert sum(p.numel() for p in learner.parameters()) == 20_480


# ------------------------------------------------------------------------ prototypes
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def build_trainer(data_root, clip_path, *opts):
    import train
    from disakit.dassl_api import build_trainer as build

    args = train.build_parser().parse_args(
        ["--root", str(data_root), "--seed", "1", "--trainer", "DAPT", "--dataset-config-file",
         "configs/datasets/eurosat.yaml", "--config-file", "configs/trainers/DAPT/vit_b16.yaml",
         "--backbone", str(clip_path), "DATALOADER.NUM_WORKERS", "0",
         "DATALOADER.TEST.BATCH_SIZE", "3", "DATASET.NUM_SHOTS", "2", *opts])
    return build(train.setup_cfg(args))


@torch.no_grad()
def test_prototypes_are_frozen_clip_class_means_of_the_current_labels(data_root, tiny_clip_path):
    trainer = build_trainer(data_root, tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                            "TRAINER.DAPT.PROTO_TRANSFORM", "test")
    trainer.model.prompt_learner.vis_ctx.normal_(0.0, 1.0)  # prompts must play no part
    protos = trainer.load_prototypes()
    stock = load_clip(str(tiny_clip_path)).eval()
    tfm = trainer.test_loader.dataset.transform
    items = trainer.dm.dataset.train_x
    assert {i.label for i in items} == {0, 1} and protos.shape == (2, 64)  # new half, relabelled
    for label in (0, 1):
        imgs = torch.stack([tfm(read_image(i.impath)) for i in items if i.label == label])
        expected = F.normalize(stock.encode_image(imgs), dim=-1).mean(0)
        assert (protos[label] - expected).abs().max() <= 1e-5
    assert protos.norm(dim=-1).max() <= 1 + 1e-6  # not renormalised


def test_training_view_prototypes_are_seeded_and_leave_the_rng_alone(data_root, tiny_clip_path):
    trainer = build_trainer(data_root, tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    rng = torch.get_rng_state()
    a = trainer_prototypes(trainer, "train", normalize=False, tag="t1", regenerate=True)
    b = trainer_prototypes(trainer, "train", normalize=False, tag="t1", regenerate=True)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b)
    test_view = trainer_prototypes(trainer, "test", normalize=True, tag="t1")
    assert (a - test_view).abs().max() > 1e-4
    assert torch.allclose(test_view.norm(dim=-1), torch.ones(2))  # DiSa's normalised mean


def test_prototype_cache_key_covers_what_the_values_depend_on(data_root, tiny_clip_path):
    trainer = build_trainer(data_root, tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    train_key = prototype_cache(trainer, "train", False, "k").key
    test_key = prototype_cache(trainer, "test", True, "k").key
    assert train_key["prec"] == trainer.precision.prec
    assert train_key["input"]["SIZE"] == list(trainer.cfg.INPUT.SIZE)
    assert train_key["input"]["TRANSFORMS"] == list(trainer.cfg.INPUT.TRANSFORMS)
    assert train_key["loader"] == {"num_workers": trainer.cfg.DATALOADER.NUM_WORKERS,
                                   "batch_size": trainer.cfg.DATALOADER.TEST.BATCH_SIZE}
    assert "loader" not in test_key  # the test view is deterministic whatever the loader
    trainer.cfg.defrost()
    trainer.cfg.DATALOADER.NUM_WORKERS += 1
    assert prototype_cache(trainer, "train", False, "k").key != train_key
    assert prototype_cache(trainer, "test", True, "k").key == test_key


def test_prototype_cache_round_trip_and_invalidation(data_root, tiny_clip_path, tmp_path):
    trainer = build_trainer(data_root, tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                            "TRAINER.DAPT.PROTO_TRANSFORM", "test")
    folder = Path(trainer.dm.dataset.split_fewshot_dir)
    path = folder / "shot_2-seed_1_dapt-prototype_base_test.pt"
    path.unlink(missing_ok=True)
    first = trainer.load_prototypes()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(saved["prototypes"], first) and saved["key"]["subsample"] == "base"
    out = io.StringIO()
    with redirect_stdout(out):
        assert torch.equal(trainer.load_prototypes(), first)
    assert "Loading class prototypes from" in out.getvalue()
    # A file computed for other settings (here: another backbone) is never used.
    torch.save({**saved, "key": {**saved["key"], "backbone": "ViT-B/16"},
                "prototypes": torch.zeros_like(first)}, path)
    with redirect_stdout(out):
        assert torch.equal(trainer.load_prototypes(), first)
    assert "computed for other settings" in out.getvalue()
    assert torch.load(path, weights_only=True)["key"] == saved["key"]
    path.unlink()
    strict = build_trainer(data_root, tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.DAPT.PROTO_TRANSFORM", "test",
                           "TRAINER.DAPT.PROTO_AUTO", "False")
    with pytest.raises(FileNotFoundError, match="PROTOTYPE_GEN"):
        strict.load_prototypes()
    # Upstream's workflow: a generation-only run first (it trains nothing), then training.
    build_trainer(data_root, tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                  "TRAINER.DAPT.PROTO_TRANSFORM", "test", "TRAINER.DAPT.PROTOTYPE_GEN", "True",
                  "OUTPUT_DIR", str(tmp_path / "gen")).train()
    assert path.is_file() and not (tmp_path / "gen").exists()
    assert torch.equal(strict.load_prototypes(), first)
