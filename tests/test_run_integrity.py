"""Run integrity through the real CLI: crafted checkpoints never run, ``kill -9`` loses at most an
epoch and resumes bit-identically, a resumed run's result is seen, runs know who they are.

Faults are injected into real ``train.py`` subprocesses by ``tests/faults/sitecustomize.py``
(``FAULT=...``) and the processes are killed with a real ``SIGKILL``.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST_OPTS, REPO, run_cli

FAULTS = Path(__file__).resolve().parent / "faults"
DATASET = "eurosat"
SHIPPED_CFG = "vit_b16_ctxv1"  # CoOp base-to-novel config as shipped (saves the last epoch only)
EPOCHS = ["OPTIM.MAX_EPOCH", "4"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset(DATASET, root, num_classes=6, per_class=(8, 2, 3))
    return root


def script_env(data_root: Path, out: Path, **extra: str) -> dict[str, str]:
    return {"DATA": str(data_root), "OUTPUT": str(out), "SHOTS": "4", **extra}


def train_script(clip: Path, *opts: str) -> list[str]:
    return ["bash", "scripts/coop/base2new_train.sh", DATASET, "1", *FAST_OPTS, *EPOCHS,
            "MODEL.BACKBONE.NAME", str(clip), "TRAINER.COOP.CTX_INIT", "", *opts]


def train_dir(out: Path) -> Path:
    return out / "base2new" / "train_base" / DATASET / "shots_4" / "CoOp" / SHIPPED_CFG / "seed1"


def fault_env(fault: str, marker: Path) -> dict[str, str]:
    return {"FAULT": fault, "FAULT_MARKER": str(marker),
            "PYTHONPATH": os.pathsep.join([str(FAULTS), str(REPO)])}


def start_with_fault(cmd: list[str], env: dict[str, str], fault: str, marker: Path,
                     timeout: float = 180) -> subprocess.Popen:
    """Start ``cmd`` with ``FAULT=fault``; return once the process reached the fault point."""
    full = {**os.environ, **env, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1",
            **fault_env(fault, marker)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{cmd} ended ({proc.returncode}) before reaching {fault}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{cmd} did not reach {fault} in {timeout}s")
        time.sleep(0.1)
    return proc


def kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the script and its train.py child, as a node loss
    proc.wait()


def final_state(folder: Path) -> dict:
    return torch.load(folder / "prompt_learner" / "model.pth.tar-4", weights_only=True)


def assert_same_final(a: Path, b: Path) -> None:
    """Prompt weights, optimizer state and scheduler state bit-identical."""
    sa, sb = final_state(a), final_state(b)
    assert sa["state_dict"].keys() == sb["state_dict"].keys()
    assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])
    oa, ob = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert oa.keys() == ob.keys()
    for k in oa:
        assert all(torch.equal(oa[k][n], ob[k][n]) if torch.is_tensor(oa[k][n])
                   else oa[k][n] == ob[k][n] for n in oa[k])
    assert sa["scheduler"] == sb["scheduler"] and sa["epoch"] == sb["epoch"] == 4


@pytest.fixture(scope="module")
def reference(data_root, tiny_clip_path, tmp_path_factory) -> Path:
    """One uninterrupted run of the shipped config, to compare the interrupted ones against."""
    out = tmp_path_factory.mktemp("reference")
    run_cli(*train_script(tiny_clip_path), env=script_env(data_root, out))
    return train_dir(out)


def parsed(folder: Path) -> str:
    out = run_cli(sys.executable, "parse_test_res.py", str(folder.parent), "--test-log").stdout
    return out.replace(str(folder.parent), "<dir>")


# ------------------------------------------------------------------------- kill -9 and resume
@pytest.mark.parametrize("fault", ["pause_at_batch:3:2", "pause_in_write:2"])
def test_kill9_loses_at_most_one_epoch_and_resumes_bit_identically(
        fault, data_root, tiny_clip_path, reference, tmp_path):
    out, env = tmp_path / "out", script_env(data_root, tmp_path / "out")
    kill9(start_with_fault(train_script(tiny_clip_path), env, fault, tmp_path / "reached"))
    run = train_dir(out)
    pointer = (run / "prompt_learner" / "checkpoint").read_text().strip()
    assert pointer == "model-resume.pth.tar"  # a resume point exists although FREQ is 0
    if fault.startswith("pause_in_write"):  # killed with the next checkpoint half-written
        assert list((run / "prompt_learner").glob(".model-resume.pth.tar.*.tmp"))
    resumed = run_cli(*train_script(tiny_clip_path), env=env).stdout
    assert "Resuming the unfinished job" in resumed
    log = (run / "log.txt").read_text()
    assert "=> Run continued" in log and "epoch [1/4]" not in log.split("=> Run continued")[1]
    assert "epoch [1/4]" in log.split("=> Run continued")[0]  # the killed attempt is kept
    assert not list((run / "prompt_learner").glob(".*.tmp"))  # leftovers cleaned up
    assert sorted(p.name for p in (run / "prompt_learner").iterdir()) == [
        "checkpoint", "model.pth.tar-4"]  # bounded disk: the resume point is gone
    assert_same_final(reference, run)
    # The result is seen: the script skips the job, the parser reads the same result.
    assert "Oops! The results exist at" in run_cli(*train_script(tiny_clip_path), env=env).stdout
    assert parsed(run) == parsed(reference)


def test_a_crashed_final_test_is_retested_not_skipped(data_root, tiny_clip_path, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "crashed"
    env = {**script_env(data_root, out), **fault_env("crash_in_test", marker)}
    first = run_cli(*train_script(tiny_clip_path), env=env, check=False)
    assert first.returncode != 0 and marker.exists()
    assert "injected failure" in (train_dir(out) / "log.txt").read_text()
    assert json.loads((train_dir(out) / "run.json").read_text())["status"] == "failed"
    second = run_cli(*train_script(tiny_clip_path), env=env).stdout
    assert "Oops!" not in second and "Resuming the unfinished job" in second
    last = (train_dir(out) / "log.txt").read_text().split("=> Run continued")[-1]
    assert "epoch [" not in last and "* accuracy:" in last  # no retraining, only the test


# ------------------------------------------------------------------------------ run identity
def test_changed_option_refuses_naming_the_key(data_root, tiny_clip_path, reference):
    env = script_env(data_root, reference.parents[6])
    proc = run_cli(*train_script(tiny_clip_path, "OPTIM.LR", "0.05"), env=env, check=False)
    assert proc.returncode != 0 and "Oops!" not in proc.stdout
    assert "OPTIM.LR: 0.002 -> 0.05" in proc.stderr
    assert "--output-dir" in proc.stderr and "OVERWRITE=1" in proc.stderr


def test_overwrite_moves_the_earlier_run_aside(data_root, tiny_clip_path, tmp_path):
    out = tmp_path / "out"
    env = script_env(data_root, out)
    run_cli(*train_script(tiny_clip_path, "OPTIM.MAX_EPOCH", "1"), env=env)
    run_cli(*train_script(tiny_clip_path), env={**env, "OVERWRITE": "1"})
    kept = list((train_dir(out) / ".replaced").glob("*/log.txt"))
    assert len(kept) == 1 and "epoch [1/1]" in kept[0].read_text()
    assert "epoch [4/4]" in (train_dir(out) / "log.txt").read_text()


def train_cmd(data_root: Path, clip: Path, out: Path) -> list[str]:
    return [sys.executable, "train.py", "--root", str(data_root), "--seed", "1", "--trainer",
            "CoOp", "--dataset-config-file", f"configs/datasets/{DATASET}.yaml", "--config-file",
            f"configs/trainers/CoOp/{SHIPPED_CFG}.yaml", "--output-dir", str(out),
            *FAST_OPTS, *EPOCHS, "MODEL.BACKBONE.NAME", str(clip), "TRAINER.COOP.CTX_INIT", "",
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base"]


def test_second_run_into_a_busy_folder_refuses_then_takes_over_a_stale_lock(
        data_root, tiny_clip_path, reference, tmp_path):
    out = tmp_path / "run"
    cmd = train_cmd(data_root, tiny_clip_path, out)
    first = start_with_fault(cmd, {}, "pause_at_batch:2:1", tmp_path / "reached")
    second = run_cli(*cmd, check=False)
    assert second.returncode != 0
    assert f"in use by another run (pid {first.pid}" in second.stderr
    kill9(first)
    third = run_cli(*cmd).stdout
    assert "Taking over" in third and "no longer alive" in third
    assert_same_final(reference, out)


def test_trailing_num_shots_names_the_shots_folder(tmp_path, monkeypatch):
    from disakit.runkit import protocol

    monkeypatch.setenv("OUTPUT", str(tmp_path))
    ns = protocol.build_parser().parse_args(
        ["--trainer", "CoOp", "base2new_train", DATASET, "1", "DATASET.NUM_SHOTS", "1"])
    _, out_dir, _ = protocol.phase_jobs(ns)
    assert out_dir == tmp_path / "base2new/train_base/eurosat/shots_1/CoOp" / SHIPPED_CFG / "seed1"


def test_record_holds_the_resolved_config_and_fingerprint(reference):
    record = json.loads((reference / "run.json").read_text())
    assert record["status"] == "finished" and len(record["fingerprint"]) == 16
    assert record["identity"]["OPTIM.MAX_EPOCH"] == 4
    assert len(record["identity"]["run.backbone_sha256"]) == 64
    assert "OPTIM:" in (reference / "config.yaml").read_text()


# ------------------------------------------------------------------ checkpoints never run code
class _Payload:
    """Unpickling this creates the marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _craft(path: Path, marker: Path, legacy: bool) -> None:
    good = torch.load(path, weights_only=True)
    good["scheduler"] = {"payload": _Payload(str(marker))}
    torch.save(good, path, _use_new_zipfile_serialization=not legacy)


