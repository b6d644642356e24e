"""Summarise the test results written to ``log.txt`` by ``train.py``.

Three modes, all reading the same ``* <keyword>: <value>%`` result lines:

* CoOp-compatible (default): mean and std over the seed folders of one experiment,
  byte-for-byte the output of the CoOp repository's ``parse_test_res.py``::

      python parse_test_res.py output/oxford_pets/CoOp/rn50_16shots [--ci95] [--test-log]
      python parse_test_res.py output/my_experiments --multi-exp

  Logs of ``--eval-only`` runs have no ``Finish training`` line: pass ``--test-log``.

* Base-to-novel summary (``--base2new``): one table per trainer/config over the layout
  ``<root>/{train_base,test_new}/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt``::

      python parse_test_res.py output/base2new --base2new [--trainer CoOp] [--cfg C] [--csv f.csv]

* Cross-dataset / domain generalisation summary (``--xd``) over
  ``<root>/<TRAINER>/<CFG>_<K>shots/<DATASET>/seed<S>/log.txt``::

      python parse_test_res.py output/evaluation --xd

In every mode each seed run that cannot be read (no ``log.txt``, an unfinished log, a log cut
inside its result block, an unreadable file; with ``--seeds 1 2 3`` also a missing
``seed<S>`` folder) is listed on stderr and the exit status is 1, so a mean over fewer seeds
is never printed silently; ``--allow-partial`` summarises the readable seeds instead, with a
warning that says how many.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

TRAIN_END_SIGNALS = ("Finish training", "Finished training")  # new Dassl, old Dassl
TEST_END_SIGNAL = "=> result"
PAPER_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
XD_SOURCE = "imagenet"
XD_TARGETS = PAPER_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
SEED_DIR = re.compile(r"seed(\d+)$")
B2N_HEADERS = ("Dataset", "Seeds (base/new)", "Base", "New", "HM")
XD_HEADERS = ("Dataset", "Seeds", "Accuracy", "Std")
MISSING = "-"

SeedResults = dict[int, float]


class ParseError(Exception):
    """A layout or log the parser cannot summarise; the message names the path and the fix."""


# ---------------------------------------------------------------- reading logs


def keyword_regex(keyword: str) -> re.Pattern:
    """The CoOp regex for one result line, e.g. ``* accuracy: 95.4%``."""
    return re.compile(rf"\* {keyword}: ([\.\deE+-]+)%")


def end_signals(test_log: bool) -> tuple[str, ...]:
    """Lines after which result lines count: the final test follows the end of training."""
    return (TEST_END_SIGNAL,) if test_log else TRAIN_END_SIGNALS


def read_result(fpath: Path | str, regex: re.Pattern, signals: Sequence[str]) -> float | None:
    """Return the last value matched after the first end-signal line, or None (upstream's
    lenient reader, kept for callers; the summaries use :func:`read_seed_log`).

    Lines are stripped and must *equal* a signal, as upstream, so ``=> result`` inside a
    longer line does not count.
    """
    started, value = False, None
    with open(fpath, "r") as f:
        for line in f:
            line = line.strip()
            started = started or line in signals
            match = regex.search(line)
            if match and started:
                value = float(match.group(1))
    return value


class UnreadableSeed(Exception):
    """One seed run whose result cannot be read; the message names the file and why."""


def read_seed_log(fpath: Path | str, keyword: str, signals: Sequence[str]) -> float:
    """The last ``* <keyword>: X%`` value after the first end-signal line (as upstream), or
    :class:`UnreadableSeed` saying why there is none.

    Lines are stripped and must *equal* a signal, as upstream, so ``=> result`` inside a
    longer line does not count. Why stricter than upstream, which skips such seeds silently:
    a missing, unreadable or cut log must never quietly drop a seed from a mean. A result
    block is the ``=> result`` line followed by the ``* <keyword>: X%`` line; a log cut
    between the two is unreadable, even when an earlier block of the same log has a value.
    """
    regex = keyword_regex(keyword)
    if not os.path.lexists(fpath):
        folder = os.path.dirname(str(fpath))
        raise UnreadableSeed(
            f"no log.txt in {folder}: is this a seed folder of a finished run? (rerun this "
            "seed, or move folders that are not runs elsewhere; for a folder of experiments "
            "pass --multi-exp)")
    started, value, open_block, saw_test_signal = False, None, None, False
    try:
        with open(fpath, "r", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                started = started or line in signals
                saw_test_signal = saw_test_signal or line == TEST_END_SIGNAL
                if started and line == TEST_END_SIGNAL:
                    open_block = number
                match = regex.search(line)
                if match and started:
                    try:
                        value = float(match.group(1))
                    except ValueError:
                        continue
                    open_block = None
    except UnicodeDecodeError as err:
        raise UnreadableSeed(
            f"{fpath}: cannot read it: not UTF-8 text (byte {err.object[err.start]:#04x} at "
            f"offset {err.start}); the file is damaged: rerun this seed") from None
    except OSError as err:
        raise UnreadableSeed(
            f"{fpath}: cannot read it: {err.strerror or err}; make it a readable log file "
            "(or rerun this seed)") from None
    if open_block is not None:
        raise UnreadableSeed(
            f"{fpath}: log cut mid-result: the '{TEST_END_SIGNAL}' block at line {open_block} "
            f"has no '* {keyword}: <v>%' line (interrupted run, or wrong --keyword?); rerun "
            "this seed")
    if value is None:
        after = " or ".join(f"'{s}'" for s in signals)
        if not started:
            hint = ("an eval-only log? pass --test-log" if saw_test_signal
                    else "unfinished run? finish or rerun this seed")
            raise UnreadableSeed(f"{fpath}: no {after} line ({hint})")
        raise UnreadableSeed(
            f"{fpath}: no result block ('{TEST_END_SIGNAL}' then '* {keyword}: <v>%') after "
            f"{after} (unfinished run? finish or rerun this seed)")
    return value


class SeedProblems:
    """Seed runs that were expected but could not be read, and how many were read.

    Why: a mean over fewer seeds than the user ran is a wrong number that looks right. Every
    such seed is reported on stderr; the summary is refused unless ``--allow-partial``.
    """

    def __init__(self, allow_partial: bool = False) -> None:
        self.allow_partial = allow_partial
        self.messages: dict[str, str] = {}  # seed folder -> why it was not read
        self.read = 0

    def add(self, folder: Path | str, message: str) -> None:
        self.messages.setdefault(str(folder), message)

    def expect(self, exp_dir: Path | str, seeds: Iterable[int] | None, present: Iterable[str],
               what: str = "") -> None:
        """Report the declared ``--seeds`` that have no ``seed<S>`` folder in ``exp_dir``."""
        for seed in sorted(set(seeds or ())):
            name = f"seed{seed}"
            if name not in present:
                folder = os.path.join(str(exp_dir), name)
                self.add(folder, f"no folder {folder} for seed {seed} of --seeds{what} "
                                 "(not run yet? run it, or drop it from --seeds)")

    def details(self) -> str:
        return "\n".join(f"  {message}" for message in self.messages.values())

    def settle(self, where: str) -> None:
        """Raise (or, with --allow-partial, warn on stderr) when some seed was not read."""
        if not self.messages or not self.read:
            return
        missing, total = len(self.messages), len(self.messages) + self.read
        head = f"{missing} of {total} expected seed runs in {where} could not be read"
        if not self.allow_partial:
            raise ParseError(
                f"{head}:\n{self.details()}\nFix: finish or rerun those seeds (or move folders "
                f"that are not runs elsewhere), or pass --allow-partial to summarise the "
                f"{self.read} readable seed run(s) only")
        print(f"Warning: {head}; --allow-partial: summarising the other {self.read} seed "
              f"run(s) only:\n{self.details()}", file=sys.stderr)

    def with_details(self, error: ParseError) -> ParseError:
        """``error`` followed by the list of unread seeds, if any."""
        if not self.messages:
            return error
        return ParseError(f"{error}\nSeed runs that could not be read:\n{self.details()}")


def list_subdirs(directory: Path | str) -> list[str]:
    """Sorted names of the non-hidden subdirectories (files are ignored)."""
    path = Path(directory)
    if not path.is_dir():
        raise ParseError(f"{directory} is not a directory: pass the folder holding the runs")
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---------------------------------------------------------------- CoOp-compatible mode


def compute_ci95(values: Sequence[float]) -> float:
    """Half-width of the normal 95% confidence interval of the mean (population std)."""
    return float(1.96 * np.std(values) / np.sqrt(len(values)))


def collect_results(
    directory: str, keyword: str, signals: Sequence[str], problems: SeedProblems,
    seeds: Sequence[int] | None = None,
) -> list[tuple[str, float]]:
    """(log path, value) for each seed folder of ``directory`` that holds a result; the
    others (and declared ``seeds`` without a folder) go to ``problems``."""
    results = []
    subdirs = list_subdirs(directory)
    if not subdirs and not seeds:
        problems.add(directory, f"{directory}: no seed folders (expected <seed folder>/log.txt)")
    for subdir in subdirs:
        fpath = os.path.join(directory, subdir, "log.txt")
        try:
            results.append((fpath, read_seed_log(fpath, keyword, signals)))
        except UnreadableSeed as err:
            problems.add(os.path.join(directory, subdir), str(err))
    problems.expect(directory, seeds, subdirs)
    problems.read += len(results)
    return results


def _nothing_found(directory: str, keyword: str, signals: Sequence[str]) -> ParseError:
    after = " or ".join(f"'{s}'" for s in signals)
    hint = (
        "did the run finish (its log ends with the '=> result' block)?"
        if signals == (TEST_END_SIGNAL,)
        else "did the run finish? For eval-only (test) logs pass --test-log"
    )
    return ParseError(
        f"Nothing found in {directory}: no '* {keyword}: <v>%' line after {after} "
        f"in any <subdir>/log.txt; {hint}"
    )


def print_summary(directory: str, keyword: str, results: list[tuple[str, float]],
                  ci95: bool) -> float:
    """Print the CoOp summary block for one experiment and return its mean."""
    print(f"Parsing files in {directory}")
    for fpath, value in results:
        print(f"file: {fpath}. {keyword}: {value:.2f}%. ")
    values = [value for _, value in results]
    mean = float(np.mean(values))
    spread = compute_ci95(values) if ci95 else float(np.std(values))
    print("===")
    print(f"Summary of directory: {directory}")
    print(f"* {keyword}: {mean:.2f}% +- {spread:.2f}%")
    print("===")
    return mean


def parse_function(directory: str, keyword: str, signals: Sequence[str], ci95: bool,
                   allow_partial: bool = False, seeds: Sequence[int] | None = None) -> float:
    """Print the CoOp summary block for one experiment and return its mean.

    Every seed folder that cannot be read is reported; without ``allow_partial`` that is an
    error (nothing is printed on stdout).
    """
    problems = SeedProblems(allow_partial)
    results = collect_results(directory, keyword, signals, problems, seeds)
    if not results:
        raise problems.with_details(_nothing_found(directory, keyword, signals))
    problems.settle(directory)
    return print_summary(directory, keyword, results, ci95)


def parse_multi_exp(directory: str, keyword: str, signals: Sequence[str], ci95: bool,
                    allow_partial: bool = False, seeds: Sequence[int] | None = None) -> float:
    """Summarise each experiment folder of ``directory``, then the mean of their means.

    All experiments are read before anything is printed, so an unreadable seed anywhere
    stops the whole summary (unless ``allow_partial``; experiments with no readable seed are
    then left out).
    """
    problems = SeedProblems(allow_partial)
    experiments = []
    for exp in list_subdirs(directory):
        exp_dir = os.path.join(directory, exp)
        results = collect_results(exp_dir, keyword, signals, problems, seeds)
        if results:
            experiments.append((exp_dir, results))
    if not experiments:
        raise problems.with_details(_nothing_found(directory, keyword, signals))
    problems.settle(directory)
    means = [print_summary(exp_dir, keyword, results, ci95) for exp_dir, results in experiments]
    average = float(np.mean(means))
    print("Average performance")
    print(f"* {keyword}: {average:.2f}%")
    return average


# ---------------------------------------------------------------- walking result trees


def read_seed_results(exp_dir: Path, keyword: str, signals: Sequence[str],
                      problems: SeedProblems, seeds: Sequence[int] | None = None) -> SeedResults:
    """Per-seed values of the ``seed<S>`` folders of one experiment folder; the seeds that
    cannot be read (and declared ``seeds`` without a folder) go to ``problems``."""
    results: SeedResults = {}
    names = list_subdirs(exp_dir)
    for name in names:
        match = SEED_DIR.match(name)
        if not match:
            continue
        try:
            results[int(match.group(1))] = read_seed_log(exp_dir / name / "log.txt", keyword,
                                                         signals)
        except UnreadableSeed as err:
            problems.add(exp_dir / name, str(err))
    problems.expect(exp_dir, seeds, names)
    problems.read += len(results)
    return results


def scan_tree(
    base: Path, pattern: str, keyword: str, signals: Sequence[str], problems: SeedProblems,
    keep=lambda parts: True, seeds: Sequence[int] | None = None,
) -> dict[tuple[str, ...], SeedResults]:
    """Per-seed results of each experiment folder matching ``pattern`` under ``base``.

    Keys are the folder's path parts relative to ``base``; hidden folders and folders for
    which ``keep(parts)`` is false (the --trainer/--cfg filters) are skipped unread.
    """
    found = {}
    for exp_dir in sorted(base.glob(pattern)):
        parts = exp_dir.relative_to(base).parts
        if not exp_dir.is_dir() or any(p.startswith(".") for p in parts) or not keep(parts):
            continue
        results = read_seed_results(exp_dir, keyword, signals, problems, seeds)
        if results:
            found[parts] = results
    return found


def dataset_order(name: str) -> tuple[int, int, str]:
    """Sort key: the papers' dataset order first, unknown datasets after, alphabetically."""
    known = PAPER_DATASETS + DG_TARGETS
    return (0, known.index(name), "") if name in known else (1, 0, name)


