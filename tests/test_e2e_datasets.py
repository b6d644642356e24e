"""Every benchmark through the real train.py with the tiny CLIP, on its generated fixture:
base-class training and an eval-only run on the new classes for the 11 training datasets, and
eval-only cross-dataset runs (ImageNet checkpoint) on the 4 test-only ImageNet variants."""
from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FAST_OPTS, run_cli

from disakit.datasets import TEST_ONLY, YAML_NAMES

TRAINING = [yaml for name, yaml in YAML_NAMES.items() if name not in TEST_ONLY]
TEST_ONLY_YAMLS = [YAML_NAMES[name] for name in TEST_ONLY]
ACCURACY = re.compile(r"^\* accuracy: ([\d.]+)%$", re.M)
OPTS = [*FAST_OPTS, "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2"]


def _train_py(data: Path, clip: Path, yaml: str, out: Path, flags=(), opts=()):
    return run_cli(sys.executable, "train.py", "--root", str(data), "--seed", "1",
                   "--trainer", "CoOp", "--dataset-config-file", f"configs/datasets/{yaml}.yaml",
                   "--config-file", "configs/trainers/CoOp/vit_b16_ctxv1.yaml",
                   "--output-dir", str(out), "--backbone", str(clip), *flags, *OPTS, *opts,
                   check=False)


def _eval_flags(model_dir: Path) -> list[str]:
    return ["--eval-only", "--model-dir", str(model_dir), "--load-epoch", "1"]


def _base_then_new(data: Path, clip: Path, out: Path, yaml: str):
    train_dir = out / yaml / "train_base"
    trained = _train_py(data, clip, yaml, train_dir, opts=["DATASET.SUBSAMPLE_CLASSES", "base"])
    if trained.returncode:
        return trained, None
    return trained, _train_py(data, clip, yaml, out / yaml / "test_new", _eval_flags(train_dir),
                              ["DATASET.SUBSAMPLE_CLASSES", "new"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_clip_path) -> dict:
    """All runs, launched a few at a time (each is mostly interpreter start-up)."""
    from disakit.datasets.synthetic import make_dataset

    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("out")
    for name in YAML_NAMES.values():
        make_dataset(name, data, num_classes=4, per_class=(3, 1, 2))
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = {n: pool.submit(_base_then_new, data, tiny_clip_path, out, n) for n in TRAINING}
        results = {n: job.result() for n, job in jobs.items()}
        imagenet_dir = out / "imagenet" / "train_base"
        xd = {n: pool.submit(_train_py, data, tiny_clip_path, n, out / n, _eval_flags(imagenet_dir))
              for n in TEST_ONLY_YAMLS}
        results.update({n: (None, job.result()) for n, job in xd.items()})
    return results


def _ok(proc) -> None:
    assert proc is not None and proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-3000:]
                                                       if proc is not None else "not run")


@pytest.mark.parametrize("name", TRAINING)
def test_base_training_and_new_evaluation(runs, name):
    trained, evaluated = runs[name]
    _ok(trained)
    _ok(evaluated)
    assert "Finish training" in trained.stdout and "# classes  2" in trained.stdout
    assert "SUBSAMPLE NEW CLASSES!" in evaluated.stdout and "# classes  2" in evaluated.stdout
    assert ACCURACY.search(evaluated.stdout)


@pytest.mark.parametrize("name", TEST_ONLY_YAMLS)
def test_cross_dataset_evaluation_of_the_imagenet_checkpoint(runs, name):
    _, evaluated = runs[name]
    _ok(evaluated)
    assert "Loading weights to prompt_learner" in evaluated.stdout
    assert "# classes  4" in evaluated.stdout and ACCURACY.search(evaluated.stdout)
