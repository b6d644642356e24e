"""Tests for the paper-table report (disakit/runkit/report.py) and the published numbers
(disakit/runkit/published.py, disakit/runkit/published_numbers.csv).

The job folders are hand-made in tmp_path with log.txt files written as the engine writes them;
every number the report shows is checked against parse_test_res.py's own output on the same
folders.
"""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import parse_test_res  # noqa: E402
from disakit.runkit import published as pub  # noqa: E402
from disakit.runkit import report  # noqa: E402
from disakit.runkit.jobs import Job  # noqa: E402

CFG = "vit_b16_c2_ep20_batch4_4+4ctx"

# ---------------------------------------------------------------- logs as the engine writes them

HEADER = ("***************\n** Arguments **\n***************\nroot: /data\nseed: 1\n"
          "Loading trainer: CoOp\nLoading evaluator: Classification\n")


def result_block(acc: float) -> str:
    """The engine's result block (one decimal)."""
    return (f"=> result\n* total: 1,000\n* correct: {int(acc * 10):,}\n* accuracy: {acc:.1f}%\n"
            f"* error: {100 - acc:.1f}%\n* macro_f1: {acc:.1f}%\n")


def train_log(acc: float, val_acc: float = 12.3) -> str:
    """A training log: a mid-training val evaluation, then the final test after Finish training."""
    return (HEADER + "No checkpoint found, train from scratch\n"
            "epoch [1/2] batch [1/4] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0) acc 50.0 (50.0) "
            "lr 1.0e-03 eta 0:00:01\nEvaluate on the *val* set\n" + result_block(val_acc)
            + "Checkpoint saved to out/prompt_learner/model.pth.tar-2\nFinish training\n"
            "Deploy the last-epoch model\nEvaluate on the *test* set\n" + result_block(acc)
            + "Elapsed: 0:00:10\n")


def eval_log(acc: float) -> str:
    """An --eval-only log: no Finish training."""
    return (HEADER + 'Loading weights to prompt_learner from "out/prompt_learner/'
            'model.pth.tar-2" (epoch = 2)\nEvaluate on the *test* set\n' + result_block(acc))


def unfinished_train_log() -> str:
    """Interrupted after a val evaluation: an '=> result' block, but no final test."""
    return (HEADER + "epoch [1/2] batch [1/4] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0)\n"
            "Evaluate on the *val* set\n" + result_block(55.5))


# ---------------------------------------------------------------- jobs laid out as protocol.py


def out_dir(root: Path, phase: str, trainer: str, dataset: str, seed: int, shots: int) -> Path:
    if phase in ("base2new_train", "base2new_test"):
        side = "train_base" if phase == "base2new_train" else "test_new"
        return root / "base2new" / side / dataset / f"shots_{shots}" / trainer / CFG / f"seed{seed}"
    if phase == "xd_train":
        return root / "imagenet" / trainer / f"{CFG}_{shots}shots" / f"seed{seed}"
    if phase in ("xd_test", "dg_test"):
        return root / "evaluation" / trainer / f"{CFG}_{shots}shots" / dataset / f"seed{seed}"
    return root / dataset / trainer / f"{CFG}_{shots}shots" / f"seed{seed}"


SETTING_OF = {"base2new_train": "base2new", "base2new_test": "base2new", "xd_train": "xd",
              "xd_test": "xd", "dg_test": "dg", "few_shot": "fewshot"}


def make_job(root: Path, phase: str, trainer: str, dataset: str, seed: int, shots: int = 16,
             acc: float | None = None, setting: str | None = None, log: str | None = None) -> Job:
    """A Job; with ``acc`` (or ``log``) its log.txt is written, as the engine would."""
    folder = out_dir(root, phase, trainer, dataset, seed, shots)
    positional = {"xd_train": (str(seed),), "few_shot": (dataset, str(shots), str(seed))}.get(
        phase, (dataset, str(seed)))
    job = Job(key=f"{trainer}/{phase}/{dataset}/{shots}/{seed}",
              setting=setting or SETTING_OF[phase], phase=phase, trainer=trainer,
              dataset=dataset, seed=seed, shots=shots, positional=positional, opts=(),
              out_dir=folder)
    if acc is not None or log is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if log is None:
            log = train_log(acc) if phase in ("base2new_train", "xd_train", "few_shot") \
                else eval_log(acc)
        (folder / "log.txt").write_text(log)
    return job


