"""Published reference numbers (``disakit/runkit/published_numbers.csv``) for the paper-table
report.

The CSV has one row per number, columns ``method, setting, dataset, shots, metric, value,
source``:

* ``method``: the trainer name when the toolkit has that method (``ZeroshotCLIP`` is CLIP with
  the hand-crafted template, ``CoOp``, ``CoCoOp``, ``KgCoOp``, ``MaPLe``, ``IVLP``, ``VPT``,
  ``PromptSRC``, ``TCP``, ...), so a report joins on the trainer; other published methods and
  variants under names of their own (``ProDA``, ``ProGrad``, ``MMA``, ``CoPrompt``,
  ``CoOp (KgCoOp reproduction)``, ``IVLP 2+2 (MaPLe)``, ...).
* ``setting``: ``base2new``, ``xd`` (cross-dataset), ``dg`` (domain generalisation) or
  ``fewshot``.
* ``dataset``: a ``configs/datasets/`` name (``imagenet``, ``imagenetv2``, ...), or
  ``average`` for the average row as the source publishes it (base-to-novel: mean Base, mean
  New and the H of those two means over the 11 datasets; cross-dataset: mean of the 10 targets;
  DG: mean of the 4 targets; the ImageNet source is in neither).
* ``shots``: 16 except for few-shot rows. ``metric``: ``base``, ``new`` or ``hm`` for
  ``base2new``; ``acc`` otherwise. ``value``: top-1 accuracy in %, as printed (2 decimals).
* ``source``: the paper table or official README the number comes from.

**Settings with no published number.** A row with empty ``dataset``, ``shots``, ``metric``
and ``value`` marks a (method, setting) whose numbers are not available, and its ``source``
says why, starting with ``not public:`` (none exist that apply: DiSa's tables could not be
obtained; the toolkit's DPL is a reconstruction; DAPT has no base-to-novel table) or
``not transcribed:`` (published, not yet copied into the file). :func:`unavailable` returns
them; :func:`load_published` only the numbers.

The per-dataset rows are transcriptions: :func:`consistency_problems` checks them (each H
equals 2BN/(B+N) to within 0.01, the per-dataset Base and New average to the published average,
the cross-dataset and DG targets average to the published average) and
``tests/test_report.py`` runs it on this file.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

CSV_PATH = Path(__file__).with_name("published_numbers.csv")
COLUMNS = ("method", "setting", "dataset", "shots", "metric", "value", "source")
SETTING_METRICS = {"base2new": ("base", "new", "hm"), "xd": ("acc",), "dg": ("acc",),
                   "fewshot": ("acc",)}
UNAVAILABLE_PREFIXES = ("not public:", "not transcribed:")
AVERAGE = "average"
B2N_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
                "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_TARGETS = B2N_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
TOLERANCE = 0.01  # the sources print 2 decimals and compute H and averages before rounding

Key = tuple[str, str, str, int, str]  # (method, setting, dataset, shots, metric)


class PublishedError(ValueError):
    """A malformed row of ``published_numbers.csv``; the message names the line."""


@dataclass(frozen=True)
class Published:
    """One published number and where it comes from."""

    value: float
    source: str


def _read_rows(path: Path | str | None) -> list[tuple[int, dict[str, str]]]:
    path = Path(path) if path is not None else CSV_PATH
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise PublishedError(f"{path}: header must be {','.join(COLUMNS)}, "
                                 f"got {reader.fieldnames}")
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items()})
                for row in reader]


def _check_row(where: str, row: dict[str, str]) -> None:
    if not row["method"]:
        raise PublishedError(f"{where}: empty method")
    if row["setting"] not in SETTING_METRICS:
        raise PublishedError(f"{where}: setting {row['setting']!r} is not one of "
                             f"{', '.join(SETTING_METRICS)}")
    if not row["source"]:
        raise PublishedError(f"{where}: every row needs a source")


def load_published(path: Path | str | None = None) -> dict[Key, Published]:
    """The published numbers keyed by (method, setting, dataset, shots, metric).

    Marker rows (see :func:`unavailable`) are skipped; a malformed row or a key given twice
    raises :class:`PublishedError`.
    """
    numbers: dict[Key, Published] = {}
    for line, row in _read_rows(path):
        where = f"{path or CSV_PATH}:{line}"
        _check_row(where, row)
        if not row["value"]:
            if not row["source"].startswith(UNAVAILABLE_PREFIXES):
                raise PublishedError(f"{where}: a row without a value marks a setting with no "
                                     f"published number; its source must start with "
                                     f"{' or '.join(UNAVAILABLE_PREFIXES)}")
            continue
        if row["metric"] not in SETTING_METRICS[row["setting"]]:
            raise PublishedError(f"{where}: metric {row['metric']!r} for {row['setting']} must "
                                 f"be one of {', '.join(SETTING_METRICS[row['setting']])}")
        if not row["dataset"]:
            raise PublishedError(f"{where}: empty dataset")
        try:
            key = (row["method"], row["setting"], row["dataset"], int(row["shots"]),
                   row["metric"])
            value = float(row["value"])
        except ValueError as err:
            raise PublishedError(f"{where}: {err}") from None
        if key in numbers:
            raise PublishedError(f"{where}: {key} is given twice")
        numbers[key] = Published(value, row["source"])
    return numbers


def published_values(path: Path | str | None = None) -> dict[Key, float]:
    """:func:`load_published` without the sources."""
    return {key: entry.value for key, entry in load_published(path).items()}


def unavailable(path: Path | str | None = None) -> dict[tuple[str, str], str]:
    """{(method, setting): reason} for the settings marked as having no published number."""
    marks: dict[tuple[str, str], str] = {}
    for line, row in _read_rows(path):
        if not row["value"]:
            _check_row(f"{path or CSV_PATH}:{line}", row)
            marks[(row["method"], row["setting"])] = row["source"]
    return marks


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N)."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def consistency_problems(numbers: dict[Key, Published] | dict[Key, float] | None = None,
                         tolerance: float = TOLERANCE) -> list[str]:
    """Rows that break the invariants of the sources' own computations, one message each.

    * every (method, dataset) with Base, New and H: H = 2BN/(B+N) (also for the averages);
    * a method with all 11 base-to-novel datasets: mean Base and mean New equal its average;
    * a method with all 10 cross-dataset (4 DG) targets: their mean equals its average.
    """
    if numbers is None:
        numbers = load_published()
    value = {k: (v.value if isinstance(v, Published) else float(v)) for k, v in numbers.items()}
    problems = []

    def off(got: float, want: float) -> bool:
        return abs(got - want) > tolerance + 1e-9

    groups = {(m, s, d, k) for (m, s, d, k, _) in value}
    for method, setting, dataset, shots in sorted(groups):
        if setting != "base2new":
            continue
        b, n, h = (value.get((method, setting, dataset, shots, x)) for x in ("base", "new", "hm"))
        if b is not None and n is not None and h is not None and off(harmonic_mean(b, n), h):
            problems.append(f"{method} {setting} {dataset}: H {h:.2f} but 2BN/(B+N) = "
                            f"{harmonic_mean(b, n):.2f} (B {b:.2f}, N {n:.2f})")
    methods = sorted({(m, s, k) for (m, s, _, k) in groups})
    for method, setting, shots in methods:
        members: tuple[str, ...]
        metrics: tuple[str, ...]
        if setting == "base2new":
            members, metrics = B2N_DATASETS, ("base", "new")
        elif setting in ("xd", "dg"):
            members, metrics = (XD_TARGETS if setting == "xd" else DG_TARGETS), ("acc",)
        else:
            continue
        for metric in metrics:
            found = [value.get((method, setting, d, shots, metric)) for d in members]
            average = value.get((method, setting, AVERAGE, shots, metric))
            if average is None or None in found:
                continue
            rows = [v for v in found if v is not None]
            mean = sum(rows) / len(rows)
            if off(mean, average):
                problems.append(f"{method} {setting} {metric}: the {len(rows)} datasets average "
                                f"to {mean:.3f}, the published average is {average:.2f}")
    return problems
