"""TCP (docs/methods/tcp.md) on a tiny random CLIP, built without a dataset (build_standalone):
its text path against stock CLIP, equality with KgCoOp / CoOp when the class-aware tokens are
off, what trains, the published parameter count, the loss against its formula, Adam's eps, the
checkpoint, and the per-dataset templates (table vs config file vs command line). The scripts
and the reproduce driver run end to end in test_trainers_tcp_e2e.py."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, toolkit_cfg

from disakit.clipkit.prompts import tokenize
from disakit.clipkit.random_clip import build_random_clip
from disakit.clipkit.templates import TCP_KNOWLEDGE_TEMPLATES, TCP_TEMPLATES
from disakit.dassl_api import build_optimizer
from disakit.runkit import protocol
from disakit.trainers.base import build_standalone
from disakit.trainers.config import ConfigError
from disakit.trainers.tcp import tcp_templates

CLASSNAMES = ["cat", "golden_retriever", "a very long class name with many words", "car"]
TINY = ["TRAINER.TCP.CLASS_TOKEN_LAYER", 1]  # the tiny CLIP has 2 text layers
CONFIG = REPO / "configs" / "trainers" / "TCP" / "vit_b16_ep100_ctxv1.yaml"


make_cfg = toolkit_cfg


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


def tcp(clip_model, *opts, classnames=CLASSNAMES):
    torch.manual_seed(0)
    return build_standalone(make_cfg("TCP", *TINY, *opts), clip_model, classnames)


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- the model against stock CLIP
@torch.no_grad()
def test_text_features_equal_a_stock_clip_reference(tiny):
    """Knowledge from ``encode_text``, tokens from the meta-net, the context in the template,
    and the tokens written over positions 1..4 before stock block 1 by a forward pre-hook."""
    trainer = tcp(tiny, "TRAINER.TCP.TEMPLATE", "X X X X {}, a type of pet.",
                  "TRAINER.TCP.KNOWLEDGE_TEMPLATE", "a photo of a {}, a type of pet.")
    learner = trainer.model.prompt_learner
    with torch.no_grad():
        learner.ctx.normal_(0, 0.5)
    names = [c.replace("_", " ") for c in CLASSNAMES]
    knowledge = F.normalize(tiny.encode_text(
        tokenize([f"a photo of a {c}, a type of pet." for c in names])), dim=-1)
    tokens = learner.meta_net(knowledge).view(len(names), 4, 64)
    ids = tokenize([f"X X X X {c}, a type of pet." for c in names])
    embeds = tiny.token_embedding(ids)
    embeds[:, 1:5] = learner.ctx
    hook = tiny.transformer.resblocks[1].register_forward_pre_hook(
        lambda m, a: (torch.cat([a[0][:1], tokens.permute(1, 0, 2), a[0][5:]]),))
    try:
        x = tiny.transformer((embeds + tiny.positional_embedding).permute(1, 0, 2))
    finally:
        hook.remove()
    x = tiny.ln_final(x.permute(1, 0, 2))[torch.arange(len(names)), ids.argmax(-1)]
    expected = F.normalize(x @ tiny.text_projection, dim=-1)
    assert (trainer.model.text_features() - expected).abs().max() <= 1e-5
    assert (trainer.model.knowledge_features() - knowledge).abs().max() <= 1e-5


@torch.no_grad()
def test_without_class_tokens_tcp_is_kgcoop_and_coop(tiny):
    """N_CLASS_TOKENS 0 with the "X X X X {}." template: KgCoOp's (random 4-token) model and
    loss, and CoOp's logits, for the same context."""
    trainer = tcp(tiny, "TRAINER.TCP.N_CLASS_TOKENS", 0, "TRAINER.TCP.TEMPLATE", "X X X X {}.")
    assert trainer.model.prompt_learner.meta_net is None
    ctx = trainer.model.prompt_learner.ctx
    kg = build_standalone(make_cfg("KgCoOp", "TRAINER.KGCOOP.CTX_INIT", ""), tiny, CLASSNAMES)
    coop = build_standalone(make_cfg("CoOp", "TRAINER.COOP.N_CTX", 4), tiny, CLASSNAMES)
    for other in (kg, coop):
        other.model.prompt_learner.ctx.copy_(ctx)
    batch, labels = images(), torch.tensor([0, 3, 1])
    logits = trainer.model(batch)
    assert (logits - kg.model(batch)).abs().max() <= 1e-4
    assert (logits - coop.model(batch)).abs().max() <= 1e-4
    loss, _ = trainer.compute_loss(batch, labels)
    assert math.isclose(loss.item(), kg.compute_loss(batch, labels)[0].item(), rel_tol=1e-5)


