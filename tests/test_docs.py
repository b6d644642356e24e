"""The repository carries its own documentation, and the code points only at it.

* Every ``*.md`` path mentioned in a source, config, script or document file (code comments and
  docstrings included) exists in the repository, relative to the mentioning file or to the
  repository root; a ``<doc>.md#<anchor>`` reference (and a Markdown link) must name a heading that
  exists in that document.
* No section-sign citation (as in "spec, section-sign 4.2") of a document users do not have.
* ``docs/methods/`` has a page for every registered trainer, each page documents every key of
  its trainer's ``TRAINER.<NODE>`` config node with the default of ``trainers/config.py``, and
  no document names a ``TRAINER.<NODE>.<KEY>`` that does not exist.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import pytest
from conftest import REPO

SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".txt"}
SKIP_DIRS = {"output", "build", "dist", "data", "node_modules", "__pycache__"}
SECTION_SIGN = "\u00a7"
METHODS_DIR = REPO / "docs" / "methods"

# A path ending in .md, not inside a longer path or URL (a "<setting>.md" placeholder or a bare
# ".md" suffix does not match), optionally followed by "#anchor".
MD_REF = re.compile(r"(?<![\w/.<>{}*$-])((?:[\w.-]+/)*[\w-][\w.-]*\.md)(#[\w-]+)?(?![\w/])")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
KEY_REF = re.compile(r"\bTRAINER\.([A-Z0-9_]+)\.([A-Z0-9_]+)\b")
TRAINERS_LINE = re.compile(r"^\*\*Trainers?:\*\*(.*)$", re.M)
BACKTICKED = re.compile(r"`([^`]+)`")


def repo_files() -> list[Path]:
    """Source, config, script and document files of the working tree (no venv, VCS, outputs)."""
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not d.endswith(".egg-info"))
        found += [Path(folder) / f for f in sorted(files) if Path(f).suffix in SUFFIXES]
    return found


def generated_names() -> set[str]:
    """``.md`` files the code *writes* (the paper-table report), not documents it cites."""
    from disakit.runkit.report import SETTINGS

    return {f"{setting}.md" for setting in SETTINGS}


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    """Anchors of the headings of a Markdown file (outside fenced code blocks)."""
    seen: dict[str, int] = {}
    result = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return frozenset(result)


def resolve(source: Path, target: str) -> Path | None:
    """``target`` relative to the mentioning file's folder, else to the repository root."""
    for base in (source.parent, REPO):
        candidate = (base / target).resolve()
        if candidate.exists():
            return candidate
    return None


def check_target(source: Path, target: str, anchor: str | None) -> str | None:
    """Why ``target#anchor`` mentioned in ``source`` is broken, or None."""
    path = resolve(source, target) if target else source
    if path is None:
        return f"no document {target!r}"
    if anchor and path.suffix == ".md" and path.is_file() and anchor not in anchors(path):
        return f"no heading #{anchor} in {path.relative_to(REPO)}"
    return None


def broken_references(files: list[Path]) -> list[str]:
    generated = generated_names()
    problems = []
    for path in files:
        rel = path.relative_to(REPO)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            refs = [(m.group(1), (m.group(2) or "#")[1:] or None) for m in MD_REF.finditer(line)]
            if path.suffix == ".md":
                for link in MD_LINK.findall(line):
                    if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
                        continue
                    target, _, anchor = link.partition("#")
                    refs.append((target, anchor or None))
            for target, anchor in refs:
                if Path(target).name in generated:
                    continue
                why = check_target(path, target, anchor)
                if why:
                    problems.append(f"{rel}:{number}: {why}: {line.strip()[:120]}")
    return problems


def test_repo_files_are_found():
    files = {p.relative_to(REPO).as_posix() for p in repo_files()}
    assert {"README.md", "DATASETS.md", "train.py", "docs/README.md",
            "docs/methods/README.md", "tests/test_docs.py"} <= files
    assert not any(f.startswith((".venv/", ".git/", "output/")) for f in files)


def test_reference_pattern():
    md = "." + "md"
    found = [m.group(1) for m in MD_REF.finditer(
        f"see DATASETS{md}, docs/engine{md}#checkpoints, ../engine{md}; not <setting>{md}, "
        f"{md}, https://example.org/a/README{md} or notes{md}x")]
    assert found == [f"DATASETS{md}", f"docs/engine{md}", f"../engine{md}"]
    assert slug("## 5. Caches".lstrip("# ")) == "5-caches"
    assert slug("Reconstructed model (DPL-R)") == "reconstructed-model-dpl-r"


def test_every_referenced_document_exists():
    problems = broken_references(repo_files())
    assert not problems, ("references to documents (or headings) that are not in the "
                          "repository; point them at docs/ instead:\n" + "\n".join(problems))


def test_no_section_sign_citations():
    hits = []
    for path in repo_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SECTION_SIGN in line:
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not hits, ("section-sign citations (of a spec users do not have); cite the docs/ "
                      "page and heading instead, e.g. docs/engine.md#checkpoints:\n"
                      + "\n".join(hits))


