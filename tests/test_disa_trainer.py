"""The DiSa trainer (docs/methods/disa.md) on a tiny random CLIP: equivalence with PromptSRC, the
masked branch against an independent computation, what runs per step, what trains, every
``TRAINER.DISA`` knob and the ablation ladder, and the class prototypes' life cycle (computed
once from the frozen encoder when training starts; never saved, never in evaluation-only runs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import toolkit_cfg

import disakit.trainers.disa as disa_module
from disakit import trainers  # noqa: F401  (registers the trainers)
from disakit.clipkit.encoders import VisionTower
from disakit.clipkit.losses import cross_interactive_kl
from disakit.clipkit.random_clip import build_random_clip
from disakit.clipkit.templates import IMAGENET60
from disakit.dassl_api import read_image
from disakit.trainers.base import build_standalone
from disakit.trainers.disa import ABLATION_LADDER

CLASSNAMES = ["cat", "golden_retriever", "car"]
TINY = ["TRAINER.DISA.PROMPT_DEPTH_TEXT", 2, "TRAINER.DISA.PROMPT_DEPTH_VISION", 2]
NO_CIR_NO_DIR = ["TRAINER.DISA.CIR_WEIGHT", 0.0, "TRAINER.DISA.DIR_WEIGHT", 0.0]


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
B2N_CONFIG = "configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml"


def make_cfg(trainer: str, *opts, config: str | None = None):
    return toolkit_cfg(trainer, "DATASET.NAME", "EuroSAT", *opts, config=config)


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


def disa(clip_model, *opts, prototypes: bool = True, prompt_std: float = 0.0):
    """DiSa on the base-to-novel config (CLIP normalisation), depth 2; ``prompt_std`` > 0 redraws
    the prompts larger than the 0.02 init, so that they visibly change the tiny model."""
    torch.manual_seed(0)
    cfg = make_cfg("DiSa", *TINY, *opts, config=B2N_CONFIG)
    trainer = build_standalone(cfg, clip_model, CLASSNAMES)
    if prototypes:
        trainer.prototypes = F.normalize(torch.randn(len(CLASSNAMES), 64), dim=-1)
    if prompt_std:
        with torch.no_grad():
            for param in trainer.model.prompt_learner.parameters():
                param.normal_(0.0, prompt_std)
    trainer.num_batches = 10  # mid-epoch steps (no LR step, no GPA) unless a test changes it
    return trainer


def batch(n: int = 4, seed: int = 1) -> dict:
    torch.manual_seed(seed)
    return {"img": torch.randn(n, 3, 224, 224), "label": torch.tensor([0, 2, 1, 0][:n])}


# ------------------------------------------------------------------------ equivalences
def test_without_cir_and_dir_disa_is_promptsrc(tiny):
    """Same weights, templates (IMAGENET60), L_SR = L_SCL, GPA: same loss and same update."""
    torch.manual_seed(0)
    src_cfg = make_cfg("PromptSRC", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2,
                       "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
                       config="configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml")
    src = build_standalone(src_cfg, tiny, CLASSNAMES)
    ours = disa(tiny, *NO_CIR_NO_DIR, prototypes=False)
    ours.model.prompt_learner.load_state_dict(src.model.prompt_learner.state_dict())
    assert ours.text_teacher.templates == IMAGENET60
    images, labels = batch()["img"], batch()["label"]
    expected, parts = src.compute_loss(images, labels)
    loss, summary = ours.compute_loss(images, labels)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert summary["loss_sr"] == pytest.approx(
        parts["loss_scl_text"] + parts["loss_scl_image"] + parts["loss_scl_logits"], rel=1e-5)
    assert summary["loss_cir"] == 0.0 and summary["loss_dir"] == 0.0
    src.num_batches = 10
    for trainer in (src, ours):
        trainer.forward_backward(batch())
    for (name, a), b in zip(src.model.prompt_learner.named_parameters(),
                            ours.model.prompt_learner.parameters()):
        assert a.grad.abs().max() > 0 and torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-8), name
        assert torch.allclose(a, b, atol=1e-7), name


def test_cir_uses_the_masked_image_against_an_independent_computation(tiny):
    """L_CIR = KL(q(f̂_p(x_m), Ĝ_o) ‖ q(f̂_o, ĝ_p)), x_m greying the argsort-least-salient patches
    of the prompted tokens w.r.t. the frozen text of the label."""
    trainer = disa(tiny, "TRAINER.DISA.DIR_WEIGHT", 0.0, "TRAINER.DISA.SR_MODE", "none")
    model, (images, labels) = trainer.model, batch().values()
    _, summary = trainer.compute_loss(images, labels)
    with torch.no_grad():
        out = model.encode_image(images, return_tokens=True)
        bank = trainer.text_teacher.features(model.text, CLASSNAMES)
        vis = model.vision.visual
        patches = F.normalize(vis.ln_post(out.tokens[:, 1:50]) @ vis.proj, dim=-1)
        scores = (patches @ bank.t())[torch.arange(4), :, labels].numpy()
        worst = np.argsort(scores, axis=-1, kind="stable")[:, :12]  # round(0.25 * 49)
        masked = images.clone()
        fill = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
        for b in range(4):
            for i in worst[b]:
                r, c = divmod(int(i), 7)
                masked[b, :, r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = fill.view(3, 1, 1)
        expected = cross_interactive_kl(model.logits(model.image_features(masked), bank),
                                        model.logits(model.frozen_image_features(images),
                                                     model.text_features()))
    assert summary["loss_cir"] == pytest.approx(expected.item(), rel=1e-4)
    unmasked = disa(tiny, "TRAINER.DISA.DIR_WEIGHT", 0.0, "TRAINER.DISA.SR_MODE", "none",
                    "TRAINER.DISA.CIR_USE_MASK", False).compute_loss(images, labels)[1]
    assert abs(unmasked["loss_cir"] - summary["loss_cir"]) > 1e-6  # the mask matters
    never = disa(tiny, "TRAINER.DISA.DIR_WEIGHT", 0.0, "TRAINER.DISA.SR_MODE", "none",
                 "TRAINER.DISA.MASK_PROB", 0.0).compute_loss(images, labels)[1]
    assert never["loss_cir"] == pytest.approx(unmasked["loss_cir"], rel=1e-6)


def test_mask_batch_masks_round_ratio_patches_of_the_model_grid(tiny):
    trainer = disa(tiny, "TRAINER.DISA.MASK_RATIO", 0.4)
    images, labels = batch().values()
    feats = trainer.batch_features(images, tokens=True)
    masked = trainer.mask_batch(images, labels, feats)
    assert masked.patch_idx.shape == (4, round(0.4 * 49))
    assert masked.chosen.all() and not masked.images.requires_grad
    assert masked.scores is not None and masked.scores.grad_fn is None
    changed = (masked.images != images).any(dim=1).sum(dim=(1, 2))
    assert changed.tolist() == [20 * 32 * 32] * 4
    grey = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    painted = masked.images.permute(0, 2, 3, 1)[(masked.images != images).any(dim=1)]
    assert torch.allclose(painted, grey.expand_as(painted), atol=1e-6)


def test_fill_follows_the_input_normalisation(tiny):
    normalised = disa(tiny, "TRAINER.DISA.MASK_FILL", "black").mask_fill_value()
    assert torch.allclose(normalised, -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD))
    raw = disa(tiny, "INPUT.TRANSFORMS", ("random_flip",), "TRAINER.DISA.MASK_FILL", "grey")
    assert torch.equal(raw.mask_fill_value(), torch.full((3,), 128 / 255))  # inputs in [0, 1]


# ------------------------------------------------------------------------ cost of a step
class PassCounter:
    """Counts prompted and frozen vision passes and prompted text passes."""

    def __init__(self, monkeypatch, model) -> None:
        self.counts = {"prompted_image": 0, "frozen_image": 0, "text": 0}
        vision_forward, text_encode = VisionTower.forward, type(model.text).encode_embeddings

        def vision(tower, images, prompts=None, *args, **kwargs):
            self.counts["frozen_image" if prompts is None else "prompted_image"] += 1
            return vision_forward(tower, images, prompts, *args, **kwargs)

        def text(tower, *args, **kwargs):
            self.counts["text"] += 1
            return text_encode(tower, *args, **kwargs)

        monkeypatch.setattr(VisionTower, "forward", vision)
        monkeypatch.setattr(type(model.text), "encode_embeddings", text)


@pytest.mark.parametrize("opts, expected", [
    ([], {"prompted_image": 2, "frozen_image": 1, "text": 1}),
    (["TRAINER.DISA.CIR_USE_MASK", False], {"prompted_image": 1, "frozen_image": 1, "text": 1}),
    (["TRAINER.DISA.MASK_SALIENCY", "frozen"], {"prompted_image": 2, "frozen_image": 1, "text": 1}),
    (ABLATION_LADDER["ivlp"], {"prompted_image": 1, "frozen_image": 0, "text": 1}),
])
def test_a_step_runs_only_the_passes_it_needs(tiny, monkeypatch, opts, expected):
    trainer = disa(tiny, *opts)
    trainer.forward_backward(batch())  # first step also builds the frozen text bank (once)
    counter = PassCounter(monkeypatch, trainer.model)
    for _ in range(2):
        trainer.forward_backward(batch())
    assert counter.counts == {k: 2 * v for k, v in expected.items()}


# ------------------------------------------------------------------------ what trains
def test_only_prompts_train_and_the_frozen_clip_stays_bit_identical(tiny):
    frozen = {k: v.clone() for k, v in tiny.state_dict().items()}
    trainer = disa(tiny, "OPTIM.LR", 0.5)
    learner = trainer.model.prompt_learner
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    for _ in range(2):
        summary = trainer.forward_backward(batch())
    assert set(summary) == {"loss", "loss_ce", "loss_sr", "loss_cir", "loss_dir", "acc"}
    assert all(v > 0 for k, v in summary.items() if k.startswith("loss"))
    learned = {id(p) for p in learner.parameters()}
    for name, param in trainer.model.named_parameters():
        assert (param.grad is not None) == (id(param) in learned), name
    assert all(not torch.equal(before[k], v) for k, v in learner.state_dict().items())
    assert all(torch.equal(frozen[k], v) for k, v in tiny.state_dict().items())


def test_registered_name_and_parameter_count_at_vit_b16():
    cfg = make_cfg("DiSa")
    cfg.merge_from_file("configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml")
    trainer = build_standalone(cfg, build_random_clip("ViT-B/16"), ["cat"])
    assert trainer.get_model_names() == ["prompt_learner"]
    assert sum(p.numel() for p in trainer.model.prompt_learner.parameters()) == 46_080


@pytest.mark.parametrize("gpa", [True, False])
def test_checkpoint_holds_prompts_and_gpa_state_only_when_gpa_is_on(tiny, tmp_path, gpa):
    trainer = disa(tiny, "TRAINER.DISA.GPA", gpa, "OPTIM.MAX_EPOCH", 1)
    trainer.num_batches = trainer.max_epoch = 1  # this step ends the (only) epoch
    trainer.forward_backward(batch())
    trainer.save_model(0, str(tmp_path))
    saved = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-1", weights_only=False)
    assert set(saved["state_dict"]) == {n for n, _ in trainer.model.prompt_learner.named_parameters()}
    assert ("gpa_epochs" in saved) == gpa


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_fp16_and_amp_steps(prec, monkeypatch):
    """fp16 CLIP weights / autocast as on CUDA (forced on CPU), with every branch of the step."""
    from disakit.clipkit.precision import PrecisionPolicy

    monkeypatch.setattr(PrecisionPolicy, "resolve",
                        classmethod(lambda cls, p, device, verbose=True: cls(p, device)))
    for saliency in ("prompted", "frozen"):
        trainer = disa(build_random_clip("tiny"), "TRAINER.DISA.PREC", prec,
                       "TRAINER.DISA.MASK_SALIENCY", saliency, "TRAINER.DISA.MASK_PROB", 0.5,
                       "TRAINER.DISA.DIR_FORM", "displacement")
        summary = trainer.forward_backward(batch())
        assert all(np.isfinite(v) for v in summary.values()) and summary["loss_cir"] > 0
        assert {p.dtype for p in trainer.model.prompt_learner.parameters()} == {torch.float32}


# ------------------------------------------------------------------------ knobs and ladder
PROTO_CE = ["TRAINER.DISA.DIR_FORM", "proto_ce"]
KNOBS = [  # (base options, the knob changed on top of them)
    ([], ["TRAINER.DISA.SR_MODE", "logits"]), ([], ["TRAINER.DISA.CIR_KL", "reverse"]),
    ([], ["TRAINER.DISA.CIR_KL", "symmetric"]), ([], ["TRAINER.DISA.CIR_REDUCTION", "batchmean"]),
    ([], ["TRAINER.DISA.MASK_FILL", "mean"]), ([], ["TRAINER.DISA.MASK_FILL", "black"]),
    ([], ["TRAINER.DISA.MASK_SALIENCY", "frozen"]), ([], ["TRAINER.DISA.MASK_SALIENCY", "random"]),
    ([], ["TRAINER.DISA.MASK_TEXT", "pred"]), ([], ["TRAINER.DISA.MASK_PROB", 0.5]),
    ([], ["TRAINER.DISA.MASK_RATIO", 0.1]), ([], ["TRAINER.DISA.CIR_USE_MASK", False]),
    ([], PROTO_CE), ([], ["TRAINER.DISA.DIR_FORM", "displacement"]),
    ([], ["TRAINER.DISA.DIR_FORM", "l2"]), (PROTO_CE, ["TRAINER.DISA.DIR_TAU", 0.5]),
    ([], ["TRAINER.DISA.SR_LOGITS_WEIGHT", 3.0]), ([], ["TRAINER.DISA.TEXT_LOSS_WEIGHT", 1.0]),
    ([], ["TRAINER.DISA.IMAGE_LOSS_WEIGHT", 1.0]), ([], ["TRAINER.DISA.CIR_WEIGHT", 2.0]),
    ([], ["TRAINER.DISA.DIR_WEIGHT", 5.0]),
]


@pytest.mark.parametrize("base, knob", KNOBS, ids=[" ".join(map(str, k)) for _, k in KNOBS])
def test_every_knob_changes_the_loss(tiny, base, knob):
    images, labels = batch().values()
    reference = disa(tiny, *base, prompt_std=0.5).compute_loss(images, labels)[1]
    summary = disa(tiny, *base, *knob, prompt_std=0.5).compute_loss(images, labels)[1]
    changed = [k for k in ("loss_sr", "loss_cir", "loss_dir")
               if abs(summary[k] - reference[k]) > 1e-6 * max(1.0, abs(reference[k]))]
    assert changed, f"{knob} did not change any loss term"
    assert summary["loss_ce"] == pytest.approx(reference["loss_ce"], rel=1e-6)


@pytest.mark.parametrize("name, templates", [("select7", 7), ("custom", 1), ("single", 1),
                                             ("imagenet80", 80)])
def test_frozen_templates(tiny, name, templates):
    trainer = disa(tiny, "TRAINER.DISA.FROZEN_TEMPLATES", name)
    assert len(trainer.text_teacher.templates) == templates
    if name == "custom":
        assert trainer.text_teacher.templates == ("a centered satellite photo of {}.",)


@pytest.mark.parametrize("rung", list(ABLATION_LADDER))
def test_each_rung_of_the_ablation_ladder_runs_a_step(tiny, rung):
    trainer = disa(tiny, *ABLATION_LADDER[rung])
    summary = trainer.forward_backward(batch())
    active = {k for k in ("loss_sr", "loss_cir", "loss_dir") if summary[k] != 0.0}
    expected = {"ivlp": set(), "+sr": {"loss_sr"}}.get(
        rung, {"loss_sr", "loss_cir"} if not rung.startswith("+dir") else
        {"loss_sr", "loss_cir", "loss_dir"})
    assert active == expected, rung
    assert trainer.gpa_enabled() == (rung != "ivlp")


def test_bad_choices_name_the_key(tiny):
    with pytest.raises(ValueError, match="TRAINER.DISA.SR_MODE must be one of"):
        disa(tiny, "TRAINER.DISA.SR_MODE", "full")
    with pytest.raises(ValueError, match="TRAINER.DISA.MASK_RATIO must be between"):
        disa(tiny, "TRAINER.DISA.MASK_RATIO", 1.5)
    with pytest.raises(RuntimeError, match="trainer.prototypes"):
        disa(tiny, prototypes=False).forward_backward(batch())


# ------------------------------------------------------------------------ prototypes
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def build_trainer(data_root, clip_path, out, *opts):
    import train
    from disakit.dassl_api import build_trainer as build

    args = train.build_parser().parse_args(
        ["--root", str(data_root), "--seed", "1", "--trainer", "DiSa", "--dataset-config-file",
         "configs/datasets/eurosat.yaml", "--config-file",
         "configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml", "--backbone", str(clip_path),
         "--output-dir", str(out), "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "3",
         "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2",
         "TRAINER.DISA.GPA_MEAN", "2.0", "DATASET.SUBSAMPLE_CLASSES", "base", *[str(o) for o in TINY],
         *opts])
    return build(train.setup_cfg(args))


def test_prototypes_are_computed_once_from_the_frozen_encoder_and_never_saved(
        data_root, tiny_clip_path, tmp_path, monkeypatch):
    calls = []
    real = disa_module.trainer_prototypes

    def counting(trainer, *args, **kwargs):
        calls.append((args, kwargs))
        return real(trainer, *args, **kwargs)

    monkeypatch.setattr(disa_module, "trainer_prototypes", counting)
    trainer = build_trainer(data_root, tiny_clip_path, tmp_path / "train")
    seen = []
    step = type(trainer).forward_backward
    monkeypatch.setattr(type(trainer), "forward_backward",
                        lambda self, b: (seen.append(self.prototypes.clone()), step(self, b))[1])
    trainer.train()
    assert len(calls) == 1 and calls[0] == (("test", True), {"tag": "disa"})
    assert len(seen) == 4 and all(torch.equal(p, seen[0]) for p in seen)
    # the directions are the normalised class means of normalised frozen-CLIP features
    from disakit.clipkit.loading import load_clip

    stock, tfm = load_clip(str(tiny_clip_path)).eval(), trainer.test_loader.dataset.transform
    with torch.no_grad():
        for label in range(2):
            imgs = torch.stack([tfm(read_image(i.impath)) for i in trainer.dm.dataset.train_x
                                if i.label == label])
            expected = F.normalize(F.normalize(stock.encode_image(imgs), dim=-1).mean(0), dim=0)
            assert (seen[0][label] - expected).abs().max() <= 1e-5
    saved = torch.load(tmp_path / "train" / "prompt_learner" / "model.pth.tar-2", weights_only=False)
    assert set(saved["state_dict"]) == {n for n, _ in trainer.model.prompt_learner.named_parameters()}

    evaluator = build_trainer(data_root, tiny_clip_path, tmp_path / "eval",
                              "DATASET.SUBSAMPLE_CLASSES", "new")
    evaluator.load_model(str(tmp_path / "train"), epoch=2)
    evaluator.test()
    assert len(calls) == 1 and evaluator.prototypes is None  # evaluation never needs them

    other = build_trainer(data_root, tiny_clip_path, tmp_path / "other",
                          "TRAINER.DISA.DIR_PROTO_TRANSFORM", "train",
                          "TRAINER.DISA.DIR_PROTO_NORMALIZE", "False")
    means = other.load_prototypes()
    assert calls[-1] == (("train", False), {"tag": "disa"})
    assert not torch.allclose(means.norm(dim=-1), torch.ones(2), atol=1e-4)  # not renormalised
