"""Tests for parse_test_res.py: CoOp-compatible output, base-to-novel and cross-dataset tables."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import parse_test_res  # noqa: E402

PAPER = parse_test_res.PAPER_DATASETS

# ---------------------------------------------------------------- synthetic logs

HEADER = (
    "***************\n** Arguments **\n***************\nroot: /data\nseed: 1\n"
    "Loading trainer: CoOp\nLoading dataset: OxfordPets\nLoading evaluator: Classification\n"
)


def result_block(acc: float, err: float | None = None, f1: float | None = None,
                 decimals: int = 1) -> str:
    """The engine's 6-line result block (one decimal; old Dassl used two)."""
    err = 100 - acc if err is None else err
    f1 = acc if f1 is None else f1
    return (f"=> result\n* total: 1,881\n* correct: 1,795\n* accuracy: {acc:.{decimals}f}%\n"
            f"* error: {err:.{decimals}f}%\n* macro_f1: {f1:.{decimals}f}%\n")


def train_log(acc: float, err: float | None = None, f1: float | None = None,
              val_acc: float | None = None) -> str:
    """A new-Dassl training log; ``val_acc`` adds a mid-training val evaluation."""
    val = f"Evaluate on the *val* set\n{result_block(val_acc)}" if val_acc is not None else ""
    return (
        HEADER + "No checkpoint found, train from scratch\n"
        "epoch [1/5] batch [20/76] time 0.105 (0.160) data 0.000 (0.021) loss 1.2345 (1.4321) "
        "acc 75.0000 (65.2500) lr 1.0000e-05 eta 0:01:02\n" + val
        + "Checkpoint saved to out/prompt_learner/model.pth.tar-5\n"
        "Finish training\nDeploy the last-epoch model\nEvaluate on the *test* set\n"
        + result_block(acc, err, f1) + "Elapsed: 0:00:10\n"
    )


def eval_log(acc: float) -> str:
    """A new-Dassl ``--eval-only`` log: no ``Finish training``, no ``Elapsed``."""
    return (HEADER + 'Loading weights to prompt_learner from "out/prompt_learner/'
            'model.pth.tar-5" (epoch = 5)\nEvaluate on the *test* set\n' + result_block(acc))


def old_train_log(acc: float) -> str:
    """An old-Dassl training log (tab-joined batch line, two decimals, ``Finished training``)."""
    return (HEADER + "epoch [1/5][1/10]\ttime 0.100 (0.200)\tdata 0.000 (0.010)\teta 0:00:05\t"
            "loss 1.0000 (1.2000)\tacc 50.0000 (40.0000)\tlr 2.000000e-03\n"
            "Finished training\nDo evaluation on test set\n" + result_block(acc, decimals=2)
            + "Elapsed: 0:00:10\n")


def unfinished_log() -> str:
    return HEADER + "epoch [1/5] batch [1/76] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0)\n"


def write(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "log.txt").write_text(text)
    return path


