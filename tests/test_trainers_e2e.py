"""Every bundled trainer, base-to-novel end to end through its user scripts, on a generated
dataset with the tiny random CLIP on CPU; then ``parse_test_res.py --base2new`` summarises them.

The jobs of one phase run concurrently: each is dominated by interpreter start-up and imports.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_concurrently

# trainer -> (scripts folder, registered model name, extra options for the 2-layer tiny CLIP)
TRAINERS = {
    "CoCoOp": ("cocoop", "prompt_learner", []),
    "KgCoOp": ("kgcoop", "prompt_learner", []),
    "MaPLe": ("maple", "MultiModalPromptLearner", ["TRAINER.MAPLE.PROMPT_DEPTH", "2"]),
    "IVLP": ("ivlp", "VLPromptLearner", ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2",
                                         "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"]),
    "PromptSRC": ("promptsrc", "VLPromptLearner", [
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
        "TRAINER.PROMPTSRC.GPA_MEAN", "2"]),
    "VPT": ("vpt", "VLPromptLearner", ["TRAINER.VPT.PROMPT_DEPTH_VISION", "2"]),
}
FAST = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
        "DATALOADER.TEST.BATCH_SIZE", "50"]
EPOCHS = {"PromptSRC": "2"}  # two epochs for GPA to aggregate; one for the others



@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def test_every_trainer_base_to_novel_through_its_scripts(data_root, tiny_clip_path, tmp_path):
    env = {"DATA": str(data_root), "OUTPUT": str(tmp_path), "SHOTS": "2"}

    def jobs(phase: str) -> dict[str, list[str]]:
        return {t: ["bash", f"scripts/{folder}/{phase}.sh", "eurosat", "1",
                    "MODEL.BACKBONE.NAME", str(tiny_clip_path), *FAST,
                    "OPTIM.MAX_EPOCH", EPOCHS.get(t, "1"), *extra]
                for t, (folder, _, extra) in TRAINERS.items()}

    trained = run_concurrently(jobs("base2new_train"), env)
    tested = run_concurrently(jobs("base2new_test"), env)
    for trainer, (_, model_name, _) in TRAINERS.items():
        assert "Finish training" in trained[trainer] and "=> result" in tested[trainer], trainer
        assert f"Loading weights to {model_name} from" in tested[trainer], trainer
        assert "DATASET.SUBSAMPLE_CLASSES new" in tested[trainer]
    assert "Using GPA model for final inference..." in trained["PromptSRC"]
    checkpoint = next((tmp_path / "base2new" / "train_base").rglob("PromptSRC/**/model.pth.tar-2"))
    assert torch.load(checkpoint, weights_only=False)["gpa_epochs"] == 2

    summary = subprocess.run([sys.executable, "parse_test_res.py", str(tmp_path / "base2new"),
                              "--base2new", "--shots", "2"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    for trainer in TRAINERS:
        assert f"Base-to-novel: {trainer} /" in summary, summary
    assert summary.count("| eurosat") == len(TRAINERS)


def _protocol():
    sys.path.insert(0, str(REPO / "scripts"))
    import protocol

    return protocol


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_every_protocol_resolves_to_an_existing_config_and_script(trainer):
    protocol = _protocol()
    folder = TRAINERS[trainer][0]
    for phase in ("base2new_train", "base2new_test", "xd_train", "xd_test", "dg_test", "few_shot"):
        script = (REPO / "scripts" / folder / f"{phase}.sh").read_text()
        assert f"--trainer {trainer} {phase} " in script
    for protocol_name, shots in [("base2new", 16), ("xd", 16)] + [("few_shot", s) for s in
                                                                   protocol.FEW_SHOTS]:
        assert protocol.config_path(trainer, protocol.config_name(trainer, protocol_name, "dtd",
                                                                  shots)).is_file()


def test_promptsrc_few_shot_gpa_groups(monkeypatch):
    protocol = _protocol()
    monkeypatch.delenv("CFG", raising=False)

    def args(dataset: str) -> list[str]:
        ns = protocol.build_parser().parse_args(
            ["--trainer", "PromptSRC", "few_shot", dataset, "4", "1", "OPTIM.LR", "0.1"])
        return protocol.phase_jobs(ns)[0]

    group_b = args("dtd")
    assert group_b[-6:] == ["TRAINER.PROMPTSRC.GPA_MEAN", "45", "TRAINER.PROMPTSRC.GPA_STD", "5",
                            "OPTIM.LR", "0.1"]
    assert "TRAINER.PROMPTSRC.GPA_MEAN" not in args("caltech101")  # the config's (30, 30)