def average_label(prefix: str, names: Iterable[str], reference: Sequence[str], noun: str) -> str:
    """``prefix`` alone only when exactly the papers' set is averaged, so partial
    averages are never mistaken for published ones."""
    names = set(names)
    if names == set(reference):
        return prefix
    if names <= set(reference):
        return f"{prefix} ({len(names)} of {len(reference)} {noun})"
    return f"{prefix} ({len(names)} {noun})"


def fmt(value: float | None) -> str:
    """Two decimals, or the missing marker."""
    return MISSING if value is None else f"{value:.2f}"


def mean_or_none(values: Iterable[float]) -> float | None:
    """Mean, or None for no values (a phase with no finished seed)."""
    values = list(values)
    return float(np.mean(values)) if values else None


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N): the harmonic mean of the seed-averaged Base and New accuracies."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


# ---------------------------------------------------------------- base-to-novel mode


@dataclass(frozen=True)
class B2NDataset:
    """Base and new per-seed accuracies of one dataset.

    B and N are averaged over the seeds present in both phases, so each H pairs a
    checkpoint's base accuracy with the same checkpoint's new accuracy; when no seed is
    in both, each side is averaged alone and there is no H.
    """

    dataset: str
    base_seeds: SeedResults
    new_seeds: SeedResults

    @property
    def paired(self) -> list[int]:
        return sorted(self.base_seeds.keys() & self.new_seeds.keys())

    def _mean(self, seeds: SeedResults) -> float | None:
        keep = self.paired or list(seeds)
        return mean_or_none(seeds[s] for s in keep if s in seeds)

    @property
    def base(self) -> float | None:
        return self._mean(self.base_seeds)

    @property
    def new(self) -> float | None:
        return self._mean(self.new_seeds)

    @property
    def hm(self) -> float | None:
        if not self.paired:
            return None
        base, new = self.base, self.new
        # Paired seeds are in both phases, so both means are over at least one seed.
        assert base is not None and new is not None
        return harmonic_mean(base, new)

    def row(self) -> list[str]:
        seeds = f"{len(self.base_seeds)}/{len(self.new_seeds)}"
        return [self.dataset, seeds, fmt(self.base), fmt(self.new), fmt(self.hm)]


