"""train.py config handling and the scripts' protocol driver (no training here)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

sys.path.insert(0, str(REPO / "scripts"))
import protocol  # noqa: E402

import train  # noqa: E402
from disakit.trainers.config import TRAINER_KEYS, ConfigError  # noqa: E402

COOP_CFG = "configs/trainers/CoOp/vit_b16_ctxv1.yaml"


def parse(*argv: str):
    return train.build_parser().parse_args(list(argv))


def test_seed_zero_is_honoured_and_default_keeps_config_seed():
    assert train.setup_cfg(parse("--seed", "0")).SEED == 0
    assert train.setup_cfg(parse()).SEED == -1
    assert train.setup_cfg(parse("--seed", "3")).SEED == 3


def test_merge_order_file_then_flags_then_opts():
    cfg = train.setup_cfg(parse("--config-file", COOP_CFG, "--trainer", "CoOp",
                                "--backbone", "RN50", "OPTIM.LR", "0.5"))
    assert cfg.OPTIM.MAX_EPOCH == 200 and cfg.OPTIM.LR == 0.5
    assert cfg.MODEL.BACKBONE.NAME == "RN50" and cfg.TRAINER.NAME == "CoOp"
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"


def test_every_trainer_node_is_declared():
    cfg = train.setup_cfg(parse())
    for node, keys in TRAINER_KEYS.items():
        assert dict(cfg.TRAINER[node]) == keys


def test_unknown_opt_key_names_key_and_closest():
    with pytest.raises(ConfigError) as err:
        train.setup_cfg(parse("TRAINER.COOP.N_CTXX", "4"))
    assert "TRAINER.COOP.N_CTXX" in str(err.value) and "TRAINER.COOP.N_CTX" in str(err.value)


def test_unknown_yaml_key_names_file_key_and_closest(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  MAX_EPOCHS: 5\n")
    with pytest.raises(ConfigError) as err:
        train.setup_cfg(parse("--config-file", str(bad)))
    text = str(err.value)
    assert "OPTIM.MAX_EPOCHS" in text and "OPTIM.MAX_EPOCH" in text and str(bad) in text


def test_type_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="KGCOOP.W"):
        train.setup_cfg(parse("TRAINER.KGCOOP.W", "8"))


def test_cli_reports_config_error_without_traceback():
    proc = run_cli(sys.executable, "train.py", "--trainer", "CoOp", "OPTIM.LRR", "0.1", check=False)
    assert proc.returncode != 0
    assert "Config error: unknown config key 'OPTIM.LRR'" in proc.stderr
    assert "OPTIM.LR" in proc.stderr and "Traceback" not in proc.stderr


def _jobs(*argv: str, env: dict, monkeypatch) -> tuple[list[str], Path, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return protocol.phase_jobs(protocol.build_parser().parse_args(list(argv)))


def test_protocol_layouts_follow_upstream(monkeypatch):
    env = {"DATA": "/d", "OUTPUT": "/o"}
    args, out, sig = _jobs("--trainer", "CoOp", "base2new_train", "oxford_pets", "1",
                           "OPTIM.MAX_EPOCH", "3", env=env, monkeypatch=monkeypatch)
    assert out == Path("/o/base2new/train_base/oxford_pets/shots_16/CoOp/vit_b16_ctxv1/seed1")
    assert args[-6:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base",
                         "OPTIM.MAX_EPOCH", "3"] and sig == "Finish training"
    args, out, sig = _jobs("--trainer", "CoOp", "base2new_test", "imagenet", "2",
                           env=env, monkeypatch=monkeypatch)
    assert out == Path("/o/base2new/test_new/imagenet/shots_16/CoOp/vit_b16_ep50_ctxv1/seed2")
    assert args[args.index("--load-epoch") + 1] == "50" and "--eval-only" in args
    assert sig == "=> result"
    _, out, _ = _jobs("--trainer", "CoOp", "xd_test", "dtd", "3", env=env, monkeypatch=monkeypatch)
    assert out == Path("/o/evaluation/CoOp/vit_b16_ep50_ctxv1_16shots/dtd/seed3")
    args, out, _ = _jobs("--trainer", "CoOp", "few_shot", "dtd", "2", "1", env=env,
                         monkeypatch=monkeypatch)
    assert out == Path("/o/dtd/CoOp/vit_b16_ep100_2shots/seed1")
    assert "--config-file" in args and args[args.index("--config-file") + 1].endswith(
        "CoOp/vit_b16_ep100.yaml")


def test_protocol_skips_only_jobs_finished_with_the_same_identity(tmp_path: Path, capsys,
                                                                   monkeypatch):
    from disakit.runkit import protocol as impl
    from disakit.runkit.state import JobState

    seen = []
    monkeypatch.setattr(impl, "job_status", lambda args, out, training: seen.append(training)
                        or JobState("done"))
    assert impl.run_train_py(["--bogus"], tmp_path, "Finish training") == 0
    assert "Oops! The results exist at" in capsys.readouterr().out and seen == [True]
    # An end signal alone no longer counts: the log holds no result block and no record.
    (tmp_path / "log.txt").write_text("x\nFinish training\n")
    assert impl.job_state(tmp_path, training=True).status == "interrupted"


def test_flags_after_options_get_a_clear_error():
    with pytest.raises(ConfigError, match="KEY VALUE pairs.*before the first KEY"):
        train.setup_cfg(parse("OPTIM.LR", "0.1", "--eval-only"))
