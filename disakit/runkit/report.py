"""The paper tables of a reproduction matrix, with the published numbers side by side.

Input: the jobs of the matrix (``runkit.jobs.Job``; ``out_dir`` is the seed folder holding the
job's ``log.txt``). Output, under ``<out_root>/report/``, for each setting reported
(``base2new``, ``xd``, ``dg``, ``fewshot``): ``<setting>.md``, ``<setting>.csv`` (one row per
cell, machine-readable), ``<setting>.tex`` (a LaTeX ``tabular``) and PNG figures
(``<setting>_<dataset>.png``: Base/New/HM bars per method for base-to-novel, accuracy against
shots per method for few-shot, as in the CoOp paper, published numbers dashed).

How each cell is computed (the papers' computations):

* A job's accuracy is read from its ``log.txt`` with ``parse_test_res.py``'s own reader: the
  ``* accuracy: X%`` line of the result block after ``Finish training`` for a training job
  (``base2new_train``, ``xd_train``, ``few_shot``: the final test) and after ``=> result`` for an
  evaluation job (``base2new_test``, ``xd_test``, ``dg_test``, ``zeroshot``), exactly as
  ``parse_test_res.py --base2new`` / ``--xd`` / ``--test-log`` read them.
* Seed cell: mean ± std over the matrix's seeds (population std, as ``parse_test_res.py``).
  Base is the ``base2new_train`` job's final test, New the ``base2new_test`` job; cross-dataset
  and DG: the ImageNet column is the ``xd_train`` job's final test (one ``xd_train`` job feeds
  both the ``xd`` and the ``dg`` table), the targets the ``xd_test`` / ``dg_test`` jobs;
  few-shot: the ``few_shot`` job per dataset and shots.
* HM = 2BN/(B+N) of the seed means of B and N (no std).
* Average rows: base-to-novel: mean Base and mean New over the datasets, and the H of those two
  means (not the mean of the per-dataset HMs); cross-dataset: mean over the targets (ImageNet,
  the source, excluded); DG: mean over the 4 ImageNet variants; few-shot: mean over the datasets
  per shots. The row is labelled as ``parse_test_res.py`` does ("Average (2 of 11 datasets)")
  when the matrix does not hold the papers' whole set, and is then not compared with the
  published average.
* A cell with a seed missing (no log, or a log with no result: an unfinished job) is *missing*,
  says which seeds, and is never averaged: the HM and the average over it are missing too.
  The notes under each table say why each seed is missing.
* Published numbers come from ``disakit/runkit/published_numbers.csv``
  (``runkit.published``), looked up by (trainer, setting, dataset, shots, metric); ``n/p``
  marks a setting the file marks as not public / not transcribed (the reason is in the notes),
  ``–`` no number at all.
  Δ = ours − published.

API: :func:`build_report` does it all; under it the pure steps :func:`collect_runs` (jobs ->
per-seed results), :func:`build_cells` (-> cells with HM, averages and published numbers),
:func:`setting_grid` (-> the table layout) and the renderers :func:`render_markdown`,
:func:`render_csv`, :func:`render_latex`, :func:`render_figures`.
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from disakit.runkit.jobs import ROOT, Job
from disakit.runkit.published import Published, load_published, unavailable

if str(ROOT) not in sys.path:  # parse_test_res.py lives at the repository root
    sys.path.insert(0, str(ROOT))
import parse_test_res as ptr  # noqa: E402

SETTINGS = ("base2new", "xd", "dg", "fewshot")
TITLES = {"base2new": "Base-to-novel generalisation", "xd": "Cross-dataset transfer",
          "dg": "Domain generalisation", "fewshot": "Few-shot learning"}
AVERAGE = "average"
B2N_METRICS = ("base", "new", "hm")
METRIC_LABELS = {"base": "Base", "new": "New", "hm": "HM", "acc": "Acc."}
XD_SOURCE = ptr.XD_SOURCE
PRETTY = {"imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
          "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
          "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
          "ucf101": "UCF101", "imagenetv2": "ImageNet-V2", "imagenet_sketch": "ImageNet-Sketch",
          "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R"}
# Which datasets a setting's published average is over, and what the label calls them.
AVERAGE_OVER = {"base2new": (ptr.PAPER_DATASETS, "datasets"), "xd": (ptr.XD_TARGETS, "targets"),
                "dg": (ptr.DG_TARGETS, "targets"), "fewshot": (ptr.PAPER_DATASETS, "datasets")}
CSV_COLUMNS = ("setting", "method", "dataset", "label", "shots", "metric", "mean", "std",
               "seeds", "missing", "published", "diff", "published_source")
MISSING_TEXT = "missing"
NO_PUBLISHED = "–"
NOT_PUBLIC = "n/p"

CellKey = tuple[str, str, int, str]  # (method, dataset, shots, metric)


class ReportError(ValueError):
    """A matrix the report cannot lay out (e.g. two jobs claiming the same cell and seed)."""


# ---------------------------------------------------------------- reading the jobs


@dataclass(frozen=True)
class SeedRun:
    """One seed of one cell: its log and value, or why there is no value."""

    seed: int
    log: Path
    value: float | None
    problem: str = ""


def read_log(log: Path, keyword: str, test_log: bool) -> tuple[float | None, str]:
    """(value, "") or (None, why) for one ``log.txt``, with ``parse_test_res.py``'s reader."""
    signals = ptr.end_signals(test_log)
    if hasattr(ptr, "read_seed_log"):  # the reader that says why a seed cannot be read
        try:
            return ptr.read_seed_log(log, keyword, signals), ""
        except ptr.UnreadableSeed as err:
            return None, str(err)
    if not log.is_file():
        return None, f"no {log} (job not run yet)"
    value = ptr.read_result(log, ptr.keyword_regex(keyword), signals)
    if value is None:
        after = " or ".join(f"'{s}'" for s in signals)
        return None, f"{log}: no '* {keyword}: <v>%' line after {after} (unfinished job?)"
    return value, ""