def test_parameter_count_at_vit_b16():
    clip_model = build_random_clip("ViT-B/16")
    learner = build_standalone(make_cfg("TCP", config=CONFIG), clip_model,
                               ["cat"]).model.prompt_learner
    shapes = {n: tuple(p.shape) for n, p in learner.named_parameters()}
    assert shapes == {"ctx": (4, 512), "meta_net.linear1.weight": (128, 512),
                      "meta_net.linear1.bias": (128,), "meta_net.linear2.weight": (2048, 128),
                      "meta_net.linear2.bias": (2048,)}  # the official checkpoint's keys
    assert sum(p.numel() for p in learner.parameters()) == 331_904


# ---------------------------------------------------------------- training
def test_only_the_context_and_the_meta_net_train(tiny):
    frozen = {k: v.clone() for k, v in tiny.state_dict().items()}
    for n_tokens, learned in ((4, {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                                   "meta_net.linear2.weight", "meta_net.linear2.bias"}),
                              (0, {"ctx"})):
        trainer = tcp(tiny, "TRAINER.TCP.N_CLASS_TOKENS", n_tokens, "OPTIM.NAME", "adam")
        learner = trainer.model.prompt_learner
        before = {k: v.clone() for k, v in learner.state_dict().items()}
        trainer.num_batches = 10  # mid-epoch steps
        batch = {"img": images(2), "label": torch.tensor([0, 2])}
        for _ in range(2):
            summary = trainer.forward_backward(batch)
        assert set(summary) == {"loss", "acc"}
        with_grad = {n for n, p in trainer.model.named_parameters() if p.grad is not None}
        assert with_grad == {f"prompt_learner.{k}" for k in learned}
        assert all(not torch.equal(before[k], v) for k, v in learner.state_dict().items())
        assert all(torch.equal(frozen[k], v) for k, v in tiny.state_dict().items())