def run_ptr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def ptr_mean_std(exp_dir: Path, test_log: bool) -> tuple[str, str]:
    """parse_test_res.py's CoOp summary of one experiment folder: ('76.47', '0.12')."""
    proc = run_ptr(exp_dir, *(["--test-log"] if test_log else []))
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"\* accuracy: ([\d.]+)% \+- ([\d.]+)%", proc.stdout)
    assert match, proc.stdout
    return match.group(1), match.group(2)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def f2(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# ---------------------------------------------------------------- fixtures

# base2new: 2 methods x 2 datasets x 2 seeds; values chosen so that the mean of the HMs differs
# from the HM of the means.
B2N = {  # (trainer, dataset): ({seed: base}, {seed: new})
    ("CoOp", "oxford_pets"): ({1: 93.1, 2: 94.4}, {1: 95.0, 2: 95.9}),
    ("CoOp", "eurosat"): ({1: 92.0, 2: 90.3}, {1: 50.2, 2: 58.9}),
    ("DiSa", "oxford_pets"): ({1: 95.5, 2: 95.2}, {1: 97.3, 2: 97.6}),
    ("DiSa", "eurosat"): ({1: 93.7, 2: 94.1}, {1: 70.4, 2: 77.0}),
}


def b2n_jobs(root: Path, skip: tuple = ()) -> list[Job]:
    jobs = []
    for (trainer, dataset), (base, new) in B2N.items():
        for seed in (1, 2):
            for phase, values in (("base2new_train", base), ("base2new_test", new)):
                missing = (trainer, dataset, phase, seed) in skip
                jobs.append(make_job(root, phase, trainer, dataset, seed,
                                     acc=None if missing else values[seed]))
    return jobs


@pytest.fixture()
def b2n_root(tmp_path) -> tuple[Path, list[Job]]:
    root = tmp_path / "output"
    return root, b2n_jobs(root)


# ---------------------------------------------------------------- published numbers


def test_published_file_loads_with_valid_keys():
    numbers = pub.load_published()
    assert len(numbers) > 300
    config_names = {p.stem for p in (REPO / "configs" / "datasets").glob("*.yaml")}
    for (_method, setting, dataset, shots, metric), entry in numbers.items():
        assert setting in pub.SETTING_METRICS and metric in pub.SETTING_METRICS[setting]
        assert dataset in config_names | {"average"}, dataset
        assert shots == 16 and 0 < entry.value < 100 and entry.source
    # The rows the toolkit's methods are compared with, as the sources print them.
    assert numbers[("CoOp", "base2new", "average", 16, "hm")].value == 71.66
    assert numbers[("PromptSRC", "base2new", "eurosat", 16, "new")].value == 73.90
    assert numbers[("ZeroshotCLIP", "dg", "imagenet_sketch", 16, "acc")].value == 46.15
    assert numbers[("MaPLe", "xd", "average", 16, "acc")].value == 66.30
    assert ("KgCoOp", "xd", "imagenet", 16, "acc") not in numbers  # "–" in the source
    assert numbers[("IVLP", "base2new", "average", 16, "base")].value == 84.21
    assert "README" in numbers[("IVLP", "base2new", "average", 16, "base")].source


def test_published_file_marks_methods_without_public_numbers():
    marks = pub.unavailable()
    for setting in ("base2new", "xd", "dg", "fewshot"):
        assert marks[("DiSa", setting)].startswith("not public:")
        assert marks[("DPL", setting)].startswith("not public:")
    assert marks[("DAPT", "base2new")].startswith("not public:")
    numbers = pub.load_published()
    assert not any(key[0] in ("DiSa", "DPL", "DAPT") for key in numbers)


def test_published_hm_and_averages_are_consistent():
    """H = 2BN/(B+N) within 0.01; the 11 datasets average to the published Base/New; the
    cross-dataset and DG targets average to the published average. The two exceptions are the
    PromptSRC README's ProDA row, whose printed Novel does not give its printed HM, and MMRL's
    DTD row, whose HM is printed as 73.82 where its Base and Novel give 73.92."""
    numbers = pub.published_values()
    problems = pub.consistency_problems(pub.load_published())
    assert len(problems) == 2, problems
    assert problems[0].startswith("MMRL base2new dtd: H 73.82 but 2BN/(B+N) = 73.92"), problems
    assert problems[1].startswith("ProDA base2new average"), problems
    checked = 0
    for (method, setting, dataset, shots, metric), h in numbers.items():
        if setting != "base2new" or metric != "hm" or method == "ProDA" or (
                method, dataset) == ("MMRL", "dtd"):
            continue
        b = numbers[(method, setting, dataset, shots, "base")]
        n = numbers[(method, setting, dataset, shots, "new")]
        assert abs(2 * b * n / (b + n) - h) <= 0.01 + 1e-9, (method, dataset)
        checked += 1
    assert checked >= 6 * 12 + 8
    per_dataset = {m for (m, s, d, _, _) in numbers if s == "base2new" and d == "imagenet"}
    assert per_dataset == {"ZeroshotCLIP", "CoOp", "CoCoOp", "KgCoOp", "MaPLe", "PromptSRC",
                           "MMRL"}
    for method in per_dataset:
        for metric in ("base", "new"):
            mean = np.mean([numbers[(method, "base2new", d, 16, metric)]
                            for d in pub.B2N_DATASETS])
            assert abs(mean - numbers[(method, "base2new", "average", 16, metric)]) <= 0.01
    for setting, targets in (("xd", pub.XD_TARGETS), ("dg", pub.DG_TARGETS)):
        methods = {m for (m, s, d, _, _) in numbers if s == setting}
        assert methods
        for method in methods:
            mean = np.mean([numbers[(method, setting, d, 16, "acc")] for d in targets])
            assert abs(mean - numbers[(method, setting, "average", 16, "acc")]) <= 0.01


def test_published_average_hm_is_not_the_mean_of_hms():
    """The papers' convention, e.g. CoOp's mean per-dataset H is 70.83, its H̄ 71.66."""
    numbers = pub.published_values()
    hms = [numbers[("CoOp", "base2new", d, 16, "hm")] for d in pub.B2N_DATASETS]
    assert f"{np.mean(hms):.2f}" == "70.83"
    b, n = (numbers[("CoOp", "base2new", "average", 16, m)] for m in ("base", "new"))
    assert f"{pub.harmonic_mean(b, n):.2f}" == "71.66"


@pytest.mark.parametrize("row, message", [
    ("CoOp,base2new,dtd,16,acc,50.0,paper", "metric 'acc'"),
    ("CoOp,fewshots,dtd,16,acc,50.0,paper", "setting 'fewshots'"),
    ("CoOp,xd,dtd,16,acc,,paper", "must start with"),
    ("CoOp,xd,dtd,16,acc,50.0,", "needs a source"),
    ("CoOp,xd,dtd,16,acc,fifty,paper", "could not convert"),
])
def test_published_loader_rejects_bad_rows(tmp_path, row, message):
    path = tmp_path / "p.csv"
    path.write_text(",".join(pub.COLUMNS) + "\n" + row + "\n")
    with pytest.raises(pub.PublishedError, match=message):
        pub.load_published(path)


def test_published_loader_rejects_duplicates(tmp_path):
    path = tmp_path / "p.csv"
    row = "CoOp,xd,dtd,16,acc,50.0,paper\n"
    path.write_text(",".join(pub.COLUMNS) + "\n" + row + row)
    with pytest.raises(pub.PublishedError, match="given twice"):
        pub.load_published(path)


# ---------------------------------------------------------------- base-to-novel


def test_base2new_cells_equal_parse_test_res(b2n_root):
    root, jobs = b2n_root
    cells = report.build_cells(report.collect_runs(jobs))["base2new"]
    out = root / "ptr.csv"
    proc = run_ptr(root / "base2new", "--base2new", "--csv", out)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["trainer"], r["Dataset"]): r for r in read_csv(out)}
    for trainer in ("CoOp", "DiSa"):
        for dataset in ("oxford_pets", "eurosat"):
            row = rows[(trainer, dataset)]
            for metric, column in (("base", "Base"), ("new", "New"), ("hm", "HM")):
                cell = cells.get(trainer, dataset, 16, metric)
                assert f2(cell.mean) == row[column], (trainer, dataset, metric)
        average = rows[(trainer, "Average (2 of 11 datasets)")]
        for metric, column in (("base", "Base"), ("new", "New"), ("hm", "HM")):
            cell = cells.get(trainer, "average", 16, metric)
            assert f2(cell.mean) == average[column]
            assert cell.label == "Average (2 of 11 datasets)"
    # mean ± std of each seed cell equal parse_test_res.py's CoOp-mode summary
    for side, metric, test_log in (("train_base", "base", False), ("test_new", "new", True)):
        exp = root / "base2new" / side / "eurosat" / "shots_16" / "CoOp" / CFG
        mean, std = ptr_mean_std(exp, test_log)
        cell = cells.get("CoOp", "eurosat", 16, metric)
        assert (f2(cell.mean), f2(cell.std)) == (mean, std)
        assert cell.seeds == (1, 2)