def job_targets(job: Job) -> list[tuple[str, str, int, str, bool]]:
    """The cells a job fills: [(setting, dataset, shots, metric, is_test_log)]."""
    phase, data, shots = job.phase, job.dataset, job.shots
    if phase == "base2new_train":
        return [("base2new", data, shots, "base", False)]
    if phase == "base2new_test":
        return [("base2new", data, shots, "new", True)]
    if phase == "xd_train":  # the ImageNet source column of both tables
        return [("xd", data, shots, "acc", False), ("dg", data, shots, "acc", False)]
    if phase == "xd_test":
        return [("xd", data, shots, "acc", True)]
    if phase == "dg_test":
        return [("dg", data, shots, "acc", True)]
    if phase == "few_shot":
        return [("fewshot", data, shots, "acc", False)]
    if phase == "zeroshot":  # zero-shot CLIP: positional (DATASET, [all|base|new])
        subsample = job.positional[1] if len(job.positional) > 1 else "all"
        if job.setting == "base2new":
            return [("base2new", data, shots, subsample, True)] if subsample in B2N_METRICS else []
        if job.setting == "fewshot":
            return [("fewshot", data, 0, "acc", True)]
        return [(job.setting, data, shots, "acc", True)]
    raise ReportError(f"job {job.key}: phase {phase!r} has no place in a paper table")


def method_name(job: Job) -> str:
    """The row label of a job: its trainer."""
    return job.trainer