def run_main(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = parse_test_res.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def summary_lines(directory: Path, keyword: str, values: dict[str, float], spread: float
                  ) -> list[str]:
    """The exact CoOp block for ``values`` keyed by seed folder name."""
    files = [f"file: {os.path.join(str(directory), name, 'log.txt')}. {keyword}: {v:.2f}%. "
             for name, v in values.items()]
    mean = np.mean(list(values.values()))
    return [f"Parsing files in {directory}", *files, "===",
            f"Summary of directory: {directory}", f"* {keyword}: {mean:.2f}% +- {spread:.2f}%",
            "==="]


# ---------------------------------------------------------------- CoOp-compatible mode


@pytest.fixture
def three_seeds(tmp_path: Path) -> Path:
    exp = tmp_path / "oxford_pets" / "CoOp" / "rn50_16shots"
    for seed, acc in ((1, 95.4), (2, 93.1), (3, 96.0)):
        write(exp / f"seed{seed}", train_log(acc, err=100 - acc - 0.1, f1=acc - 1.3))
    return exp


def test_coop_output_is_exact(capsys, three_seeds):
    code, out, err = run_main(capsys, three_seeds)
    values = {"seed1": 95.4, "seed2": 93.1, "seed3": 96.0}
    assert (code, err) == (0, "")
    assert out == summary_lines(three_seeds, "accuracy", values, np.std(list(values.values())))
    assert out[1].endswith("accuracy: 95.40%. ")


def test_ci95_is_196_std_over_sqrt_n(capsys, three_seeds):
    values = np.array([95.4, 93.1, 96.0])
    ci95 = 1.96 * np.std(values) / np.sqrt(3)
    _, out, _ = run_main(capsys, three_seeds, "--ci95")
    assert out[-2] == f"* accuracy: {values.mean():.2f}% +- {ci95:.2f}%"
    assert parse_test_res.compute_ci95(values) == pytest.approx(ci95)
    assert f"{ci95:.2f}" != f"{np.std(values):.2f}"


@pytest.mark.parametrize("keyword,values", [
    ("error", [4.5, 6.8, 3.9]),
    ("macro_f1", [94.1, 91.8, 94.7]),
])
def test_keyword_selects_the_result_line(capsys, three_seeds, keyword, values):
    _, out, _ = run_main(capsys, three_seeds, "--keyword", keyword)
    named = dict(zip(["seed1", "seed2", "seed3"], values))
    assert out == summary_lines(three_seeds, keyword, named, np.std(values))


def test_old_dassl_log_with_finished_training_and_two_decimals(capsys, tmp_path):
    write(tmp_path / "seed1", old_train_log(81.02))
    write(tmp_path / "seed2", train_log(80.5))
    _, out, _ = run_main(capsys, tmp_path)
    assert out[1:3] == [f"file: {tmp_path}/seed1/log.txt. accuracy: 81.02%. ",
                        f"file: {tmp_path}/seed2/log.txt. accuracy: 80.50%. "]


def test_results_before_the_end_signal_are_ignored(capsys, tmp_path):
    write(tmp_path / "seed1", train_log(90.0, val_acc=10.0))
    write(tmp_path / "seed2", HEADER + "Evaluate on the *val* set\n" + result_block(10.0)
          + unfinished_log())
    code, out, err = run_main(capsys, tmp_path)
    assert (code, out) == (1, [])  # seed2 never finished: no silent mean over seed1 alone
    assert f"{tmp_path}/seed2/log.txt: no 'Finish training' or 'Finished training' line" in err
    _, out, _ = run_main(capsys, tmp_path, "--allow-partial")
    assert out[1:3] == [f"file: {tmp_path}/seed1/log.txt. accuracy: 90.00%. ", "==="]


def test_test_log_takes_the_last_result_block(capsys, tmp_path):
    write(tmp_path / "seed1", train_log(90.0, val_acc=10.0))  # val result, then final test
    write(tmp_path / "seed2", eval_log(70.0))
    write(tmp_path / "seed3", eval_log(60.0) + result_block(65.0))  # e.g. re-tested
    _, out, _ = run_main(capsys, tmp_path, "--test-log")
    assert out == summary_lines(tmp_path, "accuracy",
                                {"seed1": 90.0, "seed2": 70.0, "seed3": 65.0},
                                np.std([90.0, 70.0, 65.0]))


def test_eval_only_logs_need_test_log(capsys, tmp_path):
    write(tmp_path / "seed1", train_log(80.0))
    write(tmp_path / "seed2", eval_log(70.0))
    code, _, err = run_main(capsys, tmp_path)
    assert code == 1 and "an eval-only log? pass --test-log" in err
    _, out, _ = run_main(capsys, tmp_path, "--allow-partial")
    assert [line for line in out if line.startswith("file:")] == [
        f"file: {tmp_path}/seed1/log.txt. accuracy: 80.00%. "]


def test_folders_without_a_match_are_skipped_and_order_is_sorted(capsys, tmp_path):
    for name, acc in (("seed2", 91.0), ("seed10", 92.0), ("seed1", 93.0)):
        write(tmp_path / name, train_log(acc))
    write(tmp_path / "seed3", unfinished_log())
    write(tmp_path / ".hidden", "garbage")
    (tmp_path / "notes.txt").write_text("a file, not a run")
    code, out, err = run_main(capsys, tmp_path, "--allow-partial")
    assert code == 0 and "1 of 4 expected seed runs" in err and f"{tmp_path}/seed3" in err
    values = {"seed1": 93.0, "seed10": 92.0, "seed2": 91.0}
    assert out == summary_lines(tmp_path, "accuracy", values, np.std(list(values.values())))


def test_multi_exp_prints_each_block_then_the_mean_of_means(capsys, tmp_path):
    exps = {"exp-1": [80.0, 82.0], "exp-2": [70.0, 75.0, 71.0]}
    for exp, values in exps.items():
        for seed, acc in enumerate(values, 1):
            write(tmp_path / exp / f"seed{seed}", train_log(acc))
    _, out, _ = run_main(capsys, tmp_path, "--multi-exp")
    expected = []
    for exp, values in exps.items():
        named = {f"seed{i}": v for i, v in enumerate(values, 1)}
        expected += summary_lines(tmp_path / exp, "accuracy", named, np.std(values))
    mean_of_means = np.mean([np.mean(v) for v in exps.values()])
    assert out == expected + ["Average performance", f"* accuracy: {mean_of_means:.2f}%"]
    assert f"{mean_of_means:.2f}" != f"{np.mean(sum(exps.values(), [])):.2f}"


def test_missing_log_names_the_folder(capsys, tmp_path):
    write(tmp_path / "seed1", train_log(80.0))
    (tmp_path / "seed2").mkdir()
    code, _, err = run_main(capsys, tmp_path)
    assert code == 1
    assert f"no log.txt in {tmp_path}/seed2: is this a seed folder of a finished run?" in err


@pytest.mark.parametrize("flags,hint", [
    ((), "For eval-only (test) logs pass --test-log"),
    (("--test-log",), "did the run finish"),
])
def test_nothing_found_message(capsys, tmp_path, flags, hint):
    write(tmp_path / "seed1", eval_log(70.0) if not flags else unfinished_log())
    code, _, err = run_main(capsys, tmp_path, *flags)
    assert code == 1
    assert err.startswith(f"parse_test_res.py: error: Nothing found in {tmp_path}")
    assert hint in err


def test_summary_options_are_rejected_without_a_summary_mode(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse_test_res.main([str(tmp_path), "--csv", str(tmp_path / "x.csv")])
    assert exc.value.code == 2
    assert "--base2new or --xd" in capsys.readouterr().err


# ---------------------------------------------------------------- base-to-novel mode


def b2n_run(root: Path, phase: str, dataset: str, seed: int, acc: float,
            trainer: str = "CoOp", cfg: str = "vit_b16_ep50", shots: int = 16) -> None:
    log = train_log(acc, val_acc=5.0) if phase == "train_base" else eval_log(acc)
    write(root / phase / dataset / f"shots_{shots}" / trainer / cfg / f"seed{seed}", log)


def b2n_tree(root: Path, numbers: dict[str, tuple[list[float], list[float]]], **kw) -> None:
    for dataset, (base, new) in numbers.items():
        for seed, acc in enumerate(base, 1):
            b2n_run(root, "train_base", dataset, seed, acc, **kw)
        for seed, acc in enumerate(new, 1):
            b2n_run(root, "test_new", dataset, seed, acc, **kw)


def hm(b: float, n: float) -> float:
    return 2 * b * n / (b + n)


def markdown_rows(out: list[str]) -> list[list[str]]:
    """Cells of the data rows of the github tables in ``out``."""
    rows = [line for line in out if line.startswith("|") and not line.startswith("|--")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows
            if not line.startswith("| Dataset")]


def expected_b2n_rows(numbers: dict) -> tuple[list[list[str]], tuple[float, float, float]]:
    rows, bs, ns = [], [], []
    for dataset, (base, new) in numbers.items():
        b, n = np.mean(base), np.mean(new)
        bs.append(b), ns.append(n)
        rows.append([dataset, f"{len(base)}/{len(new)}", f"{b:.2f}", f"{n:.2f}", f"{hm(b, n):.2f}"])
    return rows, (np.mean(bs), np.mean(ns), hm(np.mean(bs), np.mean(ns)))


# Very unbalanced datasets so that the mean of per-dataset H differs from H of the means.
UNBALANCED = {
    "imagenet": ([72.4, 72.5, 72.0], [68.1, 67.9, 68.4]),
    "oxford_pets": ([95.4, 94.9, 95.1], [97.7, 97.2, 97.5]),
    "eurosat": ([92.2, 90.1, 93.0], [54.7, 60.1, 48.3]),
}


def test_base2new_table_values_and_average_is_hm_of_means(capsys, tmp_path):
    b2n_tree(tmp_path, UNBALANCED)
    code, out, _ = run_main(capsys, tmp_path, "--base2new")
    rows, (b, n, h) = expected_b2n_rows(UNBALANCED)
    mean_of_h = np.mean([hm(np.mean(x), np.mean(y)) for x, y in UNBALANCED.values()])
    assert code == 0
    assert out[0] == f"Base-to-novel: CoOp / vit_b16_ep50, 16 shots ({tmp_path})"
    assert markdown_rows(out) == rows + [
        ["Average (3 of 11 datasets)", "", f"{b:.2f}", f"{n:.2f}", f"{h:.2f}"]]
    assert abs(h - mean_of_h) > 0.1


def test_base2new_all_eleven_datasets_is_labelled_average(capsys, tmp_path):
    numbers = {d: ([70.0 + i], [60.0 + 2 * i]) for i, d in enumerate(reversed(PAPER))}
    b2n_tree(tmp_path, numbers)
    _, out, _ = run_main(capsys, tmp_path, "--base2new")
    table = markdown_rows(out)
    assert [row[0] for row in table] == [*PAPER, "Average"]
    assert table[-1][2] == f"{np.mean([v[0][0] for v in numbers.values()]):.2f}"


def test_base2new_orders_unknown_datasets_last_alphabetically(capsys, tmp_path):
    numbers = {d: ([80.0], [70.0]) for d in ("zoo", "dtd", "custom", "caltech101")}
    b2n_tree(tmp_path, numbers)
    _, out, _ = run_main(capsys, tmp_path, "--base2new")
    assert [row[0] for row in markdown_rows(out)] == [
        "caltech101", "dtd", "custom", "zoo", "Average (4 datasets)"]


def test_base2new_missing_new_is_dashed_and_left_out_of_average(capsys, tmp_path):
    b2n_tree(tmp_path, UNBALANCED)
    b2n_tree(tmp_path, {"dtd": ([80.0, 81.0], [])})
    _, out, _ = run_main(capsys, tmp_path, "--base2new")
    rows, (b, n, h) = expected_b2n_rows(UNBALANCED)
    table = markdown_rows(out)
    assert table[2] == ["dtd", "2/0", "80.50", "-", "-"]  # paper order: before eurosat
    assert table[:2] + table[3:4] == rows
    assert table[-1] == ["Average (3 of 11 datasets)", "", f"{b:.2f}", f"{n:.2f}", f"{h:.2f}"]
    assert "Note: dtd: no test_new results, so no New/HM; not in the average" in out


def test_base2new_seed_mismatch_is_reported_and_paired(capsys, tmp_path):
    b2n_tree(tmp_path, {"dtd": ([80.0, 82.0, 90.0], [60.0, 62.0])})
    _, out, _ = run_main(capsys, tmp_path, "--base2new")
    assert markdown_rows(out)[0] == ["dtd", "3/2", "81.00", "61.00", f"{hm(81.0, 61.0):.2f}"]
    assert ("Note: dtd: seed(s) 3 only in train_base; B and N are averaged over seed(s) 1, 2 "
            "(present in both)") in out


def test_base2new_unfinished_seed_is_an_error_unless_allow_partial(capsys, tmp_path):
    b2n_tree(tmp_path, {"dtd": ([80.0, 82.0], [60.0, 62.0])})
    seed3 = tmp_path / "train_base/dtd/shots_16/CoOp/vit_b16_ep50/seed3"
    write(seed3, unfinished_log())
    code, out, err = run_main(capsys, tmp_path, "--base2new")
    assert (code, out) == (1, []) and f"{seed3}/log.txt: no 'Finish training'" in err
    code, out, err = run_main(capsys, tmp_path, "--base2new", "--allow-partial")
    assert code == 0 and f"{seed3}/log.txt: no 'Finish training'" in err
    assert "Warning: 1 of 5 expected seed runs" in err
    assert markdown_rows(out)[0][:3] == ["dtd", "2/2", "81.00"]


def test_base2new_filters_and_groups_by_trainer_and_cfg(capsys, tmp_path):
    b2n_tree(tmp_path, {"dtd": ([80.0], [60.0])}, trainer="CoOp")
    b2n_tree(tmp_path, {"dtd": ([70.0], [65.0])}, trainer="KgCoOp")
    b2n_tree(tmp_path, {"dtd": ([10.0], [10.0])}, trainer="KgCoOp", shots=4)
    _, out, _ = run_main(capsys, tmp_path, "--base2new")
    titles = [line for line in out if line.startswith("Base-to-novel")]
    assert titles == [f"Base-to-novel: {t} / vit_b16_ep50, 16 shots ({tmp_path})"
                      for t in ("CoOp", "KgCoOp")]
    _, out, _ = run_main(capsys, tmp_path, "--base2new", "--trainer", "KgCoOp", "--shots", "4")
    assert markdown_rows(out)[0] == ["dtd", "1/1", "10.00", "10.00", "10.00"]


def test_base2new_csv_has_the_printed_rows(capsys, tmp_path):
    b2n_tree(tmp_path / "out", UNBALANCED)
    target = tmp_path / "b2n.csv"
    _, out, _ = run_main(capsys, tmp_path / "out", "--base2new", "--csv", target)
    with open(target, newline="") as f:
        content = list(csv.reader(f))
    assert content[0] == ["trainer", "cfg", "shots", "Dataset", "Seeds (base/new)", "Base",
                          "New", "HM"]
    assert content[1:] == [["CoOp", "vit_b16_ep50", "16", *row] for row in markdown_rows(out)]


def test_base2new_nothing_found(capsys, tmp_path):
    b2n_tree(tmp_path, {"dtd": ([80.0], [60.0])})
    code, _, err = run_main(capsys, tmp_path, "--base2new", "--cfg", "other")
    assert code == 1
    assert f"Nothing found in {tmp_path}: expected <root>/train_base|test_new/" in err


def test_base2new_released_weights_read_base_from_test_base(capsys, tmp_path):
    for phase, acc in (("test_base", 80.0), ("test_new", 60.0)):
        write(tmp_path / phase / "dtd/shots_16/MaPLe/c/seed1", eval_log(acc))
    _, out, _ = run_main(capsys, tmp_path, "--base2new", "--base-dir", "test_base")
    assert markdown_rows(out)[0] == ["dtd", "1/1", "80.00", "60.00", f"{hm(80, 60):.2f}"]


# ---------------------------------------------------------------- cross-dataset / DG mode


def test_xd_means_per_target_and_averages_per_benchmark(capsys, tmp_path):
    numbers = {"imagenet": [71.0, 72.0], "dtd": [44.0, 46.0, 45.5], "eurosat": [40.0, 50.0],
               "imagenet_a": [50.0, 51.0], "imagenetv2": [64.0, 64.2]}
    for dataset, values in numbers.items():
        for seed, acc in enumerate(values, 1):
            write(tmp_path / "CoOp" / "vit_b16_16shots" / dataset / f"seed{seed}", eval_log(acc))
    target = tmp_path / "xd.csv"
    code, out, _ = run_main(capsys, tmp_path, "--xd", "--csv", target)

    def row(d):
        return [d, str(len(numbers[d])), f"{np.mean(numbers[d]):.2f}", f"{np.std(numbers[d]):.2f}"]

    def avg(names):
        return f"{np.mean([np.mean(numbers[d]) for d in names]):.2f}"

    expected = [row("imagenet"), row("dtd"), row("eurosat"),
                ["Average cross-dataset (2 of 10 targets)", "", avg(["dtd", "eurosat"]), ""],
                row("imagenetv2"), row("imagenet_a"),
                ["Average DG (2 of 4 targets)", "", avg(["imagenetv2", "imagenet_a"]), ""]]
    assert code == 0
    assert out[0] == f"Cross-dataset / DG: CoOp / vit_b16, 16 shots ({tmp_path})"
    assert markdown_rows(out) == expected
    with open(target, newline="") as f:
        assert list(csv.reader(f))[1:] == [["CoOp", "vit_b16", "16", *r] for r in expected]


def test_xd_full_dg_is_labelled_plainly(capsys, tmp_path):
    for dataset in parse_test_res.DG_TARGETS:
        write(tmp_path / "DAPT" / "c_16shots" / dataset / "seed1", eval_log(50.0))
    _, out, _ = run_main(capsys, tmp_path, "--xd")
    assert markdown_rows(out)[-1] == ["Average DG", "", "50.00", ""]


# ---------------------------------------------------------------- output plumbing


def test_plain_table_without_tabulate(monkeypatch):
    monkeypatch.setitem(sys.modules, "tabulate", None)
    text = parse_test_res.format_table([["dtd", "3/3", "80.00"], ["Average", "", "9.50"]],
                                       ["Dataset", "Seeds", "Base"])
    assert text.splitlines() == ["Dataset  Seeds   Base",
                                 "-------  -----  -----",
                                 "dtd        3/3  80.00",
                                 "Average          9.50"]


def test_runs_as_a_script(tmp_path):
    write(tmp_path / "seed1", train_log(81.0))
    script = [sys.executable, "parse_test_res.py"]
    ok = subprocess.run(script + [str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-2] == "* accuracy: 81.00% +- 0.00%"
    bad = subprocess.run(script + [str(tmp_path), "--test-log", "--keyword", "nope"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"Nothing found in {tmp_path}" in bad.stderr