def test_base2new_formulas(b2n_root):
    _, jobs = b2n_root
    cells = report.build_cells(report.collect_runs(jobs), published={}, not_public={})
    sc = cells["base2new"]
    bases_by_seed, news_by_seed = B2N[("CoOp", "eurosat")]
    base, new = np.mean(list(bases_by_seed.values())), np.mean(list(news_by_seed.values()))
    assert sc.get("CoOp", "eurosat", 16, "base").mean == pytest.approx(base)
    assert sc.get("CoOp", "eurosat", 16, "base").std == pytest.approx(
        np.std(list(bases_by_seed.values())))  # population std, as parse_test_res.py
    hm = sc.get("CoOp", "eurosat", 16, "hm")
    assert hm.mean == pytest.approx(2 * base * new / (base + new)) and hm.std is None
    # Average: mean Base, mean New, and the HM of those two means -- not the mean of the HMs.
    bases = [sc.get("CoOp", d, 16, "base").mean for d in ("oxford_pets", "eurosat")]
    news = [sc.get("CoOp", d, 16, "new").mean for d in ("oxford_pets", "eurosat")]
    hms = [sc.get("CoOp", d, 16, "hm").mean for d in ("oxford_pets", "eurosat")]
    avg = {m: sc.get("CoOp", "average", 16, m).mean for m in ("base", "new", "hm")}
    assert avg["base"] == pytest.approx(np.mean(bases))
    assert avg["new"] == pytest.approx(np.mean(news))
    b, n = np.mean(bases), np.mean(news)
    assert avg["hm"] == pytest.approx(2 * b * n / (b + n))
    assert abs(avg["hm"] - np.mean(hms)) > 0.5  # the fixture makes the two rules differ