def collect_runs(jobs: Iterable[Job], settings: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None, keyword: str = "accuracy",
                 method_of: Callable[[Job], str] = method_name,
                 ) -> dict[str, dict[CellKey, dict[int, SeedRun]]]:
    """{setting: {(method, dataset, shots, metric): {seed: SeedRun}}} for the matrix.

    ``settings`` defaults to the settings of the jobs; ``methods`` (default: all) keeps only
    those methods (:func:`build_cells` orders them). Each log is read once.
    """
    jobs = list(jobs)
    wanted = set(settings) if settings is not None else {job.setting for job in jobs}
    unknown = wanted - set(SETTINGS)
    if unknown:
        raise ReportError(f"unknown setting(s) {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    runs: dict[str, dict[CellKey, dict[int, SeedRun]]] = {s: {} for s in SETTINGS if s in wanted}
    cache: dict[tuple[Path, bool], tuple[float | None, str]] = {}
    for job in jobs:
        method = method_of(job)
        if methods is not None and method not in methods:
            continue
        for setting, dataset, shots, metric, test_log in job_targets(job):
            if setting not in runs:
                continue
            log = Path(job.out_dir) / "log.txt"
            if (log, test_log) not in cache:
                cache[(log, test_log)] = read_log(log, keyword, test_log)
            value, problem = cache[(log, test_log)]
            seeds = runs[setting].setdefault((method, dataset, shots, metric), {})
            previous = seeds.get(job.seed)
            if previous is not None and previous.log != log:
                raise ReportError(
                    f"two jobs fill {setting} {method} {dataset} {metric} ({shots} shots) seed "
                    f"{job.seed}: {previous.log} and {log}; give the variants method names of "
                    "their own (method_of)")
            seeds[job.seed] = SeedRun(job.seed, log, value, problem)
    return runs


# ---------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One number of a paper table: ours (or missing), and the published one.

    ``kind`` is ``seeds`` (mean ± std over seeds), ``hm`` (H of the seed means) or ``average``.
    ``missing`` names what is missing ("seed 2", a dataset, "no job"); a cell with anything
    missing has no ``mean``.
    """

    setting: str
    method: str
    dataset: str
    shots: int
    metric: str
    mean: float | None
    std: float | None = None
    seeds: tuple[int, ...] = ()
    missing: tuple[str, ...] = ()
    kind: str = "seeds"
    label: str = ""
    published: float | None = None
    source: str = ""            # the published number's source, or why there is none
    not_public: bool = False

    @property
    def complete(self) -> bool:
        return self.mean is not None

    @property
    def diff(self) -> float | None:
        if self.mean is None or self.published is None:
            return None
        return self.mean - self.published

    def text(self) -> str:
        """``76.47 ± 0.12`` (seed cells), ``73.10`` (HM, averages), or ``missing (seed 2)``."""
        if self.mean is None:
            return f"{MISSING_TEXT} ({', '.join(self.missing)})" if self.missing else MISSING_TEXT
        if self.std is not None:
            return f"{self.mean:.2f} ± {self.std:.2f}"
        return f"{self.mean:.2f}"

    def published_text(self) -> str:
        if self.published is not None:
            return f"{self.published:.2f}"
        return NOT_PUBLIC if self.not_public else NO_PUBLISHED

    def diff_text(self) -> str:
        diff = self.diff
        return "" if diff is None else f"{diff:+.2f}"


def seed_label(seeds: Iterable[int]) -> tuple[str, ...]:
    return tuple(f"seed {s}" for s in sorted(seeds))


def seed_cell(setting: str, key: CellKey, runs: Mapping[int, SeedRun]) -> Cell:
    """Mean ± population std over the seeds, or missing when a seed has no value."""
    method, dataset, shots, metric = key
    missing = [s for s, run in runs.items() if run.value is None]
    present = sorted(s for s, run in runs.items() if run.value is not None)
    values = [v for v in (runs[s].value for s in present) if v is not None]
    if missing or not values:
        return Cell(setting, method, dataset, shots, metric, None, seeds=tuple(present),
                    missing=seed_label(missing) or ("no job",))
    return Cell(setting, method, dataset, shots, metric, float(np.mean(values)),
                float(np.std(values)), tuple(present))


def absent_cell(setting: str, key: CellKey) -> Cell:
    """A cell the matrix has for another method (or metric) but not for this one."""
    method, dataset, shots, metric = key
    return Cell(setting, method, dataset, shots, metric, None, missing=("no job",))


def hm_cell(base: Cell, new: Cell) -> Cell:
    """H = 2BN/(B+N) of the seed means; missing when B or N is."""
    args = (base.setting, base.method, base.dataset, base.shots, "hm")
    if base.mean is None or new.mean is None:  # not (base.complete and new.complete)
        missing = sorted(set(base.missing) | set(new.missing),
                         key=lambda m: (not m.startswith("seed"), m))
        return Cell(*args, None, missing=tuple(missing), kind="hm")
    return Cell(*args, ptr.harmonic_mean(base.mean, new.mean),
                seeds=tuple(sorted(set(base.seeds) & set(new.seeds))), kind="hm")


def average_cell(setting: str, method: str, shots: int, metric: str, cells: Sequence[Cell],
                 label: str) -> Cell:
    """Plain mean of the cells' means; missing (naming the datasets) when any cell is."""
    args = (setting, method, AVERAGE, shots, metric)
    gaps = [c.dataset for c in cells if not c.complete]
    if gaps or not cells:
        return Cell(*args, None, missing=tuple(gaps) or ("no dataset",), kind="average",
                    label=label)
    return Cell(*args, float(np.mean([c.mean for c in cells])), kind="average", label=label)


def with_published(cell: Cell, published: Mapping, not_public: Mapping,
                   published_name: Callable[[str], str], comparable: bool = True) -> Cell:
    """The cell with its published number (or the reason there is none) filled in."""
    name = published_name(cell.method)
    entry = published.get((name, cell.setting, cell.dataset, cell.shots, cell.metric))
    if entry is not None and comparable:
        value, source = ((entry.value, entry.source) if isinstance(entry, Published)
                         else (float(entry), ""))
        return replace(cell, published=value, source=source)
    reason = not_public.get((name, cell.setting))
    if reason:
        return replace(cell, source=reason, not_public=True)
    if entry is not None:
        return replace(cell, source="published average is over the papers' whole set only")
    return cell


@dataclass
class SettingCells:
    """The cells of one setting, in table order, and the notes about missing seeds."""

    setting: str
    methods: list[str]
    datasets: list[str]                     # per-dataset columns/rows, paper order
    shots: list[int]
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    average_label: str = ""
    notes: list[str] = field(default_factory=list)

    def get(self, method: str, dataset: str, shots: int, metric: str) -> Cell | None:
        return self.cells.get((method, dataset, shots, metric))


def _ordered(names: Iterable[str], order: Sequence[str] | None) -> list[str]:
    names = list(dict.fromkeys(names))
    if order is None:
        return names
    return [m for m in order if m in names]


def build_cells(runs: Mapping[str, Mapping[CellKey, Mapping[int, SeedRun]]],
                published: Mapping | None = None, not_public: Mapping | None = None,
                methods: Sequence[str] | None = None,
                published_name: Callable[[str], str] = lambda m: m,
                ) -> dict[str, SettingCells]:
    """Seed cells, HM cells and averages for each setting of :func:`collect_runs`' output.

    ``published`` maps (method, setting, dataset, shots, metric) to a number (default: the
    project's file), ``not_public`` (method, setting) to a reason; ``published_name`` maps a
    row label to the published file's method name.
    """
    published = load_published() if published is None else published
    not_public = unavailable() if not_public is None else not_public
    out = {}
    for setting, grid in runs.items():
        order = _ordered((k[0] for k in grid), methods)
        datasets = sorted({k[1] for k in grid} - {AVERAGE}, key=ptr.dataset_order)
        shots_list = sorted({k[2] for k in grid})
        sc = SettingCells(setting, order, datasets, shots_list)
        metrics = ("base", "new") if setting == "base2new" else ("acc",)
        for method in order:
            for shots in shots_list:
                for dataset in datasets:
                    for metric in metrics:
                        key = (method, dataset, shots, metric)
                        if key in grid:
                            sc.cells[key] = seed_cell(setting, key, grid[key])
                        elif any(k[1:] == key[1:] for k in grid):  # another method has it
                            sc.cells[key] = absent_cell(setting, key)
                    if setting == "base2new":
                        _add_hm(sc, (method, dataset, shots))
            _add_averages(sc, method)
        for key, cell in list(sc.cells.items()):
            comparable = cell.kind != "average" or cell.label == "Average"
            sc.cells[key] = with_published(cell, published, not_public, published_name,
                                           comparable)
        sc.notes = _missing_notes(setting, grid, order)
        out[setting] = sc
    return out


def _add_hm(sc: SettingCells, where: tuple[str, str, int]) -> None:
    """The HM cell of (method, dataset, shots), with an absent Base or New cell filled in."""
    sides = [sc.cells.get((*where, m)) for m in ("base", "new")]
    if not any(sides):
        return
    base, new = (cell or absent_cell(sc.setting, (*where, m))
                 for cell, m in zip(sides, ("base", "new")))
    sc.cells[(*where, "base")], sc.cells[(*where, "new")] = base, new
    sc.cells[(*where, "hm")] = hm_cell(base, new)


def _average_members(sc: SettingCells) -> list[str]:
    if sc.setting in ("xd", "dg"):
        return [d for d in sc.datasets if d != XD_SOURCE]
    return list(sc.datasets)


def _add_averages(sc: SettingCells, method: str) -> None:
    members = _average_members(sc)
    if not members:
        return
    reference, noun = AVERAGE_OVER[sc.setting]
    label = ptr.average_label("Average", members, reference, noun)
    sc.average_label = label
    for shots in sc.shots:
        if sc.setting == "base2new":
            parts = {}
            for metric in ("base", "new"):
                found = [sc.cells.get((method, d, shots, metric)) for d in members]
                if all(c is None for c in found):
                    break
                cells = [c or absent_cell(sc.setting, (method, d, shots, metric))
                         for c, d in zip(found, members)]
                parts[metric] = average_cell(sc.setting, method, shots, metric, cells, label)
            if len(parts) == 2:
                sc.cells[(method, AVERAGE, shots, "base")] = parts["base"]
                sc.cells[(method, AVERAGE, shots, "new")] = parts["new"]
                hm = hm_cell(parts["base"], parts["new"])
                sc.cells[(method, AVERAGE, shots, "hm")] = replace(hm, kind="average",
                                                                    label=label)
        else:
            found = [sc.cells.get((method, d, shots, "acc")) for d in members]
            if all(c is None for c in found):
                continue
            cells = [c or absent_cell(sc.setting, (method, d, shots, "acc"))
                     for c, d in zip(found, members)]
            sc.cells[(method, AVERAGE, shots, "acc")] = average_cell(
                sc.setting, method, shots, "acc", cells, label)


def _missing_notes(setting: str, grid: Mapping[CellKey, Mapping[int, SeedRun]],
                   methods: Sequence[str]) -> list[str]:
    notes = []
    for (method, dataset, shots, metric), seeds in sorted(
            grid.items(), key=lambda kv: (methods.index(kv[0][0]) if kv[0][0] in methods
                                          else len(methods), ptr.dataset_order(kv[0][1]),
                                          kv[0][2], kv[0][3])):
        for seed, run in sorted(seeds.items()):
            if run.value is None:
                where = f"{method} / {dataset} / {METRIC_LABELS.get(metric, metric)}"
                if setting == "fewshot":
                    where += f" / {shots} shots"
                notes.append(f"{where}: seed {seed} missing: {run.problem}")
    return notes


# ---------------------------------------------------------------- table layout


@dataclass
class Grid:
    """A paper table: row labels × columns of cells.

    ``layout`` ``columns``: each column shows ours | published | Δ side by side (base-to-novel);
    ``lines``: each row is followed by a "published" line and a "Δ" line (wide tables).
    """

    setting: str
    title: str
    label_headers: list[str]
    columns: list[str]
    rows: list[tuple[list[str], list[Cell | None]]]
    layout: str = "lines"
    groups: list[int] = field(default_factory=list)   # row indices that start a new group


def pretty(dataset: str, sc: SettingCells | None = None) -> str:
    if dataset == AVERAGE:
        return sc.average_label if sc is not None and sc.average_label else "Average"
    return PRETTY.get(dataset, dataset)


def setting_grid(sc: SettingCells) -> Grid:
    """The layout of the papers: base-to-novel rows dataset × method, columns Base/New/HM;
    cross-dataset / DG rows method, columns ImageNet (source), the targets and the average;
    few-shot rows dataset × method, columns shots."""
    title = TITLES[sc.setting]
    rows: list[tuple[list[str], list[Cell | None]]] = []
    groups = []
    has_average = any(k[1] == AVERAGE for k in sc.cells)
    datasets = sc.datasets + ([AVERAGE] if has_average else [])
    if sc.setting == "base2new":
        shots = sc.shots[0] if len(sc.shots) == 1 else None
        for dataset in datasets:
            groups.append(len(rows))
            for method in sc.methods:
                for s in sc.shots:
                    label = method if shots is not None else f"{method} ({s} shots)"
                    cells = [sc.get(method, dataset, s, m) for m in B2N_METRICS]
                    if any(cells):
                        rows.append(([pretty(dataset, sc), label], cells))
        return Grid(sc.setting, title, ["Dataset", "Method"],
                    [METRIC_LABELS[m] for m in B2N_METRICS], rows, "columns", groups)
    if sc.setting in ("xd", "dg"):
        columns = datasets
        for method in sc.methods:
            for s in sc.shots:
                cells = [sc.get(method, d, s, "acc") for d in columns]
                if any(cells):
                    label = method if len(sc.shots) == 1 else f"{method} ({s} shots)"
                    groups.append(len(rows))
                    rows.append(([label], cells))
        headers = [pretty(d, sc) + (" (source)" if d == XD_SOURCE else "") for d in columns]
        return Grid(sc.setting, title, ["Method"], headers, rows, "lines", groups)
    for dataset in datasets:
        groups.append(len(rows))
        for method in sc.methods:
            cells = [sc.get(method, dataset, s, "acc") for s in sc.shots]
            if any(cells):
                rows.append(([pretty(dataset, sc), method], cells))
    headers = [("1 shot" if s == 1 else f"{s} shots") if s else "0 (zero-shot)"
               for s in sc.shots]
    return Grid(sc.setting, title, ["Dataset", "Method"], headers, rows, "lines", groups)


def grid_lines(grid: Grid, escape: Callable[[str], str] = str,
               ) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, body rows, indices of group starts) with ours / published / Δ laid out."""
    if grid.layout == "columns":
        header = [*grid.label_headers]
        for column in grid.columns:
            header += [column, f"{column} (pub.)", "Δ"]
        body = []
        for labels, cells in grid.rows:
            line = [escape(x) for x in labels]
            for cell in cells:
                line += ([escape(cell.text()), escape(cell.published_text()),
                          escape(cell.diff_text())] if cell else ["", "", ""])
            body.append(line)
        return header, body, grid.groups
    header = [*grid.label_headers, "", *grid.columns]
    body, groups = [], []
    for index, (labels, cells) in enumerate(grid.rows):
        if index in grid.groups:
            groups.append(len(body))
        blank = [""] * (len(labels) - 1)
        body.append([*map(escape, labels), "ours",
                     *[escape(c.text()) if c else "" for c in cells]])
        body.append([*blank, escape(labels[-1]) if len(labels) > 1 else "", "published",
                     *[escape(c.published_text()) if c else "" for c in cells]])
        body.append([*blank, "", escape("Δ"),
                     *[escape(c.diff_text()) if c else "" for c in cells]])
    return header, body, groups


# ---------------------------------------------------------------- renderers


def _describe(sc: SettingCells, jobs_count: int | None) -> list[str]:
    seeds = sorted({s for c in sc.cells.values() for s in c.seeds}
                   | {int(m.split()[1]) for c in sc.cells.values() for m in c.missing
                      if m.startswith("seed ")})
    lines = [f"Methods: {', '.join(sc.methods)}; seeds: {', '.join(map(str, seeds)) or '-'}; "
             f"shots: {', '.join(map(str, sc.shots))}"
             + (f"; {jobs_count} jobs." if jobs_count is not None else ".")]
    rule = {"base2new": "Base = final test of the train_base job, New = the test_new job; "
                        "HM = 2BN/(B+N) of the seed means. Average: mean Base, mean New, "
                        "and the HM of those two means (not the mean of the HMs).",
            "xd": "ImageNet (source) = final test of the xd_train job; targets = the xd_test "
                  "jobs; Average = mean over the targets (the source excluded).",
            "dg": "ImageNet (source) = final test of the xd_train job; targets = the dg_test "
                  "jobs; Average = mean over the ImageNet variants (the source excluded).",
            "fewshot": "Each cell = final test of the few_shot job; Average = mean over the "
                       "datasets for each shots."}[sc.setting]
    return lines + [
        "Cells: mean ± std over seeds (population std, as parse_test_res.py). " + rule,
        "A cell with a seed missing is shown as missing (with the seeds), and no HM or "
        "average is computed over it. Published numbers: disakit/runkit/published_numbers.csv; "
        f"Δ = ours − published; {NOT_PUBLIC} = not public (see notes), {NO_PUBLISHED} = none."]


def _source_notes(sc: SettingCells) -> list[str]:
    sources: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for cell in sc.cells.values():
        if cell.published is not None:
            sources.setdefault(cell.source, [])
            if cell.method not in sources[cell.source]:
                sources[cell.source].append(cell.method)
        elif cell.not_public:
            reasons[cell.method] = cell.source
    notes = [f"Published ({', '.join(methods)}): {source}" for source, methods in sources.items()]
    notes += [f"{method}: {NOT_PUBLIC}, {reason}" for method, reason in reasons.items()]
    return notes


def md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i < 2 or not header[i] else "---:" for i in range(len(header))]
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *map(line, body)])


def render_markdown(sc: SettingCells, jobs_count: int | None = None,
                    figures: Sequence[Path] = ()) -> str:
    grid = setting_grid(sc)
    header, body, _ = grid_lines(grid)
    parts = [f"# {grid.title}", "", *_describe(sc, jobs_count), "", md_table(header, body), ""]
    if sc.notes:
        parts += ["## Missing seeds", "", *[f"- {n}" for n in sc.notes], ""]
    sources = _source_notes(sc)
    if sources:
        parts += ["## Published numbers", "", *[f"- {n}" for n in sources], ""]
    if figures:
        parts += ["## Figures", "", *[f"![{p.stem}]({p.name})" for p in figures], ""]
    return "\n".join(parts)


def render_csv(sc: SettingCells) -> str:
    """One row per cell (long form): every number of the tables, machine-readable."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    grid = setting_grid(sc)
    seen = set()
    for _, cells in grid.rows:
        for cell in cells:
            if cell is None or id(cell) in seen:
                continue
            seen.add(id(cell))
            writer.writerow([
                cell.setting, cell.method, cell.dataset, cell.label or pretty(cell.dataset),
                cell.shots, cell.metric,
                "" if cell.mean is None else f"{cell.mean:.4f}",
                "" if cell.std is None else f"{cell.std:.4f}",
                " ".join(map(str, cell.seeds)), "; ".join(cell.missing),
                "" if cell.published is None else f"{cell.published:.2f}",
                "" if cell.diff is None else f"{cell.diff:.4f}", cell.source])
    return buffer.getvalue()


