"""Run integrity through the real command lines: no silent wrong numbers, and clear errors
(naming the problem and the fix) instead of Python tracebacks.

Every check runs ``train.py``, ``parse_test_res.py`` or a script as a subprocess, as a user
would, with the generated tiny CLIP and generated datasets.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

COOP_CFG = "configs/trainers/CoOp/vit_b16_ctxv1.yaml"
EUROSAT_CFG = "configs/datasets/eurosat.yaml"
QUICK = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "50"]


def parse(*args) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "parse_test_res.py", *map(str, args), check=False)


def train_py(*args) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "train.py", *map(str, args), check=False)


def run_many(*commands: list) -> list[subprocess.CompletedProcess]:
    """Run commands at once (each is mostly interpreter start-up) and collect their results."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [(cmd, subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE))
             for cmd in commands]
    results = []
    for cmd, proc in procs:
        out, err = proc.communicate()
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def assert_clean_error(proc, *needles: str) -> None:
    """Non-zero exit, every needle on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in:\n{proc.stderr[-3000:]}"


# ---------------------------------------------------------------- logs for parse_test_res.py

RESULT = "=> result\n* total: 100\n* correct: {c}\n* accuracy: {a:.1f}%\n* error: {e:.1f}%\n"


def train_log(acc: float) -> str:
    return ("epoch [1/1] batch [1/1] loss 1.0 (1.0)\nFinish training\n"
            "Evaluate on the *test* set\n" + RESULT.format(c=int(acc), a=acc, e=100 - acc)
            + "Elapsed: 0:00:01\n")


def eval_log(acc: float) -> str:
    return "Evaluate on the *test* set\n" + RESULT.format(c=int(acc), a=acc, e=100 - acc)


CUT_LOG = "Finish training\nEvaluate on the *test* set\n=> result\n* total: 100\n"


def seed_dir(path: Path, log: str | bytes | None) -> Path:
    path.mkdir(parents=True)
    if isinstance(log, bytes):
        (path / "log.txt").write_bytes(log)
    elif log is not None:
        (path / "log.txt").write_text(log)
    return path


def test_parse_lists_every_unreadable_seed_and_needs_allow_partial(tmp_path):
    seed_dir(tmp_path / "seed1", train_log(80.0))
    seed_dir(tmp_path / "seed2", None)  # no log.txt
    seed_dir(tmp_path / "seed3", CUT_LOG)  # cut between '=> result' and the accuracy line
    seed_dir(tmp_path / "seed4", "epoch [1/5] batch [1/9] loss 1.0 (1.0)\n")  # unfinished
    proc = parse(tmp_path)
    assert proc.stdout == ""  # no mean over seed1 alone
    assert_clean_error(
        proc, f"3 of 4 expected seed runs in {tmp_path} could not be read",
        f"no log.txt in {tmp_path}/seed2",
        f"{tmp_path}/seed3/log.txt: log cut mid-result: the '=> result' block at line 3 has no "
        "'* accuracy: <v>%' line",
        f"{tmp_path}/seed4/log.txt: no 'Finish training' or 'Finished training' line",
        "Fix: finish or rerun those seeds", "pass --allow-partial to summarise the 1 readable")

    partial = parse(tmp_path, "--allow-partial")
    assert partial.returncode == 0, partial.stderr
    assert partial.stdout.splitlines()[-2] == "* accuracy: 80.00% +- 0.00%"
    assert (f"Warning: 3 of 4 expected seed runs in {tmp_path} could not be read; "
            "--allow-partial: summarising the other 1 seed run(s) only") in partial.stderr
    assert f"{tmp_path}/seed3/log.txt: log cut mid-result" in partial.stderr


def test_parse_cut_second_result_block_is_not_read_as_the_first(tmp_path):
    # --test-log takes the last block: a re-test cut mid-result must not fall back silently.
    seed_dir(tmp_path / "seed1", eval_log(70.0))
    seed_dir(tmp_path / "seed2", eval_log(60.0) + "=> result\n* total: 100\n")
    assert_clean_error(parse(tmp_path, "--test-log"),
                       f"{tmp_path}/seed2/log.txt: log cut mid-result: the '=> result' block "
                       "at line 7")


def test_parse_declared_seeds_count_missing_folders(tmp_path):
    for seed, acc in ((1, 80.0), (2, 82.0)):
        seed_dir(tmp_path / f"seed{seed}", train_log(acc))
    assert parse(tmp_path, "--seeds", 1, 2).returncode == 0
    assert_clean_error(parse(tmp_path, "--seeds", 1, 2, 3),
                       f"no folder {tmp_path}/seed3 for seed 3 of --seeds",
                       "--allow-partial")
    partial = parse(tmp_path, "--seeds", 1, 2, 3, "--allow-partial")
    assert partial.returncode == 0 and "* accuracy: 81.00% +- 1.00%" in partial.stdout
    assert "1 of 3 expected seed runs" in partial.stderr


def test_parse_multi_exp_refuses_a_partial_experiment(tmp_path):
    seed_dir(tmp_path / "exp-a" / "seed1", train_log(80.0))
    seed_dir(tmp_path / "exp-b" / "seed1", train_log(70.0))
    seed_dir(tmp_path / "exp-b" / "seed2", CUT_LOG)
    proc = parse(tmp_path, "--multi-exp")
    assert proc.stdout == ""
    assert_clean_error(proc, f"{tmp_path}/exp-b/seed2/log.txt: log cut mid-result")
    partial = parse(tmp_path, "--multi-exp", "--allow-partial")
    assert partial.returncode == 0 and partial.stdout.splitlines()[-1] == "* accuracy: 75.00%"


def test_parse_base2new_and_xd_summaries_refuse_partial_results(tmp_path):
    b2n = tmp_path / "base2new"
    exp = Path("dtd/shots_16/CoOp/cfg")
    for seed in (1, 2):
        seed_dir(b2n / "train_base" / exp / f"seed{seed}", train_log(80.0))
    seed_dir(b2n / "test_new" / exp / "seed1", eval_log(60.0))
    assert parse(b2n, "--base2new").returncode == 0  # seed 2 only in base: paired, with a Note
    assert_clean_error(parse(b2n, "--base2new", "--seeds", 1, 2),
                       f"no folder {b2n}/test_new/{exp}/seed2 for seed 2 of --seeds")
    seed_dir(b2n / "test_new" / exp / "seed2", CUT_LOG)
    assert_clean_error(parse(b2n, "--base2new"),
                       f"{b2n}/test_new/{exp}/seed2/log.txt: log cut mid-result")
    assert parse(b2n, "--base2new", "--trainer", "KgCoOp").stderr.count("cut mid-result") == 0

    xd = tmp_path / "evaluation" / "CoOp" / "cfg_16shots"
    seed_dir(xd / "dtd" / "seed1", eval_log(45.0))
    seed_dir(xd / "dtd" / "seed2", "Evaluate on the *test* set\n")
    assert_clean_error(parse(tmp_path / "evaluation", "--xd"),
                       f"{xd}/dtd/seed2/log.txt: no '=> result' line")
    partial = parse(tmp_path / "evaluation", "--xd", "--allow-partial")
    assert partial.returncode == 0 and "| dtd" in partial.stdout


def test_parse_unreadable_log_file_is_named(tmp_path):
    (seed_dir(tmp_path / "seed1", None) / "log.txt").mkdir()  # a folder named log.txt
    seed_dir(tmp_path / "seed2", b"Finish training\n=> result\n* accuracy: 9\xff\xfe%\n")
    proc = parse(tmp_path)
    assert_clean_error(proc, f"Nothing found in {tmp_path}",
                       f"{tmp_path}/seed1/log.txt: cannot read it: Is a directory",
                       f"{tmp_path}/seed2/log.txt: cannot read it: not UTF-8 text",
                       "rerun this seed")


# ---------------------------------------------------------------- train.py: data and logs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """EuroSAT layout, 6 classes x (6 train, 2 val, 3 test), with the split JSON."""
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=6, per_class=(6, 2, 3))
    return root


@pytest.fixture(scope="module")
def uneven_root(data_root, tmp_path_factory) -> Path:
    """The same data with fewer training images in the split for classes 0, 1 (4) and 2 (3)."""
    root = tmp_path_factory.mktemp("uneven")
    shutil.copytree(data_root / "eurosat", root / "eurosat")
    path = root / "eurosat" / "split_zhou_EuroSAT.json"
    split = json.loads(path.read_text())
    drop = {0: 2, 1: 2, 2: 3}
    kept = []
    for entry in split["train"]:
        if drop.get(entry[1], 0) > 0:
            drop[entry[1]] -= 1
        else:
            kept.append(entry)
    split["train"] = kept
    path.write_text(json.dumps(split))
    return root


def run_args(root: Path, out: Path, clip: Path, trainer: str = "CoOp") -> list:
    return ["--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file",
            EUROSAT_CFG, "--config-file", COOP_CFG, "--output-dir", out, "--backbone", clip]


@pytest.fixture(scope="module")
def untrained_eval(uneven_root, tiny_clip_path, tmp_path_factory) -> str:
    """log.txt of ``--eval-only`` CoOp without --model-dir, NUM_SHOTS 5 on uneven classes."""
    out = tmp_path_factory.mktemp("eval") / "seed1"
    proc = train_py(*run_args(uneven_root, out, tiny_clip_path), "--eval-only", *QUICK,
                    "DATASET.NUM_SHOTS", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (out / "log.txt").read_text()


def test_num_shots_above_a_class_size_is_reported_per_group(untrained_eval):
    lines = untrained_eval.splitlines()
    warnings = [line for line in lines if "(< NUM_SHOTS 5)" in line]
    assert warnings == [
        "Warning: 1 class has only 3 training images (< NUM_SHOTS 5): all their images are used",
        "Warning: 2 classes have only 4 training images (< NUM_SHOTS 5): all their images are used",
    ]
    assert "* total: 18" in untrained_eval  # sampling and data unchanged otherwise


def test_eval_only_without_model_dir_warns_next_to_the_result(untrained_eval):
    lines = untrained_eval.splitlines()
    warning = next(i for i, line in enumerate(lines) if "UNTRAINED (initial) prompts" in line)
    assert "no --model-dir was given to --eval-only" in lines[warning]
    assert "pass --model-dir" in lines[warning]
    assert lines[warning + 1] == "Evaluate on the *test* set"
    assert lines.index("=> result") - warning <= 3


def test_generated_split_and_whole_training_set_are_announced(tiny_clip_path, tmp_path):
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path / "data"
    make_dataset("eurosat", root, num_classes=4, per_class=(4, 2, 2), with_split_json=False)
    split = root / "eurosat" / "split_zhou_EuroSAT.json"
    args = run_args(root, tmp_path / "zs", tiny_clip_path, trainer="ZeroshotCLIP")
    assert train_py(*args, "--eval-only", *QUICK).returncode == 0
    log = (tmp_path / "zs" / "log.txt").read_text()
    assert (f"Warning: the official split file split_zhou_EuroSAT.json was not found, so a random "
            f"split was generated and saved to {split}; results are NOT comparable with "
            "published numbers") in log
    assert "NUM_SHOTS is -1 (< 1): the whole training set is used (16 images)" in log
    # A later run reads the saved file: it must still say the split is not the official one.
    args = run_args(root, tmp_path / "zs2", tiny_clip_path, trainer="ZeroshotCLIP")
    assert train_py(*args, "--eval-only", *QUICK).returncode == 0
    assert (f"Warning: {split} is a generated random split" in
            (tmp_path / "zs2" / "log.txt").read_text())


# ---------------------------------------------------------------- train.py: clear errors


@pytest.mark.parametrize("flag", ["--config-file", "--dataset-config-file"])
def test_missing_and_malformed_config_yaml(tmp_path, flag):
    missing, bad = tmp_path / "nope.yaml", tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: [0.1\n  MAX_EPOCH: 5\n")
    gone, broken = run_many([sys.executable, "train.py", flag, missing],
                            [sys.executable, "train.py", flag, bad])
    assert_clean_error(gone, f"Config error: {flag} {missing}: the file does not exist. Fix: "
                       "check the path")
    assert_clean_error(broken, f"Config error: {flag} {bad}: malformed YAML at line 3, column 12",
                       "Fix: correct that line")


def test_malformed_split_json_names_the_file(data_root, tiny_clip_path, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root / "eurosat", root / "eurosat")
    split = root / "eurosat" / "split_zhou_EuroSAT.json"
    split.write_text('{"train": [["AnnualCrop/AnnualCrop_1.jpg", 0,')
    assert_clean_error(train_py(*run_args(root, tmp_path / "o", tiny_clip_path), *QUICK),
                       f"Dataset error: split file {split} is not valid JSON (line 1",
                       "Fix: download the official split file again")


def test_unusable_output_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    outs = (blocker / "out", blocker)
    procs = run_many(*([sys.executable, "train.py", "--trainer", "CoOp", "--output-dir", out]
                       for out in outs))
    for out, proc in zip(outs, procs):
        assert_clean_error(proc, f"cannot write the output directory {out}",
                           f"{blocker} is a file, not a folder", "Fix: pass a writable folder")


def test_learning_rate_must_be_positive_and_finite():
    values = ("-1", "nan", "0.0")  # an int and a string (yacs type errors), a float
    procs = run_many(*([sys.executable, "train.py", "--trainer", "CoOp", "OPTIM.LR", value]
                       for value in values))
    for value, proc in zip(values, procs):
        assert_clean_error(proc, f"OPTIM.LR must be a positive, finite number, got {value}",
                           "Fix: set it, e.g. `OPTIM.LR 0.002`")


def test_prompt_depth_beyond_the_backbone_names_keys_and_layers(data_root, tiny_clip_path,
                                                                 tmp_path):
    proc = train_py(*run_args(data_root, tmp_path / "o", tiny_clip_path, trainer="MaPLe"),
                    *QUICK, "TRAINER.MAPLE.PROMPT_DEPTH", "9")
    assert_clean_error(proc, "TRAINER.MAPLE.PROMPT_DEPTH 9 must be between 1",
                       f"backbone {tiny_clip_path} has 2 text, 2 vision transformer layers",
                       "append `TRAINER.MAPLE.PROMPT_DEPTH 2`")


# ---------------------------------------------------------------- scripts


def test_make_random_clip_into_an_unwritable_place(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = ((blocker / "clip.pt", f"{blocker} is a file, not a folder"),
             (tmp_path, "Is a directory"))
    procs = run_many(*([sys.executable, "scripts/make_random_clip.py", "--arch", "tiny",
                        "--out", out] for out, _ in cases))
    for (out, why), proc in zip(cases, procs):
        assert_clean_error(proc, f"make_random_clip.py: error: cannot write {out}: {why}",
                           "Fix: pass --out a file path in a writable folder")


def test_quickstart_shows_the_failing_step_and_its_error(tmp_path):
    from disakit.datasets.synthetic import make_dataset

    # A stand-in for .venv (scripts/setup_env.sh's VENV): this interpreter, marked installed
    # with the stamp setup_env.sh computes, so nothing is installed.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    stamp = hashlib.sha1((REPO / "requirements.txt").read_bytes()
                         + (REPO / "setup.py").read_bytes()).hexdigest()[:12]
    (venv / f".installed-{stamp}").touch()
    demo = tmp_path / "demo"
    make_dataset("eurosat", demo / "data", num_classes=2, per_class=(2, 1, 1))
    (demo / "tiny-clip.pt").write_text("not a checkpoint")  # makes the first training fail

    proc = run_cli("bash", "scripts/quickstart.sh", check=False,
                   env={"VENV": str(venv), "DEMO_DIR": str(demo), "SEEDS": "1"})
    assert proc.returncode != 0
    assert "quickstart: step 'disa seed 1 base2new_train' failed. Command:" in proc.stderr
    assert "scripts/disa/base2new_train.sh eurosat 1" in proc.stderr
    assert f"Cannot read CLIP weights from {demo / 'tiny-clip.pt'}" in proc.stderr
    assert "== coop" not in proc.stdout  # it stopped at the failing step
