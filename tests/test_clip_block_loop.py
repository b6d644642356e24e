"""The towers' one block loop (disakit/clipkit/encoders.py): its side-stream slot, optional
gradient checkpointing (same loss and gradients as without, for deep prompts, DPL's decoupled
attention, MMRL's insertion and TCP's overwrite), and that no other module loops over the CLIP
blocks (prompts enter CLIP in one place)."""
from __future__ import annotations

import ast
import os
import re

import pytest
import torch
from conftest import REPO, toolkit_cfg

from disakit import trainers  # noqa: F401  (registers the trainers)
from disakit.clipkit import encoders
from disakit.clipkit.compat import clip
from disakit.clipkit.encoders import SideStream, TextTower, TokenInsertion, VisionTower
from disakit.clipkit.prompts import tokenize
from disakit.clipkit.random_clip import build_random_clip
from disakit.dassl_api import get_cfg_default
from disakit.trainers.base import build_standalone
from disakit.trainers.config import extend_cfg

CLASSNAMES = ["cat", "golden_retriever", "a very long class name with many words", "car"]
# Options that fit the 2-layer tiny CLIP (deep prompts / representation layers in both blocks).
TINY_OPTS = {
    "IVLP": ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2],
    "DiSa": ["TRAINER.DISA.PROMPT_DEPTH_TEXT", 2, "TRAINER.DISA.PROMPT_DEPTH_VISION", 2],
    "DPL": ["TRAINER.DPL.PROMPT_DEPTH_TEXT", 2, "TRAINER.DPL.PROMPT_DEPTH_VISION", 2,
            "TRAINER.DPL.GATE_INIT", 0.3],
    "MMRL": ["TRAINER.MMRL.REP_LAYERS", [1, 2]],
    "MMRLpp": ["TRAINER.MMRLPP.REP_LAYERS", [1, 2]],
    "TCP": ["TRAINER.TCP.CLASS_TOKEN_LAYER", 1],
}


LOOP_LINE = re.compile(r"^\s*for\s.+\sin\s.*\b(res)?blocks\b")


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


# ------------------------------------------------------------------------ side stream
def _recording_stream(tokens, calls):
    """A side stream that runs the stock block on the sequence, adds the sequence's mean to
    the side tokens, and records what the loop hands it."""
    def block_fn(layer, block, x, side, causal, eot, side_out):
        calls.append(("block", layer, causal, None if eot is None else eot.tolist(), side_out))
        return encoders.block_forward(block, x, causal), x.mean(1, keepdim=True) + side

    def update(side, layer):
        calls.append(("update", layer))
        return side * 0.5

    return SideStream(tokens, block_fn, update)


@torch.no_grad()
def test_side_stream_runs_each_block_and_updates_between_them(tiny):
    """The sequence is untouched by side tokens that nobody reads; the block function sees each
    layer, the text tower's causal flag and EOT (shifted by an insertion), and update runs
    between blocks only."""
    text = TextTower(tiny)
    tokens = tokenize(["a photo of a cat.", "a photo of a golden retriever."])
    eot = tokens.argmax(-1)
    calls: list = []
    side = torch.randn(3, text.width)
    plain = text.encode_tokens(tokens)
    ours = text.encode_embeddings(text.embed(tokens), eot,
                                  side_stream=_recording_stream(side, calls))
    assert torch.equal(ours, plain)
    eots = eot.tolist()
    assert calls == [("block", 0, True, eots, True), ("update", 1),
                     ("block", 1, True, eots, False)]
    calls.clear()
    insertion = TokenInsertion(1, [torch.randn(2, text.width)])
    text.encode_embeddings(text.embed(tokens), eot, insertion=insertion,
                           side_stream=_recording_stream(side, calls))
    assert [c[3] for c in calls if c[0] == "block"] == [eots, [e + 2 for e in eots]]
    vision = VisionTower(tiny)
    images = torch.randn(2, 3, 224, 224)
    calls.clear()
    out = vision(images, side_stream=_recording_stream(torch.randn(2, 3, vision.width), calls))
    assert torch.equal(out.features, vision(images).features)
    assert calls == [("block", 0, False, None, True), ("update", 1),
                     ("block", 1, False, None, False)]


def test_side_stream_shape_errors_name_the_tower(tiny):
    text = TextTower(tiny)
    tokens = tokenize(["a cat."])
    with pytest.raises(ValueError, match="text tower"):
        text.encode_embeddings(text.embed(tokens), tokens.argmax(-1),
                               side_stream=_recording_stream(torch.randn(3, 5), []))
    resnet = clip.model.CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1),
                             vision_width=8, vision_patch_size=None, context_length=77,
                             vocab_size=49408, transformer_width=64, transformer_heads=2,
                             transformer_layers=1)
    with pytest.raises(ValueError, match="ViT backbone"):
        VisionTower(resnet)(torch.randn(1, 3, 64, 64),
                            side_stream=_recording_stream(torch.randn(3, 5), []))