def tex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
             "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
             "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--",
             "−": "-"}
    return "".join(table.get(ch, ch) for ch in text)


def render_latex(sc: SettingCells) -> str:
    """A ``tabular`` (no packages needed); missing cells read ``missing (seed 2)``."""
    grid = setting_grid(sc)
    header, body, groups = grid_lines(grid, tex_escape)
    n_labels = len(grid.label_headers) + (0 if grid.layout == "columns" else 1)
    spec = "l" * n_labels + "r" * (len(header) - n_labels)
    lines = [f"% {grid.title}: generated by disakit/runkit/report.py",
             f"\\begin{{tabular}}{{{spec}}}", r"\hline",
             " & ".join(tex_escape(h) for h in header) + r" \\", r"\hline"]
    for index, row in enumerate(body):
        if index in groups and index:
            lines.append(r"\hline")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\hline", r"\end{tabular}", ""]
    return "\n".join(lines)


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def render_figures(sc: SettingCells, folder: Path) -> list[Path]:
    """PNG figures (Agg, no display): few-shot curves per dataset, base-to-novel bars per
    dataset; none for cross-dataset / DG. Published numbers are dashed lines / markers."""
    if sc.setting not in ("fewshot", "base2new"):
        return []
    folder.mkdir(parents=True, exist_ok=True)
    has_average = any(k[1] == AVERAGE for k in sc.cells)
    datasets = sc.datasets + ([AVERAGE] if has_average else [])
    paths = []
    for dataset in datasets:
        path = folder / f"{sc.setting}_{dataset}.png"
        fig = (_fewshot_figure(sc, dataset) if sc.setting == "fewshot"
               else _b2n_figure(sc, dataset))
        fig.savefig(path)
        paths.append(path)
    return paths