def test_loss_equals_its_formula_on_hand_built_tensors(tiny, monkeypatch):
    trainer = tcp(tiny, "TRAINER.TCP.W", 3.0)
    model = trainer.model
    text = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), dim=-1)
    image = F.normalize(torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    knowledge = F.normalize(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    monkeypatch.setattr(model, "text_features", lambda: text)
    monkeypatch.setattr(model, "image_features", lambda images: image)
    monkeypatch.setattr(model, "knowledge_features", lambda: knowledge)
    labels = torch.tensor([1, 0])
    ce = 0.0
    for b, y in enumerate(labels.tolist()):
        logits = [100.0 * sum(i * t for i, t in zip(image[b].tolist(), text[c].tolist()))
                  for c in range(2)]
        ce += math.log(sum(math.exp(v) for v in logits)) - logits[y]
    cos = [1 / math.sqrt(2), 1 / math.sqrt(2)]  # (1,0,0)·(1,1,0)/√2, (0,1,1)/√2·(0,1,0)
    expected = ce / 2 + 3.0 * (1 - sum(cos) / 2)
    loss, summary = trainer.compute_loss(None, labels)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    assert math.isclose(summary["loss"], expected, rel_tol=1e-5)


def test_adam_eps_is_the_trainers_key_and_shared_defaults_stay(tiny):
    assert tcp(tiny, "OPTIM.NAME", "adam").optim.param_groups[0]["eps"] == 1e-3
    assert tcp(tiny, "OPTIM.NAME", "adam", "TRAINER.TCP.ADAM_EPS", 1e-6
               ).optim.param_groups[0]["eps"] == 1e-6
    assert "eps" not in tcp(tiny, "OPTIM.NAME", "sgd").optim.param_groups[0]
    cfg = make_cfg("KgCoOp", "OPTIM.NAME", "adam")
    assert build_optimizer(torch.nn.Linear(2, 2), cfg.OPTIM).param_groups[0]["eps"] == 1e-8
    assert build_standalone(cfg, tiny, CLASSNAMES).optim.param_groups[0]["eps"] == 1e-8
    with pytest.raises(ConfigError, match="TRAINER.TCP.ADAM_EPS"):
        tcp(tiny, "TRAINER.TCP.ADAM_EPS", 0.0)


def test_checkpoint_holds_only_learned_tensors_and_serves_new_classes(tiny, tmp_path: Path):
    trainer = tcp(tiny)
    trainer.save_model(0, str(tmp_path))
    path = tmp_path / "prompt_learner" / "model.pth.tar-1"
    saved = torch.load(path, weights_only=False)
    assert set(saved["state_dict"]) == {k for k, _ in
                                        trainer.model.prompt_learner.named_parameters()}
    # an upstream-style file (with the class-dependent buffers) loads too
    saved["state_dict"]["token_prefix"] = torch.zeros(4, 1, 64)
    saved["state_dict"]["token_suffix"] = torch.zeros(4, 70, 64)
    torch.save(saved, path)
    new = tcp(tiny, classnames=["dog", "bird"])
    new.load_model(str(tmp_path), epoch=1)
    learner = new.model.prompt_learner
    for key, value in learner.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key])
    with torch.no_grad():  # the new classes' tokens come from their own frozen features
        knowledge = F.normalize(tiny.encode_text(tokenize(["a photo of a dog.",
                                                            "a photo of a bird."])), dim=-1)
        tokens = new.model.token_overwrite().tokens
        assert torch.allclose(tokens, learner.meta_net(knowledge).view(2, 4, 64), atol=1e-5)


# ---------------------------------------------------------------- templates and their precedence
def test_context_replaces_the_first_template_tokens_whatever_they_are(tiny):
    """UCF101 / ImageNet: "a photo of a" is overwritten by the 4 context vectors (as upstream)."""
    trainer = tcp(tiny, "TRAINER.TCP.TEMPLATE", "a photo of a person doing {}.")
    learner = trainer.model.prompt_learner
    embeds, eot = learner()
    ids = tokenize([f"a photo of a person doing {c.replace('_', ' ')}." for c in CLASSNAMES])
    reference = trainer.model.text.embed(ids)[:, : embeds.shape[1]]
    assert torch.equal(eot, ids.argmax(-1))
    assert torch.equal(embeds[:, 1:5], learner.ctx.expand(4, -1, -1))
    assert torch.equal(embeds[:, 5:], reference[:, 5:]) and torch.equal(embeds[:, 0],
                                                                        reference[:, 0])


def test_bad_templates_and_layers_fail_naming_the_key(tiny):
    with pytest.raises(ConfigError, match="TRAINER.TCP.TEMPLATE"):
        tcp(tiny, "TRAINER.TCP.N_CTX", 6)  # "X X X X {}.": the context would cover the name
    with pytest.raises(ConfigError, match="TRAINER.TCP.TEMPLATE"):
        tcp(tiny, "TRAINER.TCP.TEMPLATE", "X X X X")
    with pytest.raises(ConfigError, match=r"CLASS_TOKEN_LAYER 8 does not exist.* 2 text layers"):
        build_standalone(make_cfg("TCP"), tiny, CLASSNAMES)