def seed_list(seeds: Iterable[int]) -> str:
    """``1, 2, 3`` for messages."""
    return ", ".join(str(s) for s in sorted(seeds))


def b2n_problem(entry: B2NDataset, base_dir: str) -> str | None:
    """Why ``entry`` is left out of the average or averaged over fewer seeds, if so."""
    base, new = set(entry.base_seeds), set(entry.new_seeds)
    if not new:
        return f"{entry.dataset}: no test_new results, so no New/HM; not in the average"
    if not base:
        return f"{entry.dataset}: no {base_dir} results, so no Base/HM; not in the average"
    if not entry.paired:
        return (f"{entry.dataset}: seeds {seed_list(base)} in {base_dir} but {seed_list(new)} "
                "in test_new: no seed in both, so no HM; not in the average")
    if base != new:
        extra = [f"seed(s) {seed_list(s)} only in {where}"
                 for s, where in ((base - new, base_dir), (new - base, "test_new")) if s]
        return (f"{entry.dataset}: {'; '.join(extra)}; B and N are averaged over seed(s) "
                f"{seed_list(entry.paired)} (present in both)")
    return None


def b2n_table(entries: list[B2NDataset]) -> list[list[str]]:
    """Per-dataset rows plus the Average row (H of the mean B and mean N, not mean of H)."""
    rows = [entry.row() for entry in entries]
    averaged = [entry for entry in entries if entry.hm is not None]
    if averaged:
        base = float(np.mean([e.base for e in averaged]))
        new = float(np.mean([e.new for e in averaged]))
        label = average_label("Average", [e.dataset for e in averaged], PAPER_DATASETS,
                              "datasets")
        rows.append([label, "", fmt(base), fmt(new), fmt(harmonic_mean(base, new))])
    return rows