def test_missing_seed_is_marked_and_not_averaged(tmp_path):
    root = tmp_path / "output"
    jobs = b2n_jobs(root, skip={("CoOp", "eurosat", "base2new_train", 2)})
    # seed 2 of that job ran but was interrupted: a val result block, no final test
    unfinished = [j for j in jobs if j.trainer == "CoOp" and j.dataset == "eurosat"
                  and j.phase == "base2new_train" and j.seed == 2][0]
    unfinished.out_dir.mkdir(parents=True)
    (unfinished.out_dir / "log.txt").write_text(unfinished_train_log())
    # and DiSa's oxford_pets test_new seed 1 never ran (no folder at all)
    jobs = [j for j in jobs if j.out_dir.exists() or j.trainer != "DiSa"] + [
        make_job(root, "base2new_test", "DiSa", "oxford_pets", 1)]
    import shutil
    shutil.rmtree(out_dir(root, "base2new_test", "DiSa", "oxford_pets", 1, 16))
    written = report.build_report(jobs, root)
    sc = report.build_cells(report.collect_runs(jobs))["base2new"]

    base = sc.get("CoOp", "eurosat", 16, "base")
    assert base.mean is None and base.missing == ("seed 2",) and base.seeds == (1,)
    assert base.text() == "missing (seed 2)"
    assert sc.get("CoOp", "eurosat", 16, "hm").mean is None
    assert sc.get("CoOp", "eurosat", 16, "new").mean is not None  # the other side is fine
    # no average over a missing cell: Base and HM averages missing, New average computed
    assert sc.get("CoOp", "average", 16, "base").mean is None
    assert sc.get("CoOp", "average", 16, "base").missing == ("eurosat",)
    assert sc.get("CoOp", "average", 16, "hm").mean is None
    assert sc.get("CoOp", "average", 16, "new").mean is not None
    disa_new = sc.get("DiSa", "oxford_pets", 16, "new")
    assert disa_new.missing == ("seed 1",) and disa_new.seeds == (2,)
    assert sc.get("DiSa", "average", 16, "new").mean is None
    assert sc.get("DiSa", "average", 16, "base").mean is not None

    md = (root / "report" / "base2new.md").read_text()
    assert "missing (seed 2)" in md and "missing (eurosat)" in md and "missing (seed 1)" in md
    assert re.search(r"CoOp / eurosat / Base: seed 2 missing: .*", md)
    assert re.search(r"DiSa / oxford_pets / New: seed 1 missing: .*", md)
    rows = {(r["method"], r["dataset"], r["metric"]): r
            for r in read_csv(root / "report" / "base2new.csv")}
    assert rows[("CoOp", "eurosat", "base")]["mean"] == ""
    assert rows[("CoOp", "eurosat", "base")]["missing"] == "seed 2"
    assert rows[("CoOp", "average", "hm")]["mean"] == ""
    assert rows[("CoOp", "eurosat", "new")]["mean"] != ""
    assert "missing (seed 2)" in (root / "report" / "base2new.tex").read_text()
    assert written["base2new"][0].name == "base2new.md"