# ------------------------------------------------------------------------ checkpointing
def _trainer(tiny, name: str, checkpointing: bool):
    cfg = toolkit_cfg(name, "DATASET.NAME", "OxfordPets", *TINY_OPTS[name],
                      "MODEL.GRAD_CHECKPOINTING", checkpointing)
    torch.manual_seed(0)
    trainer = build_standalone(cfg, tiny, CLASSNAMES)
    if hasattr(trainer, "prototypes") and trainer.prototypes is None:  # DiSa's L_DiR
        trainer.prototypes = torch.nn.functional.normalize(
            torch.randn(4, tiny.visual.output_dim), dim=-1)
    return trainer


def _loss_and_grads(trainer):
    learner = trainer.model.prompt_learner
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move off the initialisation (zero B matrices, zero gates...)
        for p in learner.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    images = torch.randn(2, 3, 224, 224, generator=generator)
    trainer.set_model_mode("train")
    torch.manual_seed(2)  # DiSa's masking draws
    loss, _ = trainer.compute_loss(images, torch.tensor([0, 3]))
    learner.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in learner.named_parameters()}


@pytest.mark.parametrize("name", list(TINY_OPTS))
def test_grad_checkpointing_gives_the_same_loss_and_gradients(tiny, name, monkeypatch):
    """Deep prompts (IVLP, DiSa), decoupled attention (DPL), insertion (MMRL, MMRL++) and a
    one-layer overwrite (TCP): identical loss and gradients, with every block checkpointed."""
    loss, grads = _loss_and_grads(_trainer(tiny, name, False))
    steps = []

    def counting(fn, *args, **kwargs):
        steps.append(fn)
        return torch.utils.checkpoint.checkpoint(fn, *args, **kwargs)

    monkeypatch.setattr(encoders, "checkpoint", counting)
    trainer = _trainer(tiny, name, True)
    assert trainer.model.text.grad_checkpointing and trainer.model.vision.grad_checkpointing
    loss_ckpt, grads_ckpt = _loss_and_grads(trainer)
    assert len(steps) >= 2 and len(steps) % 2 == 0  # both blocks of every prompted pass
    assert torch.equal(loss, loss_ckpt)
    assert grads.keys() == grads_ckpt.keys()
    for key, grad in grads.items():
        assert grad is not None and torch.equal(grad, grads_ckpt[key]), key
    steps.clear()
    trainer.set_model_mode("eval")
    trainer.model_inference(torch.randn(2, 3, 224, 224))
    assert not steps  # no gradient recorded: nothing to save, plain blocks


def test_grad_checkpointing_is_off_by_default(tiny):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    assert cfg.MODEL.GRAD_CHECKPOINTING is False
    cfg.merge_from_list(["TRAINER.NAME", "CoOp"])
    model = build_standalone(cfg, tiny, CLASSNAMES).model
    assert not model.text.grad_checkpointing and not model.vision.grad_checkpointing


# ------------------------------------------------------------------------ one loop
def _package_sources():
    """Every Python file of the package, the linked trainers/ and datasets/ folders included."""
    for root in ("disakit", "trainers", "datasets"):
        for folder, dirs, files in os.walk(REPO / root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def _block_loops(path: str) -> list[int]:
    """Lines of ``for`` loops and comprehensions whose iterable names ``blocks`` or
    ``resblocks`` (``enumerate(self.blocks)``, ``zip(tower.blocks, ...)``, ``for b in
    visual.transformer.resblocks`` ...)."""
    source = open(path, encoding="utf-8").read()
    try:
        tree = ast.parse(source, path)
    except SyntaxError:  # a file mid-edit elsewhere: the same question, asked of the text
        return [number for number, line in enumerate(source.splitlines(), 1)
                if LOOP_LINE.search(line)]
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)):
            names = {n.attr if isinstance(n, ast.Attribute) else n.id
                     for n in ast.walk(node.iter) if isinstance(n, (ast.Attribute, ast.Name))}
            if names & {"blocks", "resblocks"}:
                lines.append(node.iter.lineno)
    return lines


def test_the_towers_block_loop_is_the_only_one():
    found = {os.path.relpath(path, REPO): lines for path in _package_sources()
             if (lines := _block_loops(path))}
    assert set(found) == {os.path.join("disakit", "clipkit", "encoders.py")}, found
    assert len(found[os.path.join("disakit", "clipkit", "encoders.py")]) == 1, found
    assert _block_loops(os.path.join(REPO, "tests", "test_clip_insertion.py"))  # it does detect