# ------------------------------------------------------------------ method pages vs. the code
@lru_cache(maxsize=None)
def registry():
    from disakit import (
        dassl_api,
        trainers,  # noqa: F401  (registers every trainer)
    )

    return dassl_api.TRAINER_REGISTRY


def method_pages() -> dict[Path, list[str]]:
    """``docs/methods/*.md`` (not the README) -> the trainers its ``**Trainer(s):**`` line names."""
    pages = {}
    for page in sorted(METHODS_DIR.glob("*.md")):
        if page.name == "README.md":
            continue
        match = TRAINERS_LINE.search(page.read_text(encoding="utf-8"))
        declared = match.group(1).split("·")[0] if match else ""
        pages[page] = BACKTICKED.findall(declared)
    return pages


def test_every_registered_trainer_has_a_method_page():
    pages = method_pages()
    documented = {name for names in pages.values() for name in names}
    registered = set(registry().registered_names())
    missing = sorted(registered - documented)
    assert not missing, (f"registered trainers without a page in docs/methods/: {missing}; add "
                         "a page whose first lines say **Trainer:** `<Name>`")
    for page, names in pages.items():
        assert names, f"{page.relative_to(REPO)} has no '**Trainer:** `<Name>`' line"
        stale = sorted(set(names) - registered)
        assert not stale, f"{page.relative_to(REPO)} documents unregistered trainers {stale}"
    index = (METHODS_DIR / "README.md").read_text(encoding="utf-8")
    unlisted = [p.name for p in pages if f"({p.name})" not in index]
    assert not unlisted, f"docs/methods/README.md does not link {unlisted}"


def _cell_value(cell: str) -> str:
    """A table cell's value: its first backticked token, else its first word."""
    ticked = BACKTICKED.findall(cell)
    return ticked[0] if ticked else (cell.split() or [""])[0]


def _expected(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def documented_defaults(page: Path, node: str, keys: dict) -> dict[str, str]:
    """``{key: default cell}`` from the page's key-table rows (``| `KEY` | default | ...``,
    ``TRAINER.<NODE>.KEY`` or the bare ``KEY``; ``| `A` / `B` | x / y |`` rows too)."""
    found: dict[str, str] = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        names = [n.removeprefix(f"TRAINER.{node}.") for n in BACKTICKED.findall(cells[0])]
        if not names or not all(n in keys for n in names):
            continue
        values = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        if len(values) != len(names):
            values = [cells[1]] * len(names)
        for name, value in zip(names, values):
            found[name] = _cell_value(value)
    return found


def test_method_pages_document_every_key_with_its_default():
    from disakit.trainers.config import TRAINER_KEYS

    for page, names in method_pages().items():
        for name in names:
            node = getattr(registry().get(name), "CFG_NODE", None)
            if node is None:
                continue
            keys = TRAINER_KEYS[node]
            documented = documented_defaults(page, node, keys)
            missing = sorted(set(keys) - set(documented))
            assert not missing, f"{page.relative_to(REPO)}: TRAINER.{node} keys {missing} are " \
                                "not in a key table"
            wrong = {k: (documented[k], _expected(v)) for k, v in keys.items()
                     if documented[k] != _expected(v)}
            assert not wrong, (f"{page.relative_to(REPO)}: defaults differ from "
                               f"trainers/config.py (documented, code): {wrong}")


def test_documents_name_only_existing_config_keys():
    from disakit.trainers.config import TRAINER_KEYS
    from disakit.trainers.upstream import UPSTREAM

    # Upstream spellings that train.py accepts and translates (README "Upstream configs and keys").
    upstream = {key for rules in UPSTREAM.values() for key in rules}
    unknown = []
    for path in sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]:
        for node, key in KEY_REF.findall(path.read_text(encoding="utf-8")):
            if f"TRAINER.{node}.{key}" in upstream:
                continue
            if node in TRAINER_KEYS and key not in TRAINER_KEYS[node]:
                unknown.append(f"{path.relative_to(REPO)}: TRAINER.{node}.{key}")
            elif node not in TRAINER_KEYS and path.parent == METHODS_DIR:
                unknown.append(f"{path.relative_to(REPO)}: TRAINER.{node}.{key}")
    assert not unknown, "documented config keys that trainers/config.py does not declare:\n" \
        + "\n".join(unknown)


@pytest.mark.parametrize("page", sorted(p.name for p in METHODS_DIR.glob("*.md")))
def test_method_page_mentions_its_config_folder(page):
    text = (METHODS_DIR / page).read_text(encoding="utf-8")
    for folder in re.findall(r"configs/trainers/(\w+)/", text):
        assert (REPO / "configs" / "trainers" / folder).is_dir(), (page, folder)
    for config in re.findall(r"`(\w+)/(vit_b16[\w+]*)\.yaml`", text):
        assert (REPO / "configs" / "trainers" / config[0] / f"{config[1]}.yaml").is_file(), \
            (page, config)
