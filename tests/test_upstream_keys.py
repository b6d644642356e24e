"""Upstream config spellings (trainers/upstream.py): KgCoOp's configs and command lines, which say
``TRAINER.COOP.CTX_INIT True`` and ``TRAINER.COOP.W 8.0``, run here and give the same run (same
config, same run fingerprint) as the same settings written in our ``TRAINER.KGCOOP`` keys."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import FAST_OPTS, REPO, run_cli

sys.path.insert(0, str(REPO))
import train  # noqa: E402
from disakit.runkit.record import fingerprint  # noqa: E402
from disakit.trainers.config import ConfigError  # noqa: E402

OURS_CFG = REPO / "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"
# KgCoOp's base2new_train.sh options (NCTX=4, CSC=False, WEIGHT=8.0, CTP=end).
UPSTREAM_OPTS = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8.0",
                 "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]


@pytest.fixture(scope="module")
def upstream_cfg(tmp_path_factory) -> Path:
    """KgCoOp's ``vit_b16_ep100_ctxv1.yaml`` as upstream writes it: our file's sections with
    upstream's ``TRAINER: COOP: CTX_INIT: True`` instead of our ``KGCOOP`` node."""
    text = OURS_CFG.read_text()
    path = tmp_path_factory.mktemp("upstream") / "vit_b16_ep100_ctxv1.yaml"
    path.write_text(text[:text.index("TRAINER:")] + "TRAINER:\n  COOP:\n    CTX_INIT: True\n")
    return path


def args(*argv: str):
    return train.build_parser().parse_args(["--trainer", "KgCoOp", *argv])


def identity(*argv: str) -> dict:
    parsed = args(*argv)
    return train.run_identity(train.setup_cfg(parsed), parsed)


def test_upstream_config_and_options_give_our_run(upstream_cfg, capsys):
    upstream = identity("--config-file", str(upstream_cfg), *UPSTREAM_OPTS)
    notes = capsys.readouterr().out
    ours = identity("--config-file", str(OURS_CFG))
    assert upstream == ours
    assert upstream["TRAINER.KGCOOP.CTX_INIT"] == "a photo of a"
    assert upstream["TRAINER.KGCOOP.W"] == 8.0 and upstream["TRAINER.COOP.CTX_INIT"] == ""
    assert ("upstream KgCoOp key TRAINER.COOP.CTX_INIT True -> TRAINER.KGCOOP.CTX_INIT "
            "'a photo of a'") in notes
    assert "TRAINER.COOP.W 8.0 -> TRAINER.KGCOOP.W 8.0" in notes
    assert "TRAINER.COOP.CLASS_TOKEN_POSITION 'end' ignored" in notes
    assert f"--config-file {upstream_cfg}: upstream KgCoOp key" in notes


def test_each_upstream_key(upstream_cfg):
    cfg = train.setup_cfg(args("TRAINER.COOP.CTX_INIT", "False", "TRAINER.COOP.N_CTX", "16",
                               "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.ALPHA", "1.0",
                               "LOSS.GM", "False"))
    assert (cfg.TRAINER.KGCOOP.CTX_INIT, cfg.TRAINER.KGCOOP.N_CTX) == ("", 16)  # random init
    assert cfg.TRAINER.KGCOOP.PREC == "fp32" and "LOSS" not in cfg
    assert train.setup_cfg(args("TRAINER.COOP.W", "1")).TRAINER.KGCOOP.W == 1.0
    with pytest.raises(ConfigError, match="CSC True .* no equivalent in KgCoOp"):
        train.setup_cfg(args("TRAINER.COOP.CSC", "True"))
    with pytest.raises(ConfigError, match="TRAINER.COOP.N_CTX must be an integer"):
        train.setup_cfg(args("TRAINER.COOP.N_CTX", "4.5"))
    # Other trainers keep TRAINER.COOP as CoOp's node: nothing is translated for them.
    coop = train.build_parser().parse_args(["--trainer", "CoOp", "TRAINER.COOP.W", "8.0"])
    with pytest.raises(ConfigError, match="unknown config key 'TRAINER.COOP.W'"):
        train.setup_cfg(coop)


def test_upstream_command_line_trains_here(upstream_cfg, tiny_clip_path, tmp_path):
    from disakit.datasets.synthetic import make_dataset

    make_dataset("eurosat", tmp_path / "data", num_classes=4, per_class=(2, 1, 2), image_size=32)
    common = ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "KgCoOp",
              "--dataset-config-file", "configs/datasets/eurosat.yaml", "--output-dir",
              str(tmp_path / "out"), "--backbone", str(tiny_clip_path)]
    tail = ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", *FAST_OPTS]
    out = run_cli(sys.executable, "train.py", *common, "--config-file", str(upstream_cfg),
                  *UPSTREAM_OPTS, *tail).stdout
    assert "Note: --config-file" in out and "-> TRAINER.KGCOOP.CTX_INIT 'a photo of a'" in out
    assert 'Initial context: "a photo of a"' in out and "=> result" in out
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["fingerprint"] == fingerprint(identity(
        *common, "--config-file", str(OURS_CFG), *tail))