def group_b2n(base: dict, new: dict, args: argparse.Namespace) -> dict:
    """{(trainer, cfg): [B2NDataset in paper order]} from two scan_tree results."""
    groups: dict[tuple[str, str], dict[str, list[SeedResults]]] = {}
    for side, found in enumerate((base, new)):
        for (dataset, _, trainer, cfg), seeds in found.items():
            if args.trainer in (None, trainer) and args.cfg in (None, cfg):
                slot = groups.setdefault((trainer, cfg), {}).setdefault(dataset, [{}, {}])
                slot[side] = seeds
    return {
        key: [B2NDataset(d, *datasets[d]) for d in sorted(datasets, key=dataset_order)]
        for key, datasets in sorted(groups.items())
    }


def summarize_base2new(args: argparse.Namespace) -> list[list[str]]:
    """Print one base-to-novel table per (trainer, cfg); return the rows for --csv."""
    root, problems = Path(args.directory), SeedProblems(args.allow_partial)
    pattern = f"*/shots_{args.shots}/*/*"

    def keep(parts: tuple[str, ...]) -> bool:
        return args.trainer in (None, parts[2]) and args.cfg in (None, parts[3])

    base_signals = end_signals(args.test_log or args.base_dir != "train_base")
    phases = (args.base_dir, "test_new")
    base, new = (scan_tree(root / phase, pattern, args.keyword, signals, problems, keep,
                           args.seeds)
                 for phase, signals in zip(phases, (base_signals, end_signals(True))))
    if args.seeds:  # a phase folder that is missing altogether misses all its seeds
        for phase in phases:
            for other in phases:
                for exp_dir in sorted((root / other).glob(pattern)):
                    parts = exp_dir.relative_to(root / other).parts
                    mine = root.joinpath(phase, *parts)
                    if exp_dir.is_dir() and keep(parts) and not mine.is_dir():
                        problems.expect(mine, args.seeds, (), f" (no folder {mine})")
    groups = group_b2n(base, new, args)
    if not groups:
        raise problems.with_details(ParseError(
            f"Nothing found in {args.directory}: expected <root>/{args.base_dir}|test_new/"
            f"<dataset>/shots_{args.shots}/<TRAINER>/<CFG>/seed<S>/log.txt with a result "
            "(check --shots, --trainer and --cfg)"))
    problems.settle(args.directory)
    csv_rows = []
    for (trainer, cfg), entries in groups.items():
        print(f"Base-to-novel: {trainer} / {cfg}, {args.shots} shots ({args.directory})")
        rows = b2n_table(entries)
        print(format_table(rows, B2N_HEADERS))
        for problem in filter(None, (b2n_problem(e, args.base_dir) for e in entries)):
            print(f"Note: {problem}")
        print()
        csv_rows += [[trainer, cfg, args.shots, *row] for row in rows]
    return csv_rows