def test_base2new_report_files(b2n_root):
    root, jobs = b2n_root
    written = report.build_report(jobs, root)
    folder = root / "report"
    names = {p.name for p in written["base2new"]}
    assert {"base2new.md", "base2new.csv", "base2new.tex", "base2new_oxford_pets.png",
            "base2new_eurosat.png", "base2new_average.png"} <= names
    for path in written["base2new"]:
        assert path.is_file() and path.stat().st_size > 0 and path.parent == folder
    assert (folder / "base2new_eurosat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sc = report.build_cells(report.collect_runs(jobs))["base2new"]
    pets_base = sc.get("CoOp", "oxford_pets", 16, "base")
    text = f"{pets_base.mean:.2f} ± {pets_base.std:.2f}"
    md = (folder / "base2new.md").read_text()
    assert text in md
    # published side by side: CoOp OxfordPets Base 93.67 (CoCoOp paper Table 1) and the Δ
    line = next(ln for ln in md.splitlines() if ln.startswith("| OxfordPets | CoOp |"))
    assert f"| {text} | 93.67 | {pets_base.mean - 93.67:+.2f} |" in line
    # DiSa has no public numbers: n/p and the reason
    line = next(ln for ln in md.splitlines() if ln.startswith("| OxfordPets | DiSa |"))
    assert "| n/p |" in line
    assert "DiSa: n/p, not public:" in md
    assert "CoCoOp paper (arXiv 2203.05557) Table 1" in md
    # a partial average is not compared with the published 11-dataset average
    average = next(ln for ln in md.splitlines() if ln.startswith("| Average (2 of 11"))
    assert "71.66" not in average and "| – |" in average
    rows = read_csv(folder / "base2new.csv")
    assert tuple(rows[0]) == report.CSV_COLUMNS
    row = next(r for r in rows if (r["method"], r["dataset"], r["metric"])
               == ("CoOp", "oxford_pets", "base"))
    assert float(row["mean"]) == pytest.approx(pets_base.mean, abs=1e-4)
    assert float(row["std"]) == pytest.approx(pets_base.std, abs=1e-4)
    assert row["seeds"] == "1 2" and row["published"] == "93.67"
    assert float(row["diff"]) == pytest.approx(pets_base.mean - 93.67, abs=1e-4)
    tex = (folder / "base2new.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex
    assert f"{pets_base.mean:.2f} $\\pm$ {pets_base.std:.2f}" in tex
    body = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    n_cols = tex.split(r"\begin{tabular}{")[1].split("}")[0]
    assert all(ln.count(" & ") == len(n_cols) - 1 for ln in body)


def test_full_base2new_average_is_compared_with_published(tmp_path):
    """With all 11 datasets the Average row is the papers' and gets the published 71.66."""
    root = tmp_path / "output"
    jobs = []
    for i, dataset in enumerate(parse_test_res.PAPER_DATASETS):
        for phase, acc in (("base2new_train", 80.0 + i), ("base2new_test", 60.0 + i)):
            jobs.append(make_job(root, phase, "CoOp", dataset, 1, acc=acc))
    sc = report.build_cells(report.collect_runs(jobs))["base2new"]
    hm = sc.get("CoOp", "average", 16, "hm")
    assert hm.label == "Average" and hm.published == 71.66
    b, n = 85.0, 65.0
    assert hm.mean == pytest.approx(2 * b * n / (b + n))
    assert hm.diff == pytest.approx(hm.mean - 71.66)


# ---------------------------------------------------------------- cross-dataset and DG


XD = {"CoOp": {1: 71.0, 2: 72.1}, "MaPLe": {1: 70.2, 2: 70.9}}  # ImageNet source
TARGETS = {"caltech101": 93.0, "dtd": 44.4, "imagenetv2": 64.0, "imagenet_a": 49.9}


def xd_jobs(root: Path, skip: tuple = ()) -> list[Job]:
    jobs = []
    for trainer, source in XD.items():
        bump = 0.0 if trainer == "CoOp" else 1.3
        for seed in (1, 2):
            jobs.append(make_job(root, "xd_train", trainer, "imagenet", seed, acc=source[seed]))
            for dataset, acc in TARGETS.items():
                phase = "dg_test" if dataset.startswith("imagenet") else "xd_test"
                missing = (trainer, dataset, seed) in skip
                jobs.append(make_job(root, phase, trainer, dataset, seed,
                                     acc=None if missing else acc + bump + 0.7 * seed))
    return jobs


def test_xd_dg_cells_equal_parse_test_res(tmp_path):
    root = tmp_path / "output"
    jobs = xd_jobs(root)
    cells = report.build_cells(report.collect_runs(jobs))
    assert set(cells) == {"xd", "dg"}
    out = tmp_path / "ptr.csv"
    proc = run_ptr(root / "evaluation", "--xd", "--csv", out)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["trainer"], r["Dataset"]): r for r in read_csv(out)}
    for trainer in XD:
        for setting, dataset in (("xd", "caltech101"), ("xd", "dtd"), ("dg", "imagenetv2"),
                                 ("dg", "imagenet_a")):
            cell = cells[setting].get(trainer, dataset, 16, "acc")
            assert (f2(cell.mean), f2(cell.std)) == (rows[(trainer, dataset)]["Accuracy"],
                                                     rows[(trainer, dataset)]["Std"])
        xd_avg = cells["xd"].get(trainer, "average", 16, "acc")
        assert f2(xd_avg.mean) == rows[(trainer, "Average cross-dataset (2 of 10 targets)")][
            "Accuracy"]
        dg_avg = cells["dg"].get(trainer, "average", 16, "acc")
        assert f2(dg_avg.mean) == rows[(trainer, "Average DG (2 of 4 targets)")]["Accuracy"]
        # the ImageNet source: the xd_train job's final test, in both tables, in no average
        mean, std = ptr_mean_std(root / "imagenet" / trainer / f"{CFG}_16shots", test_log=False)
        for setting in ("xd", "dg"):
            source = cells[setting].get(trainer, "imagenet", 16, "acc")
            assert (f2(source.mean), f2(source.std)) == (mean, std)
        assert xd_avg.mean == pytest.approx(np.mean(
            [cells["xd"].get(trainer, d, 16, "acc").mean for d in ("caltech101", "dtd")]))
    # published side by side for the source: CoOp 71.51 (CoCoOp paper)
    coop_source = cells["dg"].get("CoOp", "imagenet", 16, "acc")
    assert coop_source.published == 71.51
    assert coop_source.diff == pytest.approx(coop_source.mean - 71.51)
    assert cells["dg"].get("CoOp", "imagenetv2", 16, "acc").published == 64.20
    # partial averages are not compared with the published ones
    assert cells["xd"].get("CoOp", "average", 16, "acc").published is None


