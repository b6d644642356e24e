"""``python -m disakit check-data``: ready / missing / each kind of layout problem, the counts,
ImageFolder YAMLs, exit codes. In-process (``datasets.check.main``) except one CLI call."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from disakit.datasets import YAML_NAMES
from disakit.datasets.check import check_data, main
from disakit.datasets.synthetic import make_all, make_dataset, make_image_folder

SHARED_DATA = REPO.parent / "shared" / "data"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def block(out: str, name: str) -> str:
    """The report block of dataset ``name`` (from its title line to the next blank line)."""
    start = next(i for i, line in enumerate(out.splitlines())
                 if line.startswith(f"{name} (") or line.startswith(f"{name}:"))
    lines = out.splitlines()[start:]
    return "\n".join(lines[:lines.index("")] if "" in lines else lines)


def write_yaml(path: Path, folder: str, **keys) -> Path:
    extra = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in keys.items())
    path.write_text(f'DATASET:\n  NAME: "ImageFolder"\n  DIR: "{folder}"\n{extra}')
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    make_all(root)  # 5 classes, (4, 2, 3) images per class
    make_image_folder(root / "my_dataset", num_classes=5, per_class=10)
    return root


def test_a_correct_generated_tree_is_ready_with_its_counts(good, capsys):
    code, out = run(capsys, good)
    assert code == 0 and "Summary: 15 ready, 0 not ready, 0 missing" in out
    for name in YAML_NAMES.values():
        text = block(out, name)
        assert text.splitlines()[0].endswith(": ready"), text
        # the counts of the generated files, then the official sizes as an extra line
        assert "not the official" in text and "results are not comparable" in text
    assert "20 train / 10 val / 15 test images, 5 classes" in block(out, "eurosat")
    assert "all 45 listed images found" in block(out, "eurosat")
    assert "train 20 / test (= val) 15 images, 5 classes" in block(out, "imagenet")
    assert "test 15 images, 5 classes" in block(out, "imagenet_r")
    assert "official lists" in block(out, "fgvc_aircraft")
    assert "8 sampled images decode" in block(out, "dtd")
    reports = {r.dataset: r for r in check_data(str(good))}
    assert reports["StanfordCars"].counts == {"train": 20, "val": 10, "test": 15, "classes": 5}
    assert main([str(good), "--datasets", "eurosat", "--strict"]) == 1  # warnings count
    capsys.readouterr()


def test_an_imagefolder_yaml_is_checked_without_writing(good, capsys):
    code, out = run(capsys, good, "--datasets", "imagefolder_example", "--verify-images")
    text = block(out, "imagefolder_example")
    assert code == 0 and "imagefolder_example (ImageFolder): ready" in text
    assert "split_disakit_my_dataset.json (made by the first run" in text
    assert "25 train / 10 val / 15 test images, 5 classes" in text
    assert "classnames.txt names 5 of 5 classes" in text and "all 50 images decode" in text
    assert not (good / "my_dataset" / "split_disakit_my_dataset.json").exists()
    assert not (good / "my_dataset" / "split_fewshot").exists()


BROKEN = ["eurosat", "caltech101", "dtd", "stanford_cars", "oxford_pets", "food101",
          "imagenet", "fgvc_aircraft", "imagenet_sketch", "imagenetv2", "oxford_flowers", "sun397"]


@pytest.fixture
def broken(tmp_path) -> Path:
    """One dataset per kind of problem."""
    make_all(tmp_path, BROKEN)
    eurosat = tmp_path / "eurosat"  # an extra folder level (eurosat/EuroSAT/2750)
    (eurosat / "EuroSAT").mkdir()
    (eurosat / "2750").rename(eurosat / "EuroSAT" / "2750")
    caltech = tmp_path / "caltech-101"  # a missing level: class folders in caltech-101/
    for folder in (caltech / "101_ObjectCategories").iterdir():
        folder.rename(caltech / folder.name)
    (caltech / "101_ObjectCategories").rmdir()
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").unlink()  # no split file
    for image in sorted((tmp_path / "oxford_pets" / "images").iterdir())[-3:]:
        image.unlink()  # images listed by the split but gone
    cars = tmp_path / "stanford_cars" / "cars_train"  # as the Kaggle copy: cars_train/cars_train
    (cars.parent / "inner").mkdir()
    for image in cars.iterdir():
        image.rename(cars.parent / "inner" / image.name)
    (cars.parent / "inner").rename(cars / "cars_train")
    (tmp_path / "oxford_pets" / "images" / "Abyssinian_1.jpg").write_bytes(b"<html>")
    (tmp_path / "food-101").rename(tmp_path / "Food101")  # another folder name
    val = tmp_path / "imagenet" / "images" / "val"  # the flat validation archive
    for folder in list(val.iterdir()):
        for image in folder.iterdir():
            image.rename(val / image.name)
        folder.rmdir()
    (tmp_path / "fgvc_aircraft" / "images_variant_test.txt").unlink()
    (tmp_path / "imagenet-sketch" / "images").rename(tmp_path / "imagenet-sketch" / "sketch")
    (tmp_path / "imagenetv2" / "classnames.txt").unlink()
    flowers = tmp_path / "oxford_flowers"  # split file extracted into the image folder
    (flowers / "split_zhou_OxfordFlowers.json").rename(flowers / "jpg" /
                                                        "split_zhou_OxfordFlowers.json")
    (tmp_path / "sun397" / "split_zhou_SUN397.json").write_text("{not json")
    return tmp_path


def test_each_kind_of_problem_is_reported(broken, capsys):
    code, out = run(capsys, broken, "--datasets", *BROKEN, "--verify-images")
    assert code == 1 and "Summary: 0 ready, 11 not ready, 1 missing" in out
    expect = {
        "eurosat": [f"image folder {broken}/eurosat/2750 not found",
                    f"found {broken}/eurosat/EuroSAT/2750: an extra folder level"],
        "caltech101": [f"a missing folder level? They belong in {broken}/caltech-101/"
                       "101_ObjectCategories"],
        "dtd": ["split file split_zhou_DescribableTextures.json not found"],
        "stanford_cars": ["30 of 45 images listed in split_zhou_StanfordCars.json are missing",
                          f"an extra folder level: move the contents of {broken}/stanford_cars/"
                          f"cars_train/cars_train up into {broken}/stanford_cars/cars_train"],
        "oxford_pets": ["3 of 45 images listed in split_zhou_OxfordPets.json are missing",
                        "1 of 42 images cannot be decoded",
                        f"{broken}/oxford_pets/images/Abyssinian_1.jpg (UnidentifiedImageError"],
        "food101": ["missing (no folder", f"found {broken}/Food101", "rename it to food-101"],
        "imagenet": ["15 images lie directly in images/val"],
        "fgvc_aircraft": ["list file images_variant_test.txt not found"],
        "imagenet_sketch": ["image folder not found", "rename it to images"],
        "imagenetv2": ["classnames.txt", "not found"],
        "oxford_flowers": [f"found {broken}/oxford_flowers/jpg/split_zhou_OxfordFlowers.json: "
                           f"move it to {broken}/oxford_flowers"],
        "sun397": ["is not valid JSON"],
    }
    for name, texts in expect.items():
        text = block(out, name)
        for wanted in texts:
            assert wanted in text, f"{name}: {wanted!r} not in\n{text}"
    # Without --verify-images a few images are decoded: here the broken one is among them.
    code, out = run(capsys, broken, "--datasets", "oxford_pets")
    assert code == 1 and "1 of 8 sampled images cannot be decoded" in out


def test_imagefolder_problems(tmp_path, capsys):
    make_image_folder(tmp_path / "flat", num_classes=2, per_class=6, classnames_txt=False)
    for image in list((tmp_path / "flat").rglob("*.jpg")):
        image.rename(tmp_path / "flat" / f"{image.parent.name}_{image.name}")
    for folder in [p for p in (tmp_path / "flat").iterdir() if p.is_dir()]:
        folder.rmdir()
    make_image_folder(tmp_path / "nested" / "nested", num_classes=3, per_class=6)
    make_image_folder(tmp_path / "messy", num_classes=3, per_class=6)
    (tmp_path / "messy" / "zz_empty").mkdir()
    (tmp_path / "messy" / "apple_pie" / "notes.txt").write_text("not an image")
    (tmp_path / "messy" / "apple_pie" / "more").mkdir()
    make_image_folder(tmp_path / "few", num_classes=3, per_class=6)
    for image in sorted((tmp_path / "few" / "baklava").iterdir())[:3]:
        image.unlink()
    make_image_folder(tmp_path / "sub", num_classes=3, subsets={"train": 4, "test": 2})
    shutil.copytree(tmp_path / "sub" / "test" / "baklava", tmp_path / "sub" / "test" / "zebra")
    yamls = {name: write_yaml(tmp_path / f"{name}.yaml", name)
             for name in ("flat", "nested", "messy", "few", "sub", "absent")}
    yamls["split"] = write_yaml(tmp_path / "split.yaml", "few", SPLIT_FILE="nope.json")
    code, out = run(capsys, tmp_path, "--datasets", *map(str, yamls.values()))
    assert code == 1 and "Summary: 0 ready, 6 not ready, 1 missing" in out
    expect = {
        "flat": ["no class folders", "12 images lie directly in it"],
        "nested": [f"an extra folder level: {tmp_path}/nested/nested holds the class folders"],
        "messy": ["1 class folder(s) with no images", "zz_empty",
                  "1 sub-folder(s) inside class folders are not read",
                  "1 file(s) without an image extension are ignored", "notes.txt"],
        "few": [f"{tmp_path}/few/baklava has only 3 images; too few"],
        "sub": ["train/ + test/ folders", "test/zebra is not a class of"],
        "absent": ["missing (no folder", "DATASET.DIR"],
        "split": ["split file not found", "nope.json"],
    }
    for name, texts in expect.items():
        text = block(out, str(yamls[name]))
        for wanted in texts:
            assert wanted in text, f"{name}: {wanted!r} not in\n{text}"


def test_a_generated_split_that_no_longer_fits(tmp_path, capsys):
    from disakit.datasets.imagefolder import ImageFolderSettings, ImageFolderSource

    folder = tmp_path / "mine"
    make_image_folder(folder, num_classes=3, per_class=6)
    source = ImageFolderSource(ImageFolderSettings(str(folder)))
    source.save_generated(source.build_split(), source.settings.generated_split_path)
    yaml = write_yaml(tmp_path / "mine.yaml", "mine")
    shutil.copy(folder / "baklava" / "img_0000.jpg", folder / "baklava" / "img_0099.jpg")
    code, out = run(capsys, tmp_path, "--datasets", yaml)
    assert code == 0 and "ready" in out and "(present;" in out
    assert "1 image(s) in the class folders are not in split_disakit_mine.json" in out
    other = write_yaml(tmp_path / "other.yaml", "mine", SPLIT_SEED=5)
    code, out = run(capsys, tmp_path, "--datasets", other)
    assert code == 1 and "was made with DATASET.SPLIT_FRACTIONS [0.5, 0.2] and SPLIT_SEED 1" in out
    (folder / "zucchini").mkdir()
    shutil.copy(folder / "baklava" / "img_0000.jpg", folder / "zucchini" / "a.jpg")
    code, out = run(capsys, tmp_path, "--datasets", yaml)
    assert code == 1 and "class folders changed" in out and "zucchini" in out


def test_exit_codes_and_the_command_line(tmp_path, capsys):
    make_dataset("eurosat", tmp_path)
    assert run(capsys, tmp_path)[0] == 0  # only what is there is judged without --datasets
    (tmp_path / "empty").mkdir()
    code, out = run(capsys, tmp_path / "empty")
    assert code == 1 and "No dataset found" in out
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "nowhere does not exist" in capsys.readouterr().err
    code = main([str(tmp_path), "--datasets", "no_such_dataset"])
    assert code == 2 and "unknown dataset 'no_such_dataset'" in capsys.readouterr().err
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "disakit", "check-data", str(tmp_path),
                           "--datasets", "eurosat", "caltech101"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "eurosat (EuroSAT): ready" in proc.stdout
    assert f"caltech101 (Caltech101): missing (no folder {tmp_path}/caltech-101)" in proc.stdout
    usage = subprocess.run([sys.executable, "-m", "disakit"], cwd=REPO, env=env,
                           capture_output=True, text=True)
    assert usage.returncode == 0 and "check-data" in usage.stdout


@pytest.mark.skipif(not (SHARED_DATA / "eurosat").is_dir(), reason="no ../shared/data")
def test_real_eurosat_and_an_official_split_file(tmp_path, capsys):
    """With the official split file the extra line says so (nothing is written to the data)."""
    code, out = run(capsys, SHARED_DATA, "--datasets", "eurosat")
    assert code == 0 and "all 27,000 listed images found" in out
    assert "same sizes as the official CoOp data (13,500 train / 5,400 val / 8,100 test" in out
    split = SHARED_DATA / "splits" / "split_zhou_DescribableTextures.json"
    if not split.is_file():
        pytest.skip("no official DTD split file")
    dtd = tmp_path / "dtd"
    for items in json.loads(split.read_text()).values():
        for relpath, _, _ in items:
            path = dtd / "images" / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()  # placeholders: only existence is checked (--sample 0)
    shutil.copy(split, dtd / split.name)
    code, out = run(capsys, tmp_path, "--datasets", "dtd", "--sample", "0", "--strict")
    assert code == 0 and "2,820 train / 1,128 val / 1,692 test images, 47 classes" in out
    assert "same sizes as the official CoOp data" in out