# ---------------------------------------------------------------- cross-dataset / DG mode


def xd_row(dataset: str, seeds: SeedResults) -> list[str]:
    """Mean and population std over seeds, as for the CoOp summary."""
    values = list(seeds.values())
    return [dataset, str(len(values)), fmt(float(np.mean(values))), fmt(float(np.std(values)))]


def xd_table(datasets: dict[str, SeedResults]) -> list[list[str]]:
    """Rows per target, with one average per benchmark (cross-dataset, DG); the ImageNet
    source and unknown datasets are listed but averaged into neither."""
    unknown = sorted(set(datasets) - {XD_SOURCE, *XD_TARGETS, *DG_TARGETS})
    rows = []
    for prefix, members in (("", (XD_SOURCE,)), ("Average cross-dataset", XD_TARGETS),
                            ("Average DG", DG_TARGETS), ("", unknown)):
        present = [d for d in members if d in datasets]
        rows += [xd_row(d, datasets[d]) for d in present]
        if prefix and present:
            mean = float(np.mean([np.mean(list(datasets[d].values())) for d in present]))
            rows.append([average_label(prefix, present, members, "targets"), "", fmt(mean), ""])
    return rows


def summarize_xd(args: argparse.Namespace) -> list[list[str]]:
    """Print one cross-dataset/DG table per (trainer, cfg); return the rows for --csv."""
    suffix, problems = f"_{args.shots}shots", SeedProblems(args.allow_partial)

    def keep(parts: tuple[str, ...]) -> bool:
        return args.trainer in (None, parts[0]) and args.cfg in (None, parts[1][: -len(suffix)])

    found = scan_tree(Path(args.directory), f"*/*{suffix}/*", args.keyword, end_signals(True),
                      problems, keep, args.seeds)
    groups: dict[tuple[str, str], dict[str, SeedResults]] = {}
    for (trainer, cfg_dir, dataset), seeds in found.items():
        groups.setdefault((trainer, cfg_dir[: -len(suffix)]), {})[dataset] = seeds
    if not groups:
        raise problems.with_details(ParseError(
            f"Nothing found in {args.directory}: expected <root>/<TRAINER>/<CFG>{suffix}/"
            "<DATASET>/seed<S>/log.txt with a result (check --shots, --trainer and --cfg)"))
    problems.settle(args.directory)
    csv_rows = []
    for (trainer, cfg), datasets in sorted(groups.items()):
        print(f"Cross-dataset / DG: {trainer} / {cfg}, {args.shots} shots ({args.directory})")
        rows = xd_table(datasets)
        print(format_table(rows, XD_HEADERS))
        if XD_SOURCE in datasets:
            print(f"Note: {XD_SOURCE} is the source dataset; it is in no average")
        print()
        csv_rows += [[trainer, cfg, args.shots, *row] for row in rows]
    return csv_rows