def _x_position(shots: int) -> float:
    return float(np.log2(shots)) if shots > 0 else -1.0


def _fewshot_figure(sc: SettingCells, dataset: str):
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i % 10}" for i in range(len(sc.methods))]
    for method, color in zip(sc.methods, colors):
        cells = [sc.get(method, dataset, s, "acc") for s in sc.shots]
        ours = [(c.shots, c.mean, c.std or 0.0) for c in cells if c is not None and c.complete]
        if ours:
            xs, ys, errs = zip(*ours)
            ax.errorbar([_x_position(x) for x in xs], ys, yerr=errs, color=color, marker="o",
                        linestyle="-", capsize=3, label=method)
        pub = [(c.shots, c.published) for c in cells if c is not None and c.published is not None]
        if pub:
            xs, ys = zip(*pub)
            ax.plot([_x_position(x) for x in xs], ys, color=color, marker="x", linestyle="--",
                    label=f"{method} (published)")
    ax.set_xticks([_x_position(s) for s in sc.shots])
    ax.set_xticklabels([str(s) for s in sc.shots])
    ax.set_xlabel("Number of labeled training examples per class")
    ax.set_ylabel("Score (%)")
    ax.set_title(pretty(dataset, sc))
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return fig


def _b2n_figure(sc: SettingCells, dataset: str):
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(B2N_METRICS)
    shots = sc.shots[0]
    published_labelled = False
    for j, metric in enumerate(B2N_METRICS):
        for i, method in enumerate(sc.methods):
            cell = sc.get(method, dataset, shots, metric)
            x = i + (j - 1) * width
            if cell is None:
                continue
            if cell.complete:
                ax.bar(x, cell.mean, width, color=f"C{j}")
            else:
                ax.text(x, 1, MISSING_TEXT, rotation=90, ha="center", va="bottom", fontsize=7)
            if cell.published is not None:
                ax.plot([x - width / 2, x + width / 2], [cell.published] * 2, color="black",
                        linestyle="--", linewidth=1.5)
                published_labelled = True
    ax.set_xticks(range(len(sc.methods)))
    ax.set_xticklabels(sc.methods, rotation=30, ha="right")
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{pretty(dataset, sc)}: Base / New / HM")
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Artist] = [Patch(color=f"C{j}", label=METRIC_LABELS[m])
                             for j, m in enumerate(B2N_METRICS)]
    if published_labelled:
        handles.append(Line2D([], [], color="black", linestyle="--", label="published"))
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=len(handles), frameon=False)
    return fig


