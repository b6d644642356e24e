"""An editable install of the project next to Hugging Face ``datasets`` in a fresh environment:
both import, and the project adds no top-level ``trainers`` / ``datasets`` / ``train`` of its own.

The environment is a new venv (``--system-site-packages``, made by the interpreter running the
tests) whose ``site-packages`` holds a ``.pth`` line naming this interpreter's ``site-packages``,
so torch, CLIP and the other dependencies are shared instead of reinstalled (a venv made from a
venv sees the *base* Python's packages, not the parent venv's). That line only appends the
folder to ``sys.path``: the parent's own ``.pth`` files, such as its editable install of this
project, are not run. ``datasets`` and the editable install go into the new venv with this
interpreter's pip (``pip --python``). Needs the package index; skipped when ``datasets`` cannot be
installed. It takes about two minutes on a 2-core machine, most of it installing ``datasets``
(pyarrow, pandas) and importing it.
"""
from __future__ import annotations

import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

PROBE = textwrap.dedent("""
    import importlib.util
    import datasets
    assert callable(datasets.load_dataset), datasets
    hf = datasets.__file__
    import disakit.datasets, disakit.trainers, disakit.plugin
    from disakit.bundle import DATASETS, TRAINERS
    import datasets as again
    assert again is sys.modules["datasets"] and again.__file__ == hf  # still Hugging Face's
    assert "EuroSAT" in DATASETS and "DiSa" in TRAINERS
    tops = {n: importlib.util.find_spec(n) for n in ("trainers", "train", "parse_test_res",
                                                     "configs", "dasslite", "clipkit", "runkit")}
    assert not any(tops.values()), tops
    print(hf)
    print(disakit.__file__)
    print(disakit.plugin.config_files("DiSa")[0])
""")


def pip(target: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(target), "install",
                           "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True)


def test_editable_install_beside_hugging_face_datasets(tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    (venv_site / "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    hf = pip(python, "datasets")
    if hf.returncode != 0:
        pytest.skip(f"cannot install Hugging Face datasets here: {hf.stderr.strip()[-500:]}")
    ours = pip(python, "--no-deps", "--no-build-isolation", "-e", str(REPO))
    assert ours.returncode == 0, ours.stderr[-3000:]

    # Run from an unrelated folder: the repository root on sys.path would expose its folders.
    probe = subprocess.run([str(python), "-c", "import sys\n" + PROBE], cwd=tmp_path,
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stdout + probe.stderr[-3000:]
    hf_file, disakit_file, config = probe.stdout.split()
    assert Path(hf_file).is_relative_to(venv_site)
    assert Path(disakit_file) == REPO / "disakit" / "__init__.py"
    assert Path(config).name == "vit_b16_c2_ep20_batch4_4+4ctx.yaml" and Path(config).is_file()
