"""The paper-table driver end to end: ``scripts/reproduce.py`` on generated datasets with the tiny
CLIP, through the local backend and a real SLURM cluster, killed jobs, the report's numbers
against ``parse_test_res.py``, and the full matrices' job lists."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST_OPTS, REPO, run_cli
from slurm_fixture import slurm_cluster  # noqa: F401  (fixture)

FAULTS = Path(__file__).resolve().parent / "faults"
METHODS = ["CoOp", "KgCoOp"]
DATASETS = ["eurosat", "dtd"]
SEEDS = ["1", "2"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    for name in DATASETS:
        make_dataset(name, root, num_classes=4, per_class=(4, 1, 2))
    return root


def matrix_cmd(clip: Path, *extra: str, methods: list[str] = METHODS,
               datasets: list[str] = DATASETS) -> list[str]:
    return [sys.executable, "scripts/reproduce.py", *extra, "--methods", *methods,
            "--settings", "base2new", "--datasets", *datasets, "--seeds", *SEEDS,
            *FAST_OPTS, "OPTIM.MAX_EPOCH", "1", "MODEL.BACKBONE.NAME", str(clip)]


def env_for(data_root: Path, out: Path) -> dict[str, str]:
    return {"DATA": str(data_root), "OUTPUT": str(out), "SHOTS": "2"}


def report_cells(out: Path) -> list[dict[str, str]]:
    with open(out / "report" / "base2new.csv") as f:
        return list(csv.DictReader(f))


def parse_means(out: Path) -> dict[tuple[str, str, str], str]:
    """(method, dataset, base|new) -> the mean parse_test_res.py prints for that folder."""
    found = {}
    for phase, which in (("train_base", "base"), ("test_new", "new")):
        for method in METHODS:
            for dataset in DATASETS:
                cfg_dirs = list((out / "base2new" / phase / dataset / "shots_2" / method).iterdir())
                args = [sys.executable, "parse_test_res.py", str(cfg_dirs[0])]
                if phase == "test_new":
                    args.append("--test-log")
                text = run_cli(*args).stdout
                mean = [line for line in text.splitlines() if line.startswith("* accuracy:")][0]
                found[(method, dataset, which)] = mean.split(":")[1].split("%")[0].strip()
    return found


@pytest.fixture(scope="module")
def local_run(data_root, tiny_clip_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    proc = run_cli(*matrix_cmd(tiny_clip_path, "--backend", "local", "--workers", "2"),
                   env=env_for(data_root, out))
    assert "16 jobs: 0 done, 0 running elsewhere, 16 to run (local backend)" in proc.stdout
    assert "[reproduce] 16/16 done" in proc.stdout
    return out


def _numbers(cells: list[dict[str, str]]) -> list[tuple]:
    return sorted((c.get("method"), c.get("dataset"), c.get("metric"), c.get("mean"))
                  for c in cells)


def test_local_matrix_report_matches_parse_test_res(local_run):
    cells = report_cells(local_run)
    means = parse_means(local_run)
    for (method, dataset, which), mean in means.items():
        row = [c for c in cells if c["method"] == method and c["dataset"] == dataset
               and c["metric"] == which]
        assert row and float(row[0]["mean"]) == pytest.approx(float(mean), abs=0.006), (method,
                                                                                       dataset)
    report = local_run / "report"
    assert (report / "base2new.md").is_file() and (report / "base2new.tex").is_file()
    assert list(report.glob("*.png"))
    assert "\\begin{tabular}" in (report / "base2new.tex").read_text()
    for method in METHODS:
        assert method in (report / "base2new.md").read_text()


def test_rerun_skips_everything_finished(local_run, data_root, tiny_clip_path):
    proc = run_cli(*matrix_cmd(tiny_clip_path, "status"), env=env_for(data_root, local_run))
    assert "16 jobs: 16 done" in proc.stdout
    again = run_cli(*matrix_cmd(tiny_clip_path), env=env_for(data_root, local_run))
    assert "16 done, 0 running elsewhere, 0 to run" in again.stdout


def test_killed_local_job_rerun_completes_only_what_is_missing(
        local_run, data_root, tiny_clip_path, tmp_path):
    """One method on one dataset, two seeds: 4 jobs (the SLURM test below runs the full 16). A
    worker's train.py is killed; the re-run runs that job and its blocked test only, and the
    numbers equal the uninterrupted run's."""
    out, marker = tmp_path / "out", tmp_path / "paused"
    cmd = lambda *extra: matrix_cmd(tiny_clip_path, *extra, methods=["CoOp"],  # noqa: E731
                                    datasets=["eurosat"])
    env = {**os.environ, **env_for(data_root, out), "PYTHONUNBUFFERED": "1",
           "FAULT": "pause_at_batch:1:1", "FAULT_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(FAULTS), str(REPO)])}
    driver = subprocess.Popen(cmd("--workers", "1"), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not marker.exists():
        assert time.time() < deadline and driver.poll() is None
        time.sleep(0.1)
    os.kill(int(marker.read_text().split()[0]), signal.SIGKILL)  # the worker's train.py
    output = driver.communicate(timeout=600)[0]
    assert driver.returncode == 1 and "FAILED" in output
    status = run_cli(*cmd("status"), env=env_for(data_root, out)).stdout
    assert "1 interrupted" in status and "2 done" in status, status
    rerun = run_cli(*cmd(), env=env_for(data_root, out)).stdout
    assert "4 jobs: 2 done, 0 running elsewhere, 2 to run" in rerun, rerun
    same = [n for n in _numbers(report_cells(local_run)) if n[:2] == ("CoOp", "eurosat")]
    assert same and [n for n in _numbers(report_cells(out)) if n[1] == "eurosat"] == same


def test_slurm_matrix_equals_local_and_survives_scancel(
        slurm_cluster, local_run, data_root, tiny_clip_path, tmp_path):  # noqa: F811
    out, marker = tmp_path / "out", tmp_path / "paused"
    env = {**os.environ, **env_for(data_root, out), "PYTHONUNBUFFERED": "1",
           "FAULT": "pause_at_batch:1:1", "FAULT_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(FAULTS), str(REPO)])}
    slurm = ["--backend", "slurm", "--time", "20", "--gpus-per-job", "0", "--cpus-per-job", "1"]
    driver = subprocess.Popen(matrix_cmd(tiny_clip_path, *slurm), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not marker.exists():
        assert time.time() < deadline and driver.poll() is None
        time.sleep(0.2)
    paused_dir = marker.read_text().split("--output-dir ")[1].split()[0]
    record = json.loads((out / "reproduce" / "slurm" / "slurm_jobs.json").read_text())["jobs"]
    key = next(k for k in record if k.split("/")[1] == "base2new_train"
               and paused_dir.endswith(f"/{k.split('/')[2]}/shots_2/{k.split('/')[0]}/"
                                       f"{paused_dir.split('/')[-2]}/{k.split('/')[3]}"))
    subprocess.run(["scancel", str(record[key]["job_id"])], check=True)
    output = driver.communicate(timeout=600)[0]
    assert driver.returncode == 1 and "cancelled" in output, output
    sbatch = list((out / "reproduce" / "slurm").rglob("*.sh"))
    assert any("afterok" in p.read_text() for p in sbatch)  # the test array waits for training
    rerun = run_cli(*matrix_cmd(tiny_clip_path, *slurm), env=env_for(data_root, out)).stdout
    # the 7 other trainings; the tests never ran
    assert "16 jobs: 7 done" in rerun, f"first run:\n{output}\nre-run:\n{rerun}"
    assert _numbers(report_cells(out)) == _numbers(report_cells(local_run))


def test_dry_run_lists_the_full_matrices(tmp_path):
    from disakit.runkit import matrix

    env = {"DATA": str(tmp_path / "data"), "OUTPUT": str(tmp_path / "out")}
    expected = {"base2new": 66, "xd": 33, "dg": 15, "fewshot": 165}
    for setting, count in expected.items():
        proc = run_cli(sys.executable, "scripts/reproduce.py", "--methods", "DiSa", "--settings",
                       setting, "--dry-run", env=env)
        assert f"{count} jobs: {count} pending" in proc.stdout
        jobs = matrix.expand(["DiSa"], [setting], env=env)
        assert len({j.out_dir for j in jobs}) == count
        for job in jobs:
            assert str(job.out_dir) in proc.stdout
    both = matrix.expand(["DiSa"], ["xd", "dg"], env=env)
    assert len(both) == 3 + 30 + 12  # one ImageNet training per seed serves both settings
    b2n = matrix.expand(["DiSa"], ["base2new"], env=env, seeds=[1])
    test = next(j for j in b2n if j.phase == "base2new_test" and j.dataset == "eurosat")
    train = next(j for j in b2n if j.key == test.deps[0])
    out = tmp_path / "out" / "base2new"
    assert train.out_dir == out / "train_base/eurosat/shots_16/DiSa/vit_b16_c2_ep20_batch4_4+4ctx/seed1"
    assert test.out_dir == out / "test_new/eurosat/shots_16/DiSa/vit_b16_c2_ep20_batch4_4+4ctx/seed1"


def test_report_marks_a_missing_cell_and_averages_nothing_over_it(
        local_run, data_root, tiny_clip_path, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(local_run / "base2new", out / "base2new")
    log = next((out / "base2new" / "test_new" / "dtd" / "shots_2" / "CoOp").rglob("seed2/log.txt"))
    log.unlink()
    proc = run_cli(*matrix_cmd(tiny_clip_path, "report"), env=env_for(data_root, out))
    md = (out / "report" / "base2new.md").read_text()
    assert "missing" in md and "seed 2" in md
    coop_new_dtd = [c for c in report_cells(out) if c["method"] == "CoOp" and c["dataset"] == "dtd"
                    and c["metric"] == "new"]
    assert coop_new_dtd and coop_new_dtd[0]["mean"] in ("", "missing")
    assert "Error" not in proc.stderr
