"""The bundled trainers' models on a tiny random CLIP, built without a dataset (build_standalone).

Covers: prompt assembly and injection against the stock CLIP encoders, truncation exactness
(incl. CoCoOp's per-image pass), per-image prompts, parameter counts at ViT-B/16 size, what
trains and what stays frozen, and GPA's accumulation and exact resume through checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, toolkit_cfg

from disakit import trainers  # noqa: F401  (registers the trainers)
from disakit.clipkit.deep_prompts import DeepPromptedCLIP, DeepPromptSpec, VLPromptLearner
from disakit.clipkit.prompts import tokenize
from disakit.clipkit.random_clip import build_random_clip
from disakit.trainers.base import build_standalone

CLASSNAMES = ["cat", "golden_retriever", "a very long class name with many words", "car"]
TRAINERS = ["CoOp", "CoCoOp", "KgCoOp", "MaPLe", "IVLP", "PromptSRC", "VPT"]
# The tiny CLIP has 2 layers per tower: deep prompts in both (depth 2).
TINY_DEPTHS = {"MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", 2],
               **{t: [f"TRAINER.{t.upper()}.PROMPT_DEPTH_TEXT", 2,
                      f"TRAINER.{t.upper()}.PROMPT_DEPTH_VISION", 2] for t in ("IVLP", "PromptSRC")},
               "VPT": ["TRAINER.VPT.PROMPT_DEPTH_VISION", 2]}


def make_cfg(trainer: str, *opts, config: str | None = None):
    """``config`` is relative to configs/trainers/."""
    return toolkit_cfg(trainer, *opts,
                       config=REPO / "configs" / "trainers" / config if config else None)


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


def standalone(trainer: str, clip_model, *opts, classnames=CLASSNAMES):
    torch.manual_seed(0)
    cfg = make_cfg(trainer, *TINY_DEPTHS.get(trainer, []), *opts)
    return build_standalone(cfg, clip_model, classnames)


def stock_text(clip_model, texts) -> torch.Tensor:
    return F.normalize(clip_model.encode_text(tokenize(texts)), dim=-1)


def full_length_text(model, deep=()) -> torch.Tensor:
    """The learner's prompts re-assembled at the full 77 tokens and encoded without truncation."""
    learner = model.prompt_learner
    tokens = tokenize([f"{learner.prefix_text} {c}." for c in learner.classnames])
    embeds = model.text.embed(tokens)
    n = learner.n_ctx
    embeds = torch.cat([embeds[:, :1], learner.ctx.expand(len(tokens), -1, -1), embeds[:, 1 + n:]], 1)
    feats = model.text.encode_embeddings(embeds, tokens.argmax(-1), deep, truncate=False)
    return F.normalize(feats, dim=-1)