def test_xd_dg_missing_and_files(tmp_path):
    root = tmp_path / "output"
    jobs = xd_jobs(root, skip={("MaPLe", "dtd", 1)})
    written = report.build_report(jobs, root)
    assert set(written) == {"xd", "dg"}
    cells = report.build_cells(report.collect_runs(jobs))
    dtd = cells["xd"].get("MaPLe", "dtd", 16, "acc")
    assert dtd.mean is None and dtd.missing == ("seed 1",)
    assert cells["xd"].get("MaPLe", "average", 16, "acc").mean is None
    assert cells["xd"].get("CoOp", "average", 16, "acc").mean is not None
    assert cells["dg"].get("MaPLe", "average", 16, "acc").mean is not None
    folder = root / "report"
    for setting in ("xd", "dg"):
        for suffix in (".md", ".csv", ".tex"):
            assert (folder / f"{setting}{suffix}").is_file()
    md = (folder / "xd.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| Method"))
    assert "ImageNet (source)" in header and "Caltech101" in header
    assert "Average (2 of 10 targets)" in header
    assert "missing (seed 1)" in md and "missing (dtd)" in md
    assert "MaPLe / dtd / Acc.: seed 1 missing" in md
    ours = next(ln for ln in md.splitlines() if ln.startswith("| CoOp | ours |"))
    published = md.splitlines()[md.splitlines().index(ours) + 1]
    assert "| published |" in published and "71.51" in published and "93.70" in published
    dg_md = (folder / "dg.md").read_text()
    assert "ImageNet-V2" in dg_md and "Average (2 of 4 targets)" in dg_md
    rows = read_csv(folder / "dg.csv")
    assert {r["dataset"] for r in rows} == {"imagenet", "imagenetv2", "imagenet_a", "average"}