def test_trainer_table_falls_back_per_dataset_and_a_given_template_wins():
    assert tcp_templates("OxfordPets") == ("X X X X {}, a type of pet.",
                                           "a photo of a {}, a type of pet.")
    assert tcp_templates("FGVCAircraft")[1] == "a photo of an aircraft {}."
    assert tcp_templates("StanfordCars")[0] == "X X X X {}, a type of car"  # no period upstream
    assert tcp_templates("MyData") == ("X X X X {}.", "a photo of a {}.")
    assert tcp_templates("OxfordPets", "Y Y Y Y {}.", "a {}.") == ("Y Y Y Y {}.", "a {}.")


def test_the_scripts_table_equals_the_trainers_table():
    names = {path.stem: yaml.safe_load(path.read_text())["DATASET"]["NAME"]
             for path in (REPO / "configs" / "datasets").glob("*.yaml")}
    covered = {stem for stem, name in names.items() if name in TCP_TEMPLATES}
    assert covered == set(protocol.TCP_PER_DATASET) and len(covered) == len(TCP_TEMPLATES) == 15
    for stem in covered:
        name = names[stem]
        assert protocol.TCP_PER_DATASET[stem] == [
            "TRAINER.TCP.TEMPLATE", TCP_TEMPLATES[name],
            "TRAINER.TCP.KNOWLEDGE_TEMPLATE", TCP_KNOWLEDGE_TEMPLATES[name]], name


def _resolved(tmp_path: Path, config: Path, *cli: str):
    """The config train.py resolves for ``base2new_train.sh oxford_pets 1 [cli]``."""
    import train

    ns = protocol.build_parser().parse_args(["--trainer", "TCP", "base2new_train",
                                             "oxford_pets", "1", *cli])
    args, _, _ = protocol.phase_jobs(ns, {"OUTPUT": str(tmp_path), "DATA": str(tmp_path)})
    args[args.index("--config-file") + 1] = str(config)
    return train.setup_cfg(train.build_parser().parse_args(args)).TRAINER.TCP


def test_table_beats_the_config_file_and_the_command_line_beats_the_table(tmp_path: Path):
    config = tmp_path / "tcp.yaml"
    data = yaml.safe_load(CONFIG.read_text())
    data["TRAINER"]["TCP"]["TEMPLATE"] = "Z Z Z Z {}."
    config.write_text(yaml.safe_dump(data))
    node = _resolved(tmp_path, config)
    assert (node.TEMPLATE, node.KNOWLEDGE_TEMPLATE) == ("X X X X {}, a type of pet.",
                                                       "a photo of a {}, a type of pet.")
    node = _resolved(tmp_path, config, "TRAINER.TCP.TEMPLATE", "Y Y Y Y {}.")
    assert (node.TEMPLATE, node.KNOWLEDGE_TEMPLATE) == ("Y Y Y Y {}.",
                                                       "a photo of a {}, a type of pet.")


def test_configs_per_protocol():
    name = protocol.config_name
    assert name("TCP", "base2new", "oxford_pets") == "vit_b16_ep100_ctxv1"
    assert {name("TCP", "base2new", d) for d in ("imagenet", "sun397")} == {"vit_b16_ep25_ctxv1"}
    assert name("TCP", "few_shot", "sun397", 4) == "vit_b16_ep25_ctxv1"
    assert name("TCP", "few_shot", "dtd", 4) == "vit_b16_ep100_ctxv1"
    assert name("TCP", "xd") == "vit_b16_ep25_ctxv1"
    assert name("CoOp", "base2new", "imagenet") == "vit_b16_ep50_ctxv1"  # unchanged
    epochs = {f: yaml.safe_load((CONFIG.parent / f"{f}.yaml").read_text())["OPTIM"]["MAX_EPOCH"]
              for f in ("vit_b16_ep100_ctxv1", "vit_b16_ep25_ctxv1")}
    assert epochs == {"vit_b16_ep100_ctxv1": 50, "vit_b16_ep25_ctxv1": 25}