# ---------------------------------------------------------------- all together


def build_report(jobs: Sequence[Job], out_root: Path | str, settings: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None, *, published: Mapping | None = None,
                 not_public: Mapping | None = None, keyword: str = "accuracy",
                 method_of: Callable[[Job], str] = method_name,
                 published_name: Callable[[str], str] = lambda m: m,
                 figures: bool = True) -> dict[str, list[Path]]:
    """Write ``<out_root>/report/<setting>.{md,csv,tex}`` and the PNG figures for each setting
    of ``jobs`` (or ``settings``), rows in the order of ``methods`` (default: the jobs' order).

    Returns {setting: [paths written]}. Unfinished jobs are fine: their cells read missing.
    """
    jobs = list(jobs)
    runs = collect_runs(jobs, settings, methods, keyword, method_of)
    cells = build_cells(runs, published, not_public, methods, published_name)
    folder = Path(out_root) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for setting in SETTINGS:
        if setting not in cells:
            continue
        sc = cells[setting]
        count = sum(1 for job in jobs if any(t[0] == setting for t in job_targets(job))
                    and (methods is None or method_of(job) in methods))
        pngs = render_figures(sc, folder) if figures else []
        paths = []
        for suffix, text in ((".md", render_markdown(sc, count, pngs)),
                             (".csv", render_csv(sc)), (".tex", render_latex(sc))):
            path = folder / f"{setting}{suffix}"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        written[setting] = paths + pngs
    return written


__all__ = ["build_report", "collect_runs", "build_cells", "setting_grid", "render_markdown",
           "render_csv", "render_latex", "render_figures", "Cell", "SeedRun", "SettingCells",
           "Grid", "ReportError"]