def test_full_xd_average_is_compared_with_published(tmp_path):
    root = tmp_path / "output"
    jobs = [make_job(root, "xd_train", "CoOp", "imagenet", 1, acc=71.5)]
    for i, dataset in enumerate(parse_test_res.XD_TARGETS):
        jobs.append(make_job(root, "xd_test", "CoOp", dataset, 1, acc=60.0 + i))
    cells = report.build_cells(report.collect_runs(jobs))
    assert set(cells) == {"xd"}  # an xd_train job alone does not start a DG table
    avg = cells["xd"].get("CoOp", "average", 16, "acc")
    assert avg.label == "Average" and avg.mean == pytest.approx(64.5)
    assert avg.published == 63.88 and avg.diff == pytest.approx(64.5 - 63.88)


# ---------------------------------------------------------------- few-shot


FEW = {("CoOp", "dtd"): 40.0, ("CoOp", "eurosat"): 50.0, ("DAPT", "dtd"): 42.0,
       ("DAPT", "eurosat"): 53.0}


def fewshot_jobs(root: Path, skip: tuple = ()) -> list[Job]:
    jobs = []
    for (trainer, dataset), start in FEW.items():
        for shots in (1, 2, 4):
            for seed in (1, 2):
                missing = (trainer, dataset, shots, seed) in skip
                acc = start + 5 * np.log2(shots) + 0.4 * seed
                jobs.append(make_job(root, "few_shot", trainer, dataset, seed, shots,
                                     acc=None if missing else acc))
    return jobs


def test_fewshot_cells_equal_parse_test_res(tmp_path):
    root = tmp_path / "output"
    jobs = fewshot_jobs(root, skip={("DAPT", "eurosat", 4, 2)})
    sc = report.build_cells(report.collect_runs(jobs))["fewshot"]
    assert sc.shots == [1, 2, 4] and sc.methods == ["CoOp", "DAPT"]
    for (trainer, dataset) in FEW:
        for shots in (1, 2, 4):
            if (trainer, dataset, shots) == ("DAPT", "eurosat", 4):
                continue
            mean, std = ptr_mean_std(root / dataset / trainer / f"{CFG}_{shots}shots",
                                     test_log=False)
            cell = sc.get(trainer, dataset, shots, "acc")
            assert (f2(cell.mean), f2(cell.std)) == (mean, std)
    missing = sc.get("DAPT", "eurosat", 4, "acc")
    assert missing.mean is None and missing.missing == ("seed 2",)
    assert sc.get("DAPT", "average", 4, "acc").mean is None
    assert sc.get("DAPT", "average", 2, "acc").mean == pytest.approx(np.mean(
        [sc.get("DAPT", d, 2, "acc").mean for d in ("dtd", "eurosat")]))
    assert sc.get("DAPT", "dtd", 1, "acc").not_public  # DAPT few-shot: not transcribed