# ---------------------------------------------------------------- exactness of the prompt module
@torch.no_grad()
def test_depth_zero_reproduces_stock_clip(tiny):
    model = DeepPromptedCLIP(tiny, lambda t, v: VLPromptLearner(t, v, DeepPromptSpec(0, 0, 0, 0)),
                             CLASSNAMES)
    images = torch.randn(2, 3, 224, 224)
    expected_text = stock_text(tiny, [f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
    assert (model.text_features() - expected_text).abs().max() <= 1e-5
    expected_image = F.normalize(tiny.encode_image(images), dim=-1)
    assert (model.image_features(images) - expected_image).abs().max() <= 1e-5


@torch.no_grad()
def test_phrase_initialised_context_reproduces_the_phrase(tiny):
    """4 learned tokens initialised from "a photo of a" (first_n) encode the same sentence."""
    spec = DeepPromptSpec(4, 1, 0, 0, ctx_init="a photo of a")
    model = DeepPromptedCLIP(tiny, lambda t, v: VLPromptLearner(t, v, spec), CLASSNAMES)
    expected = stock_text(tiny, [f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
    assert (model.text_features() - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("trainer", ["CoOp", "KgCoOp", "MaPLe", "IVLP", "PromptSRC"])
@torch.no_grad()
def test_truncated_text_pass_equals_full_length(tiny, trainer):
    model = standalone(trainer, tiny, f"TRAINER.{trainer.upper()}.CTX_INIT", "").model
    deep = model.prompt_learner.text_prompts()[2] if hasattr(model.prompt_learner, "text_prompts") else ()
    assert model.prompt_learner.tokens.shape[1] < 77  # the buffers really are truncated
    assert (model.text_features() - full_length_text(model, deep)).abs().max() <= 1e-5


@torch.no_grad()
def test_cocoop_batched_per_image_pass_equals_per_image_full_length(tiny):
    model = standalone("CoCoOp", tiny, "TRAINER.COCOOP.N_CTX", 4).model
    images = torch.randn(3, 3, 224, 224)
    image_feats = model.image_features(images)
    batched = model.conditional_text_features(image_feats)
    learner = model.prompt_learner
    for b in range(3):
        shift = learner.meta_net(image_feats[b:b + 1])[0]
        ctx = learner.ctx.data.clone()
        learner.ctx.data += shift  # the per-image context, then the plain full-length pass
        try:
            assert (batched[b] - full_length_text(model)).abs().max() <= 1e-5
        finally:
            learner.ctx.data.copy_(ctx)
    logits = model(images)
    assert torch.allclose(logits, 100 * torch.einsum("be,bce->bc", image_feats, batched), atol=1e-4)


@torch.no_grad()
def test_cocoop_prompts_depend_on_the_image_and_chunking_is_exact(tiny, monkeypatch):
    model = standalone("CoCoOp", tiny).model
    feats = model.image_features(torch.randn(3, 3, 224, 224))
    text = model.conditional_text_features(feats)
    assert text.shape == (3, len(CLASSNAMES), feats.shape[-1])
    assert (text[0] - text[1]).abs().max() > 1e-4
    monkeypatch.setattr(type(model), "MAX_TEXT_SEQUENCES", len(CLASSNAMES))  # one image per pass
    assert (model.conditional_text_features(feats) - text).abs().max() <= 1e-6


def test_maple_visual_prompts_are_projections_of_the_text_prompts(tiny):
    learner = standalone("MaPLe", tiny).model.prompt_learner
    proj_a = learner.compound_prompt_projections[0]
    assert len(learner.compound_prompt_projections) == 1
    prompts, deep = learner.vision_prompts()
    assert torch.allclose(prompts, learner.proj(learner.ctx))
    assert torch.allclose(deep[0], proj_a(learner.compound_prompts_text[0]))
    deeper = standalone("MaPLe", build_random_clip("tiny"), "TRAINER.MAPLE.PROMPT_DEPTH", 1)
    assert len(deeper.model.prompt_learner.compound_prompt_projections) == 0


def test_prompt_depth_beyond_the_tower_names_the_key(tiny):
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT 3 must be between 0 and the tower's 2"):
        standalone("IVLP", tiny, "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 3)


def test_maple_depth_must_fit_the_towers(tiny):
    for depth in (0, 3):
        with pytest.raises(ValueError, match=f"PROMPT_DEPTH {depth} must be between 1"):
            standalone("MaPLe", tiny, "TRAINER.MAPLE.PROMPT_DEPTH", depth)


# ------------------------------------------------------ parameter counts (docs/methods/README.md)
PUBLISHED_COUNTS = [
    ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", 35_360),
    ("KgCoOp", "KgCoOp/vit_b16_ep100_ctxv1.yaml", 2_048),
    ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", 3_555_072),
    ("IVLP", "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml", 46_080),
    ("IVLP", "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", 30_720),
    ("PromptSRC", "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml", 46_080),
]


def test_learnable_parameter_counts_at_vit_b16():
    clip_model = build_random_clip("ViT-B/16")
    for trainer, config, expected in PUBLISHED_COUNTS:
        learner = build_standalone(make_cfg(trainer, config=config), clip_model,
                                   ["cat"]).model.prompt_learner
        count = sum(p.numel() for p in learner.parameters())
        assert count == expected, (config, count)
    maple = build_standalone(make_cfg("MaPLe"), clip_model, ["cat"]).model.prompt_learner
    assert maple.proj.weight.numel() + maple.proj.bias.numel() == 393_984
    assert sum(p.numel() for p in maple.compound_prompt_projections.parameters()) == 3_151_872
    first = maple.compound_prompt_projections[0]  # deep copies of ONE initialised layer
    assert all(torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
               for layer in maple.compound_prompt_projections)
    assert not torch.equal(maple.proj.weight, first.weight)


# ---------------------------------------------------------------- what trains, what stays frozen
def _batch(n: int = 2) -> dict:
    torch.manual_seed(1)
    return {"img": torch.randn(n, 3, 224, 224), "label": torch.tensor([0, 2, 1, 3][:n])}


@pytest.mark.parametrize("trainer", TRAINERS)
def test_only_the_prompt_learner_trains(tiny, trainer):
    trainer_obj = standalone(trainer, tiny, "OPTIM.NAME", "sgd", "OPTIM.LR", 0.5)
    model, learner = trainer_obj.model, trainer_obj.model.prompt_learner
    frozen_before = {k: v.clone() for k, v in tiny.state_dict().items()}
    learned_before = {k: v.clone() for k, v in learner.state_dict().items()}
    learned = {id(p) for p in learner.parameters()}
    trainer_obj.num_batches = 10  # mid-epoch steps (no LR step, no GPA)
    for _ in range(2):
        summary = trainer_obj.forward_backward(_batch())
        assert "loss" in summary and all(isinstance(v, float) for v in summary.values())
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (id(param) in learned and param.numel() > 0), name
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in frozen_before.items())
    for key, value in learner.state_dict().items():
        if value.numel():
            assert not torch.equal(value, learned_before[key]), f"{trainer}: {key} did not train"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_checkpoint_holds_only_learned_prompts(tiny, trainer, tmp_path: Path):
    trainer_obj = standalone(trainer, tiny)
    trainer_obj.save_model(0, str(tmp_path))
    name = trainer_obj.MODEL_NAME
    saved = torch.load(tmp_path / name / "model.pth.tar-1", weights_only=False)
    assert set(saved["state_dict"]) == {k for k, _ in trainer_obj.model.prompt_learner.named_parameters()}
    other = standalone(trainer, tiny, classnames=["dog", "bird"])  # new classes: buffers rebuilt
    other.load_model(str(tmp_path), epoch=1)
    for key, value in other.model.prompt_learner.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key])


@torch.no_grad()
def test_eval_text_features_are_cached_except_for_cocoop(tiny):
    for trainer, cached in (("IVLP", True), ("CoCoOp", False)):
        trainer_obj = standalone(trainer, tiny)
        trainer_obj.set_model_mode("eval")
        images = _batch()["img"]
        first = trainer_obj.model_inference(images)
        assert (trainer_obj._eval_text_feats is not None) == cached
        assert torch.allclose(trainer_obj.model_inference(images), first, atol=1e-5)


# ---------------------------------------------------------------- GPA through real checkpoints
GPA_OPTS = ["OPTIM.NAME", "sgd", "OPTIM.LR", 0.05, "OPTIM.MAX_EPOCH", 4, "OPTIM.LR_SCHEDULER",
            "cosine", "TRAINER.PROMPTSRC.GPA_MEAN", 2, "TRAINER.PROMPTSRC.GPA_STD", 1]


def _run_epochs(trainer_obj, epochs, out: Path) -> None:
    """One batch per epoch: each step is the epoch's last (LR step + GPA), then save."""
    for epoch in epochs:
        trainer_obj.epoch = epoch
        trainer_obj.set_model_mode("train")
        trainer_obj.forward_backward(_batch())
        trainer_obj.save_model(epoch, str(out))


def test_gpa_resume_is_exact(tiny, tmp_path: Path, capsys):
    straight = standalone("PromptSRC", tiny, *GPA_OPTS)
    _run_epochs(straight, range(4), tmp_path / "straight")
    assert "Using GPA model for final inference..." in capsys.readouterr().out

    first_half = standalone("PromptSRC", tiny, *GPA_OPTS)
    _run_epochs(first_half, range(2), tmp_path / "resumed")
    resumed = standalone("PromptSRC", tiny, *GPA_OPTS, "SEED", 7)
    with torch.no_grad():  # a different starting point: everything must come from the checkpoint
        for p in resumed.model.prompt_learner.parameters():
            p.add_(1.0)
    assert resumed.resume_model_if_exist(str(tmp_path / "resumed")) == 2
    assert resumed.gpa.epochs == 2
    _run_epochs(resumed, range(2, 4), tmp_path / "resumed")

    final_straight = straight.model.prompt_learner.state_dict()
    final_resumed = resumed.model.prompt_learner.state_dict()
    assert all(torch.equal(final_straight[k], final_resumed[k]) for k in final_straight)
    saved = torch.load(tmp_path / "resumed" / "VLPromptLearner" / "model.pth.tar-4",
                       weights_only=False)
    assert saved["gpa_epochs"] == 4
    assert all(torch.equal(saved["state_dict"][k], final_straight[k]) for k in final_straight)


def test_gpa_aggregate_is_the_weighted_mean_of_epoch_prompts(tiny, tmp_path: Path):
    """The final prompts are Σ_e w_e θ_e over the per-epoch checkpoints' (pre-GPA) prompts."""
    trainer_obj = standalone("PromptSRC", tiny, *GPA_OPTS)
    _run_epochs(trainer_obj, range(4), tmp_path)
    folder = tmp_path / "VLPromptLearner"
    per_epoch = [torch.load(folder / f"model.pth.tar-{e}", weights_only=False) for e in (1, 2, 3)]
    weights = trainer_obj.gpa.weights
    final = trainer_obj.model.prompt_learner.state_dict()
    for key, value in final.items():
        partial = sum(w * c["state_dict"][key] for w, c in zip(weights, per_epoch))
        assert torch.allclose(per_epoch[-1]["gpa_sum"][key], partial, atol=1e-6)
        last = (value - per_epoch[-1]["gpa_sum"][key]) / weights[3]  # θ_4 recovered from S
        assert not torch.allclose(value, last, atol=1e-4)  # GPA did change the prompts


# ---------------------------------------------------------------- precisions (CPU emulation)
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_fp16_and_amp_steps_keep_learnables_fp32(prec, monkeypatch):
    """fp16 CLIP weights / autocast, as on CUDA (forced on CPU): every trainer steps and evaluates."""
    from disakit.clipkit.precision import PrecisionPolicy

    monkeypatch.setattr(PrecisionPolicy, "resolve",
                        classmethod(lambda cls, p, device, verbose=True: cls(p, device)))
    for trainer in TRAINERS:
        clip_model = build_random_clip("tiny")
        trainer_obj = standalone(trainer, clip_model, f"TRAINER.{trainer.upper()}.PREC", prec)
        trainer_obj.num_batches = 10
        summary = trainer_obj.forward_backward(_batch())
        assert all(torch.isfinite(torch.tensor(v)) for v in summary.values()), trainer
        trainer_obj.set_model_mode("eval")
        assert torch.isfinite(trainer_obj.model_inference(_batch()["img"]).float()).all(), trainer
        learner = trainer_obj.model.prompt_learner
        assert {p.dtype for p in learner.parameters()} == {torch.float32}, trainer
        expected = torch.float16 if prec == "fp16" else torch.float32
        assert clip_model.visual.conv1.weight.dtype == expected