def _eval_cmd(data_root: Path, clip: Path, model_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "train.py", "--root", str(data_root), "--seed", "1", "--trainer",
            "CoOp", "--dataset-config-file", f"configs/datasets/{DATASET}.yaml",
            "--config-file", f"configs/trainers/CoOp/{SHIPPED_CFG}.yaml", "--output-dir",
            str(out), "--model-dir", str(model_dir), "--load-epoch", "4", "--eval-only",
            *FAST_OPTS, "MODEL.BACKBONE.NAME", str(clip), "TRAINER.COOP.CTX_INIT", "",
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "new"]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_crafted_checkpoint_for_evaluation_never_runs(
        legacy, data_root, tiny_clip_path, reference, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(reference, model_dir)
    ckpt = model_dir / "prompt_learner" / "model.pth.tar-4"
    marker = tmp_path / "PWNED"
    _craft(ckpt, marker, legacy)
    proc = run_cli(*_eval_cmd(data_root, tiny_clip_path, model_dir, tmp_path / "eval"),
                   check=False)
    assert proc.returncode != 0 and not marker.exists()
    assert str(ckpt) in proc.stderr and "io.open" in proc.stderr
    assert "DISA_TRUST_CHECKPOINTS=1" in proc.stderr and "Traceback" not in proc.stderr


def test_crafted_checkpoint_placed_for_auto_resume_never_runs(
        data_root, tiny_clip_path, tmp_path):
    out, env = tmp_path / "out", script_env(data_root, tmp_path / "out")
    kill9(start_with_fault(train_script(tiny_clip_path), env, "pause_at_batch:3:1",
                           tmp_path / "reached"))
    ckpt = train_dir(out) / "prompt_learner" / "model-resume.pth.tar"
    marker = tmp_path / "PWNED"
    _craft(ckpt, marker, legacy=False)
    proc = run_cli(*train_script(tiny_clip_path), env=env, check=False)
    assert proc.returncode != 0 and not marker.exists()
    assert "model-resume.pth.tar" in proc.stderr and "io.open" in proc.stderr


def _dassl_scheduler_state(ours: dict) -> dict:
    """Real Dassl's layout: the warm-up wrapper's fields with the successor *object* inside."""
    param = torch.nn.Parameter(torch.zeros(2))
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([param], lr=1.0), 4)
    successor.load_state_dict(ours["successor"])
    return {**ours["wrapper"], "successor": successor}