def test_fewshot_report_files_and_published_curves(tmp_path):
    root = tmp_path / "output"
    jobs = fewshot_jobs(root)
    published = {("CoOp", "fewshot", "dtd", shots, "acc"): pub.Published(v, "test source")
                 for shots, v in ((1, 44.0), (2, 46.0), (4, 52.0))}
    written = report.build_report(jobs, root, published=published, not_public={})
    names = {p.name for p in written["fewshot"]}
    assert {"fewshot.md", "fewshot.csv", "fewshot.tex", "fewshot_dtd.png",
            "fewshot_eurosat.png", "fewshot_average.png"} == names
    sc = report.build_cells(report.collect_runs(jobs), published=published, not_public={})[
        "fewshot"]
    fig = report._fewshot_figure(sc, "dtd")
    ax = fig.axes[0]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert [ln.get_label() for ln in dashed] == ["CoOp (published)"]
    assert list(dashed[0].get_ydata()) == [44.0, 46.0, 52.0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["CoOp (published)", "CoOp", "DAPT"] or set(legend) == {
        "CoOp", "CoOp (published)", "DAPT"}
    md = (root / "report" / "fewshot.md").read_text()
    cell = sc.get("CoOp", "dtd", 2, "acc")
    assert f"{cell.mean:.2f} ± {cell.std:.2f}" in md and "| 1 shot | 2 shots | 4 shots |" in md
    assert "46.00" in md and f"{cell.mean - 46.0:+.2f}" in md
    assert "![fewshot_dtd](fewshot_dtd.png)" in md
    rows = read_csv(root / "report" / "fewshot.csv")
    assert {(r["dataset"], r["shots"]) for r in rows if r["method"] == "DAPT"} == {
        (d, str(s)) for d in ("dtd", "eurosat", "average") for s in (1, 2, 4)}


# ---------------------------------------------------------------- matrix handling


def test_settings_and_methods_filters(tmp_path):
    root = tmp_path / "output"
    jobs = b2n_jobs(root) + xd_jobs(root) + fewshot_jobs(root)
    written = report.build_report(jobs, root, settings=["base2new", "dg"], methods=["DiSa"],
                                  figures=False)
    assert set(written) == {"base2new", "dg"}
    assert all(p.suffix != ".png" for paths in written.values() for p in paths)
    rows = read_csv(root / "report" / "base2new.csv")
    assert {r["method"] for r in rows} == {"DiSa"}
    # no DiSa job in dg: the table is empty but written
    assert read_csv(root / "report" / "dg.csv") == []
    with pytest.raises(report.ReportError, match="unknown setting"):
        report.collect_runs(jobs, settings=["b2n"])


def test_method_order_follows_methods_argument(b2n_root):
    root, jobs = b2n_root
    sc = report.build_cells(report.collect_runs(jobs), methods=["DiSa", "CoOp"])["base2new"]
    assert sc.methods == ["DiSa", "CoOp"]
    assert report.build_cells(report.collect_runs(jobs))["base2new"].methods == ["CoOp", "DiSa"]


def test_two_jobs_for_one_cell_are_refused(tmp_path):
    root = tmp_path / "output"
    job = make_job(root, "few_shot", "CoOp", "dtd", 1, 4, acc=50.0)
    other = Job(**{**job.__dict__, "key": "other", "out_dir": tmp_path / "elsewhere"})
    with pytest.raises(report.ReportError, match="two jobs fill"):
        report.collect_runs([job, other])


def test_val_result_of_an_unfinished_training_is_not_read(tmp_path):
    """An interrupted training log has a val '=> result' block but no final test."""
    root = tmp_path / "output"
    job = make_job(root, "few_shot", "CoOp", "dtd", 1, 4, log=unfinished_train_log())
    runs = report.collect_runs([job])["fewshot"][("CoOp", "dtd", 4, "acc")]
    assert runs[1].value is None and runs[1].problem


def test_zeroshot_jobs_fill_base_new_and_zero_shots(tmp_path):
    """Zero-shot CLIP (phase zeroshot, positional DATASET [all|base|new]) as protocol.py lays
    it out: Base/New in base-to-novel, a 0-shot column in few-shot; compared with the
    published CLIP row."""
    root = tmp_path / "output"

    def zeroshot(setting: str, dataset: str, subsample: str, acc: float) -> Job:
        folder = root / "ZeroshotCLIP" / "vit_b16" / dataset
        folder = folder / subsample if subsample != "all" else folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "log.txt").write_text(eval_log(acc))
        return Job(key=f"zs/{setting}/{dataset}/{subsample}", setting=setting, phase="zeroshot",
                   trainer="ZeroshotCLIP", dataset=dataset, seed=1, shots=16,
                   positional=(dataset, subsample), opts=(), out_dir=folder)

    jobs = [zeroshot("base2new", "dtd", "base", 53.2), zeroshot("base2new", "dtd", "new", 59.9),
            zeroshot("fewshot", "dtd", "all", 44.5)]
    cells = report.build_cells(report.collect_runs(jobs))
    hm = cells["base2new"].get("ZeroshotCLIP", "dtd", 16, "hm")
    assert hm.mean == pytest.approx(2 * 53.2 * 59.9 / (53.2 + 59.9))
    assert hm.published == 56.37 and cells["base2new"].get("ZeroshotCLIP", "dtd", 16,
                                                           "base").published == 53.24
    assert cells["fewshot"].get("ZeroshotCLIP", "dtd", 0, "acc").mean == pytest.approx(44.5)
    assert "0 (zero-shot)" in report.render_markdown(cells["fewshot"])


def test_a_phase_missing_from_the_matrix_reads_no_job(tmp_path):
    """Only the training jobs in the matrix: New and HM say "no job", the Base is there."""
    root = tmp_path / "output"
    jobs = [make_job(root, "base2new_train", "CoOp", "dtd", s, acc=70.0 + s) for s in (1, 2)]
    sc = report.build_cells(report.collect_runs(jobs))["base2new"]
    assert sc.get("CoOp", "dtd", 16, "base").mean == pytest.approx(71.5)
    assert sc.get("CoOp", "dtd", 16, "new").text() == "missing (no job)"
    assert sc.get("CoOp", "dtd", 16, "hm").mean is None
    assert sc.get("CoOp", "average", 16, "hm").missing == ("dtd",)