# ---------------------------------------------------------------- output


def plain_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """tabulate's "simple" layout, for when tabulate is not installed."""
    table = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

    dashes = line(["-" * w for w in widths])
    return "\n".join([line(table[0]), dashes, *map(line, table[1:])])


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """A GitHub-markdown table (pastes into a README), or the plain layout without tabulate."""
    try:
        from tabulate import tabulate
    except ImportError:
        return plain_table(rows, headers)
    align = ("left",) + ("right",) * (len(headers) - 1)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=align)


def write_csv(path: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """The printed rows, prefixed with trainer, cfg and shots."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trainer", "cfg", "shots", *headers])
        writer.writerows(rows)
    print(f"Saved {len(rows)} rows to {path}")


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """CoOp's arguments unchanged, plus the summary modes and their filters."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=str, help="path to directory")
    parser.add_argument("--ci95", action="store_true", help=r"compute 95%% confidence interval")
    parser.add_argument("--test-log", action="store_true",
                        help="parse test-only logs (end signal '=> result')")
    parser.add_argument("--keyword", default="accuracy", type=str,
                        help="which keyword to extract: accuracy (default), error, macro_f1")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--multi-exp", action="store_true", help="parse multiple experiments")
    modes.add_argument("--base2new", action="store_true",
                       help="base-to-novel table over <dir>/{train_base,test_new}/...")
    modes.add_argument("--xd", action="store_true",
                       help="cross-dataset/DG table over <dir>/<TRAINER>/<CFG>_<K>shots/...")
    summary = parser.add_argument_group("--base2new / --xd options")
    summary.add_argument("--trainer", default=None, help="only this trainer")
    summary.add_argument("--cfg", default=None, help="only this config")
    summary.add_argument("--shots", type=int, default=16, help="shots (default 16)")
    summary.add_argument("--base-dir", default="train_base", choices=["train_base", "test_base"],
                         help="where base accuracy is read (test_base: released weights)")
    summary.add_argument("--csv", default=None, metavar="FILE", help="also write rows to FILE")
    seeds = parser.add_argument_group("incomplete runs (every mode)")
    seeds.add_argument("--allow-partial", action="store_true",
                       help="summarise the readable seeds when some seed run cannot be read "
                       "(no log.txt, unfinished or cut log, unreadable file); without it that "
                       "is an error (exit 1). Either way each such seed is listed on stderr")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                       help="the seeds every experiment must have (e.g. --seeds 1 2 3): a "
                       "missing seed<S> folder then counts as an unreadable seed")
    return parser


def run(args: argparse.Namespace) -> None:
    """Dispatch to the mode selected by the flags."""
    if args.base2new or args.xd:
        rows = summarize_base2new(args) if args.base2new else summarize_xd(args)
        if args.csv:
            write_csv(args.csv, B2N_HEADERS if args.base2new else XD_HEADERS, rows)
        return
    parse = parse_multi_exp if args.multi_exp else parse_function
    parse(args.directory, args.keyword, end_signals(args.test_log), args.ci95,
          args.allow_partial, args.seeds)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (1 with a message on stderr on failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.base2new or args.xd) and (args.csv or args.trainer or args.cfg):
        parser.error("--csv, --trainer and --cfg need --base2new or --xd")
    try:
        run(args)
    except ParseError as err:
        print(f"parse_test_res.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
