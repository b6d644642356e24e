"""MMRL and MMRL++ (trainers/mmrl.py, trainers/mmrlpp.py, disakit/clipkit/representation.py) on a
tiny random CLIP, built without a dataset: zero-shot equivalence with the representation tokens
off, parameter counts at ViT-B/16 shapes, what trains, the loss against its formula, task-aware
inference, prompt-only checkpoints and the official code's checkpoints, and the per-dataset
tables' precedence (config file < table < command line) through scripts/protocol.py."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, toolkit_cfg

from disakit import trainers  # noqa: F401  (registers the trainers)
from disakit.clipkit.losses import representation_terms
from disakit.clipkit.prompts import tokenize
from disakit.clipkit.random_clip import build_random_clip
from disakit.clipkit.representation import RepresentationSpec
from disakit.trainers.base import build_standalone
from disakit.trainers.config import ConfigError

CLASSNAMES = ["cat", "golden_retriever", "a very long class name with many words", "car"]
NODES = {"MMRL": "MMRL", "MMRLpp": "MMRLPP"}
TEMPLATE = "a photo of a {}, a type of pet."  # OxfordPets' hand-crafted template


def make_cfg(trainer: str, *opts):
    return toolkit_cfg(trainer, "DATASET.NAME", "OxfordPets", *opts)


def standalone(trainer: str, clip_model, *opts, classnames=CLASSNAMES, seed: int = 0):
    """The trainer on the 2-layer tiny CLIP: representation layers 1 and 2."""
    torch.manual_seed(seed)
    cfg = make_cfg(trainer, f"TRAINER.{NODES[trainer]}.REP_LAYERS", [1, 2], *opts)
    return build_standalone(cfg, clip_model, classnames)


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


def _images(n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, 224, 224)


# ------------------------------------------------------------------ zero-shot with tokens off
@pytest.mark.parametrize("trainer", list(NODES))
@torch.no_grad()
def test_tokens_off_is_zero_shot_clip_on_the_same_weights(tiny, trainer):
    model = standalone(trainer, tiny).model
    images = _images()
    text = model.text_features(insert=False)
    image, rep = model.encode_image(images, insert=False)
    expected_text = F.normalize(tiny.encode_text(tokenize(
        [TEMPLATE.format(c.replace("_", " ")) for c in CLASSNAMES])), dim=-1)
    expected_image = F.normalize(tiny.encode_image(images), dim=-1)
    assert rep is None
    assert (text - expected_text).abs().max() <= 1e-5
    assert (image - expected_image).abs().max() <= 1e-5
    zero_shot = tiny.logit_scale.exp() * expected_image @ expected_text.t()  # 100, as pretrained
    assert (model.scaled(image, text) - zero_shot).abs().max() <= 1e-3


@torch.no_grad()
def test_fusion_and_mmrlpp_rep_branch_starts_at_clip_projection(tiny):
    model = standalone("MMRLpp", tiny).model
    images = _images(2)
    tokens = model.rep_tokens()
    out = model.vision(images, insertion=model.prompt_learner.insertions(tokens)[1],
                       return_tokens=True)
    rep = tiny.visual.ln_post(out.tokens[:, 1:1 + 5]).mean(dim=1) @ tiny.visual.proj  # B = 0
    f_c, f_r = model.encode_image(images, tokens)
    assert (f_r - F.normalize(rep, dim=-1)).abs().max() <= 1e-5
    assert (f_c - F.normalize(out.features, dim=-1)).abs().max() <= 1e-6
    s_c, s_r = model.logit_pair(images, tokens=tokens)
    assert torch.allclose(model.fuse(s_c, s_r), 0.7 * s_c + 0.3 * s_r)
    model.alpha = 1.0
    assert torch.equal(model(images), s_c)


def test_representation_layers_map_to_blocks_and_are_checked(tiny):
    a, b = torch.zeros(1), torch.ones(1)
    assert RepresentationSpec(layers=(2, 4)).per_block([a, b]) == [a, None, b]
    with pytest.raises(ConfigError, match=r"REP_LAYERS \[1, 3\] lie outside the towers.*"
                                          r"REP_LAYERS \[2\]"):
        standalone("MMRL", tiny, "TRAINER.MMRL.REP_LAYERS", [1, 3])
    with pytest.raises(ConfigError, match="must be increasing"):
        standalone("MMRL", tiny, "TRAINER.MMRL.REP_LAYERS", [2, 1])
    with pytest.raises(ValueError, match=r"TRAINER.MMRLPP.TASK must be one of"):
        standalone("MMRLpp", tiny, "TRAINER.MMRLPP.TASK", "XD")


# ------------------------------------------------------ parameter counts at ViT-B/16 shapes
def test_learnable_parameter_counts_at_vit_b16():
    clip_model = build_random_clip("ViT-B/16")
    counts = {}
    for trainer, opts in (("MMRL", []), ("MMRLpp", []), ("MMRL", ["TRAINER.MMRL.REP_DIM", 2048])):
        learner = build_standalone(make_cfg(trainer, *opts), clip_model,
                                   ["cat"]).model.prompt_learner
        counts[(trainer, tuple(opts))] = sum(p.numel() for p in learner.parameters())
        if trainer == "MMRL" and not opts:
            first = learner.compound_rep_tokens_r2vproj[0]  # deep copies of ONE Linear
            assert len(learner.compound_rep_tokens_r2vproj) == 7
            assert all(torch.equal(layer.weight, first.weight)
                       for layer in learner.compound_rep_tokens_r2vproj)
            assert learner.proj_rep.shape == (768, 512)
        if trainer == "MMRLpp":
            assert learner.srra_r2vproj.weight.shape == (768, 512)
            assert all(not aligner.B.any() for aligner in learner.srra_r2tproj.srra)
            assert learner.proj_lora_A.shape == (768, 64) and not learner.proj_lora_B.any()
    assert counts == {("MMRL", ()): 4_992_256, ("MMRLpp", ()): 813_312,
                      ("MMRL", ("TRAINER.MMRL.REP_DIM", 2048)): 18_762_496}


# ------------------------------------------------------------------- what trains, the loss
@pytest.mark.parametrize("trainer", list(NODES))
def test_only_the_representation_learner_trains(tiny, trainer):
    obj = standalone(trainer, tiny, "OPTIM.NAME", "sgd", "OPTIM.LR", 0.5)
    learner = obj.model.prompt_learner
    frozen_before = {k: v.clone() for k, v in tiny.state_dict().items()}
    learned_before = {k: v.clone() for k, v in learner.state_dict().items()}
    learned = {id(p) for p in learner.parameters()}
    obj.num_batches = 10  # mid-epoch steps
    batch = {"img": _images(2), "label": torch.tensor([0, 2])}
    for _ in range(2):
        summary = obj.forward_backward(batch)
    assert set(summary) == {"loss", "loss_ce", "loss_ce_rep", "loss_reg_image", "loss_reg_text",
                            "acc"}
    for name, param in obj.model.named_parameters():
        assert (param.grad is not None) == (id(param) in learned), name
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in frozen_before.items())
    for key, value in learner.state_dict().items():
        assert not torch.equal(value, learned_before[key]), f"{trainer}: {key} did not train"


def test_loss_terms_equal_their_formulas_on_hand_built_tensors():
    s_c = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    s_r = torch.tensor([[0.1, 0.2, 0.3], [1.5, -0.5, 0.0]])
    labels = torch.tensor([0, 2])
    image = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    frozen_image = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    frozen_text = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])

    def ce(logits, y):
        return sum(math.log(sum(math.exp(v) for v in row)) - row[t]
                   for row, t in zip(logits.tolist(), y.tolist())) / len(y)

    def one_minus_mean_cos(a, b):
        cos = [sum(x * y for x, y in zip(u, v)) / math.hypot(*u) / math.hypot(*v)
               for u, v in zip(a.tolist(), b.tolist())]
        return 1 - sum(cos) / len(cos)

    terms = representation_terms(s_c, s_r, labels, image, frozen_image, text, frozen_text,
                                 alpha=0.7, reg_weight=6.0)
    expected = {"loss_ce": 0.7 * ce(s_c, labels), "loss_ce_rep": 0.3 * ce(s_r, labels),
                "loss_reg_image": 6.0 * one_minus_mean_cos(image, frozen_image),  # 6·(1 − 1/2)
                "loss_reg_text": 6.0 * one_minus_mean_cos(text, frozen_text)}  # 6·(1 − 1/3)
    assert expected["loss_reg_image"] == pytest.approx(3.0)
    assert expected["loss_reg_text"] == pytest.approx(4.0)
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("trainer", list(NODES))
def test_trainer_loss_against_frozen_clip_computed_independently(tiny, trainer):
    obj = standalone(trainer, tiny, f"TRAINER.{NODES[trainer]}.REG_WEIGHT", 2.0)
    model, images, labels = obj.model, _images(2), torch.tensor([1, 3])
    torch.manual_seed(3)
    loss, summary = obj.compute_loss(images, labels)
    with torch.no_grad():
        tokens = model.rep_tokens()
        text = model.text_features(tokens)
        f_c, f_r = model.encode_image(images, tokens)
        frozen_image = F.normalize(tiny.encode_image(images), dim=-1)
        frozen_text = F.normalize(tiny.encode_text(tokenize(
            [TEMPLATE.format(c.replace("_", " ")) for c in CLASSNAMES])), dim=-1)
        s_c, s_r = 100 * f_c @ text.t(), 100 * f_r @ text.t()
        expected = (0.7 * F.cross_entropy(s_c, labels) + 0.3 * F.cross_entropy(s_r, labels)
                    + 2.0 * (1 - F.cosine_similarity(f_c, frozen_image).mean())
                    + 2.0 * (1 - F.cosine_similarity(text, frozen_text).mean()))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)
    assert summary["loss"] == pytest.approx(loss.item())


# ---------------------------------------------------------------- task-aware inference
CASES = [  # (TASK, SUBSAMPLE_CLASSES, dataset evaluated, training source or None, fused?)
    ("B2N", "base", "OxfordPets", None, True), ("B2N", "new", "OxfordPets", None, False),
    ("FS", "all", "DescribableTextures", None, True),
    ("CD", "all", "ImageNet", "ImageNet", True), ("CD", "all", "Caltech101", "ImageNet", False),
    ("CD", "all", "ImageNetV2", "ImageNet", False), ("CD", "all", "ImageNet", None, True),
    ("CD", "all", "Caltech101", None, False),
    ("auto", "base", "OxfordPets", None, True), ("auto", "new", "OxfordPets", None, False),
    ("auto", "all", "DescribableTextures", "DescribableTextures", True),
    ("auto", "all", "Caltech101", "ImageNet", False),
]


@pytest.mark.parametrize("task, sub, dataset, source, fused", CASES)
def test_inference_follows_the_task(tiny, task, sub, dataset, source, fused):
    obj = standalone("MMRL", tiny, "TRAINER.MMRL.TASK", task, "DATASET.SUBSAMPLE_CLASSES", sub,
                     "DATASET.NAME", dataset)
    obj._source_dataset = source
    assert obj.fused_inference()[0] is fused


@torch.no_grad()
def test_model_inference_returns_the_chosen_logits_and_caches_per_evaluation(tiny):
    obj = standalone("MMRLpp", tiny)
    images = _images(2)
    s_c, s_r = obj.model.logit_pair(images)
    obj.set_model_mode("eval")
    for fused, expected in ((True, 0.7 * s_c + 0.3 * s_r), (False, s_c)):
        obj._fused_eval = fused
        assert (obj.model_inference(images) - expected).abs().max() <= 1e-4
    assert obj._eval_text_feats is not None and obj._eval_tokens is not None
    obj.model.set_classnames(["dog", "bird"])  # another class set: never the stale features
    assert obj.model_inference(images).shape == (2, 2)
    obj.set_model_mode("train")  # the cache goes with the mode: prompts may change
    assert obj._eval_text_feats is None


# ------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("trainer", list(NODES))
def test_checkpoint_holds_only_learned_tensors_and_its_source(tiny, trainer, tmp_path: Path):
    obj = standalone(trainer, tiny)
    obj.save_model(0, str(tmp_path))
    saved = torch.load(tmp_path / obj.MODEL_NAME / "model.pth.tar-1", weights_only=True)
    assert obj.MODEL_NAME == "MultiModalRepresentationLearner"
    assert set(saved["state_dict"]) == {k for k, _ in obj.model.prompt_learner.named_parameters()}
    assert saved["source_dataset"] == "OxfordPets"
    other = standalone(trainer, tiny, classnames=["dog", "bird"], seed=5)
    other.load_model(str(tmp_path), epoch=1)
    for key, value in other.model.prompt_learner.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key])
    assert other._source_dataset == "OxfordPets"


def official_state_dict(obj, clip_model) -> dict:
    """The official code's whole-model layout: ``representation_learner.*``, the visual tower
    under ``image_encoder.`` (with MMRL's ``proj_rep`` / MMRL++'s ``A``, ``B`` in it), the text
    tower under ``text_encoder.``, and the class-dependent ``prompt_embeddings``; fp16 learned
    tensors, as a fp16 run saves them."""
    learner = obj.model.prompt_learner
    sd = {}
    for key, value in learner.state_dict().items():
        if key == "proj_rep":
            sd["image_encoder.proj_rep"] = value.half()
        elif key.startswith("proj_lora_"):
            sd["image_encoder." + key[len("proj_lora_"):]] = value.half()
        else:
            sd["representation_learner." + key] = value.half()
    sd.update({f"image_encoder.{k}": v for k, v in clip_model.visual.state_dict().items()})
    sd.update({f"text_encoder.transformer.{k}": v
               for k, v in clip_model.transformer.state_dict().items()})
    sd["text_encoder.positional_embedding"] = clip_model.positional_embedding.detach()
    sd["prompt_embeddings"] = torch.zeros(len(CLASSNAMES), 77, 64)
    return sd


@pytest.mark.parametrize("trainer, folder", [("MMRL", "MultiModalPromptLearner"),
                                             ("MMRL", "MultiModalRepresentationLearner"),
                                             ("MMRLpp", "MultiModalPromptLearner")])
@torch.no_grad()
def test_official_whole_model_checkpoint_loads_by_key_filtering(tiny, trainer, folder, tmp_path):
    source = standalone(trainer, tiny, seed=1)
    for p in source.model.prompt_learner.parameters():
        p.add_(torch.randn_like(p) * 0.1)  # B = 0 in MMRL++ otherwise
    optim = torch.optim.AdamW([p.clone() for p in source.model.prompt_learner.parameters()])
    (tmp_path / folder).mkdir()
    torch.save({"state_dict": official_state_dict(source, tiny), "epoch": 10,
                "optimizer": optim.state_dict(), "scheduler": {"last_epoch": 10},
                "val_result": None}, tmp_path / folder / "model.pth.tar-10")
    target = standalone(trainer, tiny, seed=2)
    target.load_model(str(tmp_path), epoch=10)
    expected = source.model.prompt_learner.state_dict()
    for key, value in target.model.prompt_learner.state_dict().items():
        assert torch.equal(value, expected[key].half().float()), key
    assert target._source_dataset is None  # official files do not record it: ImageNet rule
    images = _images(2)
    s_c, _ = target.model.logit_pair(images)
    s_c_ref, _ = source.model.logit_pair(images)
    assert (s_c - s_c_ref).abs().max() <= 0.05  # fp16 round trip of the learned tensors
    wrong = standalone(trainer, tiny, f"TRAINER.{NODES[trainer]}.REP_DIM", 64)
    with pytest.raises(RuntimeError, match="other representation sizes than this config"):
        wrong.load_model(str(tmp_path), epoch=10)


# ----------------------------------------- per-dataset tables through scripts/protocol.py
def resolved(trainer: str, phase: str, positional: list[str], *opts: str, tmp_path: Path):
    """The config train.py would run a protocol job with (table and options applied)."""
    from disakit.runkit import protocol

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import train

    ns = protocol.build_parser().parse_args(["--trainer", trainer, phase, *positional, *opts])
    args, _, _ = protocol.phase_jobs(ns, {"DATA": str(tmp_path), "OUTPUT": str(tmp_path)})
    return train.setup_cfg(train.build_parser().parse_args(args))


def test_per_dataset_tables_precedence_config_then_table_then_command_line(tmp_path):
    def mmrl(phase, positional, *opts):
        return resolved("MMRL", phase, positional, *opts, tmp_path=tmp_path).TRAINER.MMRL

    def pp(phase, positional, *opts):
        return resolved("MMRLpp", phase, positional, *opts, tmp_path=tmp_path).TRAINER.MMRLPP

    # MMRL: the table beats the config file (REG_WEIGHT 1.0), a trailing option beats the table.
    node = mmrl("base2new_train", ["eurosat", "1"])
    assert (node.REG_WEIGHT, node.REP_DIM, node.TASK) == (0.01, 2048, "B2N")
    node = mmrl("base2new_train", ["eurosat", "1"], "TRAINER.MMRL.REG_WEIGHT", "3.0")
    assert (node.REG_WEIGHT, node.REP_DIM) == (3.0, 2048)
    assert mmrl("base2new_train", ["imagenet_r", "1"]).REG_WEIGHT == 1.0  # not in the table
    assert mmrl("few_shot", ["dtd", "4", "1"]).REG_WEIGHT == 6.0
    assert mmrl("few_shot", ["dtd", "4", "1"]).TASK == "FS"
    # The official cross-dataset scripts: source lambda 0.2 (beats ImageNet's 0.5), targets at
    # REP_DIM 512 (beats EuroSAT's 2048, which could not load the ImageNet checkpoint).
    assert (mmrl("xd_train", ["1"]).REG_WEIGHT, mmrl("xd_train", ["1"]).TASK) == (0.2, "CD")
    assert mmrl("xd_test", ["eurosat", "1"]).REP_DIM == 512
    assert mmrl("dg_test", ["imagenet_a", "1"]).REP_DIM == 512
    # MMRL++: base-to-novel / few-shot table, and the cross-dataset table (beta per target).
    node = pp("base2new_test", ["dtd", "1"])
    assert (node.REG_WEIGHT, node.BETA, node.TASK) == (7.0, 0.9, "B2N")
    assert pp("xd_test", ["dtd", "1"]).BETA == 0.5
    assert pp("dg_test", ["imagenet_sketch", "1"]).BETA == 0.7
    node = pp("xd_train", ["1"])
    assert (node.REG_WEIGHT, node.BETA) == (0.1, 0.9)  # table beats the config's 0.2
    assert pp("xd_test", ["dtd", "1"], "TRAINER.MMRLPP.BETA", "0.25").BETA == 0.25
    assert pp("few_shot", ["food101", "2", "1"]).BETA == 0.1


@pytest.mark.parametrize("trainer, folder", [("MMRL", "mmrl"), ("MMRLpp", "mmrlpp")])
def test_every_protocol_has_a_script_and_an_existing_config(trainer, folder):
    from disakit.runkit import protocol

    for phase in ("base2new_train", "base2new_test", "xd_train", "xd_test", "dg_test", "few_shot"):
        script = (REPO / "scripts" / folder / f"{phase}.sh").read_text()
        assert f"--trainer {trainer} {phase} " in script
    expected = {("base2new", "dtd"): "vit_b16", ("base2new", "imagenet"): "vit_b16_imagenet",
                ("xd", "imagenet"): "vit_b16_cross_datasets",
                ("few_shot", "dtd"): "vit_b16_few_shot", ("few_shot", "imagenet"): "vit_b16_imagenet"}
    for (name, dataset), cfg in expected.items():
        assert protocol.config_name(trainer, name, dataset, env={}) == cfg
        assert protocol.config_path(trainer, cfg).is_file()


def test_official_spellings_give_the_same_run(tmp_path):
    """The official MMRL++ config (``TRAINER: MMRLpp:``) and script options (``TASK B2N``,
    ``TRAINER.MMRLpp.*``) resolve to the same config and run fingerprint as our spelling."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import train

    ours = REPO / "configs/trainers/MMRLpp/vit_b16.yaml"
    text = ours.read_text()
    official = tmp_path / "vit_b16.yaml"
    official.write_text(text.replace("  MMRLPP:\n", "  MMRLpp:\n"))
    common = ["--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml"),
              "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]

    def identity(config: Path, *opts: str, trainer: str = "MMRLpp") -> dict:
        args = train.build_parser().parse_args(["--trainer", trainer, "--config-file",
                                                str(config), *common, *opts])
        return train.run_identity(train.setup_cfg(args), args)

    theirs = identity(official, "TASK", "B2N", "TRAINER.MMRLpp.REG_WEIGHT", "7.0")
    mine = identity(ours, "TRAINER.MMRLPP.TASK", "B2N", "TRAINER.MMRLPP.REG_WEIGHT", "7.0")
    assert theirs == mine and theirs["TRAINER.MMRLPP.TASK"] == "B2N"
    old = identity(REPO / "configs/trainers/MMRL/vit_b16.yaml", "TRAINER.MMRL.SCALE", "0.6",
                   "TASK", "FS", trainer="MMRL")
    assert (old["TRAINER.MMRL.ALPHA"], old["TRAINER.MMRL.TASK"]) == (0.6, "FS")
    with pytest.raises(ConfigError, match="TASK must be B2N, FS or CD"):
        identity(official, "TASK", "XD")