def test_dassl_written_checkpoint_with_pickled_scheduler_evaluates(
        data_root, tiny_clip_path, reference, tmp_path):
    model_dir = tmp_path / "dassl_run"
    shutil.copytree(reference, model_dir)
    path = model_dir / "prompt_learner" / "model.pth.tar-4"
    state = torch.load(path, weights_only=True)
    state["scheduler"] = _dassl_scheduler_state(state["scheduler"])
    torch.save(state, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # torch's own default refuses it
    proc = run_cli(*_eval_cmd(data_root, tiny_clip_path, model_dir, tmp_path / "eval"))
    assert "* accuracy:" in proc.stdout


def test_dassl_written_resume_point_with_pickled_scheduler_resumes(
        data_root, tiny_clip_path, reference, tmp_path):
    out, env = tmp_path / "out", script_env(data_root, tmp_path / "out")
    kill9(start_with_fault(train_script(tiny_clip_path), env, "pause_at_batch:3:1",
                           tmp_path / "reached"))
    path = train_dir(out) / "prompt_learner" / "model-resume.pth.tar"
    state = torch.load(path, weights_only=True)
    state["scheduler"] = _dassl_scheduler_state(state["scheduler"])
    torch.save(state, path)
    run_cli(*train_script(tiny_clip_path), env=env)
    assert_same_final(reference, train_dir(out))
