"""``Datum`` and ``DatasetBase`` (Dassl's ``dassl.data.datasets.base_dataset``).

Few-shot cache pickles store ``Datum`` objects by their attribute names (``_impath``,
``_label``, ``_domain``, ``_classname``); keep them unchanged so caches written by Dassl and by
this engine load in either.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from disakit.dasslite.utils import check_isfile

__all__ = ["Datum", "DatasetBase", "make_datum_unchecked"]


class Datum:
    """One labelled image: path, class label, domain label and class name.

    Why a class rather than a tuple: datasets, loaders and cache pickles all agree on these four
    read-only fields. The constructor checks that the image file exists (one ``stat`` per
    item, as in Dassl); use :meth:`from_fields` to skip that check for trusted bulk input.
    """

    def __init__(
        self, impath: str = "", label: int = 0, domain: int = 0, classname: str = ""
    ) -> None:
        assert isinstance(impath, str), f"Datum impath must be a str, got {type(impath)}"
        assert check_isfile(impath), f"Datum image file not found: {impath!r}"
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @classmethod
    def from_fields(
        cls, impath: str, label: int = 0, domain: int = 0, classname: str = ""
    ) -> "Datum":
        """Build a Datum WITHOUT checking that ``impath`` exists.

        Why: the fast path for loading trusted caches (e.g. the 1.28 M items of ImageNet's
        ``preprocessed.pkl`` or a split file already validated), where one ``stat`` per item
        costs minutes. The result is indistinguishable from ``Datum(...)``, pickles included.
        """
        datum = cls.__new__(cls)
        datum._impath = impath
        datum._label = label
        datum._domain = domain
        datum._classname = classname
        return datum

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, "
            f"domain={self._domain}, classname={self._classname!r})"
        )


def make_datum_unchecked(
    impath: str, label: int = 0, domain: int = 0, classname: str = ""
) -> Datum:
    """Module-level alias of :meth:`Datum.from_fields` (no file-existence check)."""
    return Datum.from_fields(impath, label, domain, classname)


# One source: its K-shot list, or the source itself when num_shots < 1; several sources: a list
# of K-shot lists, or the tuple of sources unchanged.
FewShotResult = Union[Sequence[Datum], List[List[Datum]], Tuple[Sequence[Datum], ...]]


class DatasetBase:
    """A dataset = lists of ``Datum`` for train_x (labelled), train_u, val and test.

    Why: every benchmark reader only has to produce these lists; the data manager, the
    trainers and the evaluator read the rest from here. ``num_classes``, ``lab2cname`` and
    ``classnames`` are derived from ``train_x``: the training list defines the classifier
    (after ``SUBSAMPLE_CLASSES=new`` it is the new classes' list; for test-only datasets
    ``train_x`` is the test list).
    """

    dataset_dir = ""  # folder of the dataset under DATASET.ROOT
    domains: List[str] = []  # names of all domains (DA/DG datasets only)

    def __init__(
        self,
        train_x: Optional[List[Datum]] = None,
        train_u: Optional[List[Datum]] = None,
        val: Optional[List[Datum]] = None,
        test: Optional[List[Datum]] = None,
    ) -> None:
        if not train_x:
            raise ValueError(
                f"{type(self).__name__}: train_x is empty; the class names and the number of "
                f"classes are read from it. Check DATASET.ROOT and the dataset's split file"
            )
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> List[Datum]:
        return self._train_x

    @property
    def train_u(self) -> Optional[List[Datum]]:
        return self._train_u

    @property
    def val(self) -> Optional[List[Datum]]:
        return self._val

    @property
    def test(self) -> Optional[List[Datum]]:
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Iterable[Datum]) -> int:
        """Largest label + 1 (labels are 0-based; gaps count as classes)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Iterable[Datum]) -> Tuple[Dict[int, str], List[str]]:
        """Return ``({label: classname} sorted by label, classnames in label order)``."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return {label: mapping[label] for label in labels}, [mapping[lab] for lab in labels]

    def check_input_domains(
        self, source_domains: Sequence[str], target_domains: Sequence[str]
    ) -> None:
        """Validate DATASET.SOURCE_DOMAINS / TARGET_DOMAINS against ``self.domains``."""
        assert len(source_domains) > 0, "source_domains (list) is empty"
        assert len(target_domains) > 0, "target_domains (list) is empty"
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        """Raise ``ValueError`` for a domain name this dataset does not have."""
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(
                    "Input domain must belong to {}, but got [{}]".format(self.domains, domain)
                )

    @staticmethod
    def split_dataset_by_label(data_source: Iterable[Datum]) -> Dict[int, List[Datum]]:
        """Group items by label; keys in first-appearance order, items in input order."""
        return _group_by(data_source, "label")

    @staticmethod
    def split_dataset_by_domain(data_source: Iterable[Datum]) -> Dict[int, List[Datum]]:
        """Group items by domain; keys in first-appearance order, items in input order."""
        return _group_by(data_source, "domain")

    def generate_fewshot_dataset(
        self, *data_sources: Sequence[Datum], num_shots: int = -1, repeat: bool = False
    ) -> FewShotResult:
        """Draw ``num_shots`` items per label from each source, exactly as Dassl does.

        Why exact: seeded runs must pick Dassl's subsets without its cache files, so Python's
        ``random`` is consumed in Dassl's order: source by source, label by label in
        first-appearance order, ``random.sample(items, K)`` (or ``random.choices(items, k=K)``
        when a label has fewer than K items and ``repeat``; else all its items).
        Returns the input unchanged if ``num_shots < 1``; one list for one source, else a list
        of lists.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = [
            _sample_per_label(self.split_dataset_by_label(src), num_shots, repeat)
            for src in data_sources
        ]
        return output[0] if len(output) == 1 else output


def _group_by(data_source: Iterable[Datum], field: str) -> Dict[int, List[Datum]]:
    groups: Dict[int, List[Datum]] = defaultdict(list)
    for item in data_source:
        groups[getattr(item, field)].append(item)
    return groups


def _sample_per_label(
    by_label: Dict[int, List[Datum]], num_shots: int, repeat: bool
) -> List[Datum]:
    dataset: List[Datum] = []
    for items in by_label.values():
        if len(items) >= num_shots:
            dataset.extend(random.sample(items, num_shots))
        elif repeat:
            dataset.extend(random.choices(items, k=num_shots))
        else:
            dataset.extend(items)
    return dataset
