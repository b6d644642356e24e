"""The synthetic dataset generator: upstream file layout, determinism and its CLI."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from disakit.datasets.synthetic import make_dataset, resolve_name

REPO = Path(__file__).resolve().parents[1]

# Files and folders DATASETS.md lists for each layout (one example of each kind).
LAYOUT = {
    "ImageNet": "imagenet/classnames.txt imagenet/images/train/n01440764 "
                "imagenet/images/val/n01440764",
    "Caltech101": "caltech-101/101_ObjectCategories/Faces/image_0001.jpg "
                  "caltech-101/101_ObjectCategories/BACKGROUND_Google "
                  "caltech-101/split_zhou_Caltech101.json",
    "OxfordPets": "oxford_pets/images/Abyssinian_1.jpg oxford_pets/annotations/trainval.txt "
                  "oxford_pets/annotations/test.txt oxford_pets/split_zhou_OxfordPets.json",
    "StanfordCars": "stanford_cars/cars_train/00001.jpg stanford_cars/cars_test/00001.jpg "
                    "stanford_cars/devkit/cars_train_annos.mat stanford_cars/devkit/cars_meta.mat "
                    "stanford_cars/cars_test_annos_withlabels.mat",
    "OxfordFlowers": "oxford_flowers/jpg/image_00001.jpg oxford_flowers/imagelabels.mat "
                     "oxford_flowers/cat_to_name.json",
    "Food101": "food-101/images/apple_pie food-101/meta",
    "FGVCAircraft": "fgvc_aircraft/variants.txt fgvc_aircraft/images_variant_train.txt "
                    "fgvc_aircraft/images_variant_val.txt fgvc_aircraft/images_variant_test.txt",
    "SUN397": "sun397/SUN397/a/abbey sun397/SUN397/b/bakery/shop sun397/ClassName.txt "
              "sun397/Training_01.txt sun397/Testing_01.txt",
    "DescribableTextures": "dtd/images/banded/banded_0001.jpg "
                           "dtd/split_zhou_DescribableTextures.json",
    "EuroSAT": "eurosat/2750/AnnualCrop/AnnualCrop_1.jpg eurosat/split_zhou_EuroSAT.json",
    "UCF101": "ucf101/UCF-101-midframes/Apply_Eye_Makeup ucf101/ucfTrainTestlist/classInd.txt "
              "ucf101/ucfTrainTestlist/trainlist01.txt ucf101/split_zhou_UCF101.json",
    "ImageNetV2": "imagenetv2/imagenetv2-matched-frequency-format-val/0 "
                  "imagenetv2/classnames.txt",
    "ImageNetSketch": "imagenet-sketch/images/n01440764 imagenet-sketch/classnames.txt",
    "ImageNetA": "imagenet-adversarial/imagenet-a/n01443537 "
                 "imagenet-adversarial/imagenet-a/README.txt",
    "ImageNetR": "imagenet-rendition/imagenet-r/n01443537 imagenet-rendition/classnames.txt",
}


@pytest.mark.parametrize("name", list(LAYOUT))
def test_layout_matches_datasets_md(tmp_path, name):
    folder = make_dataset(name, tmp_path)
    assert folder.parent == tmp_path
    missing = [rel for rel in LAYOUT[name].split() if not (tmp_path / rel).exists()]
    assert missing == []


def test_no_split_json_leaves_only_raw_annotations(tmp_path):
    folder = make_dataset("oxford_pets", tmp_path, with_split_json=False)
    assert not (folder / "split_zhou_OxfordPets.json").exists()
    first = (folder / "annotations" / "trainval.txt").read_text().splitlines()[0]
    assert first == "Abyssinian_1 1 1 1"  # image, class id, species (cat), breed id


def test_mat_files_have_upstream_structure(tmp_path):
    from scipy.io import loadmat

    folder = make_dataset("stanford_cars", tmp_path, num_classes=2, per_class=(1, 1, 1))
    annos = loadmat(folder / "devkit" / "cars_train_annos.mat")["annotations"][0]
    meta = loadmat(folder / "devkit" / "cars_meta.mat")["class_names"][0]
    assert [str(a["fname"][0]) for a in annos] == ["00001.jpg", "00002.jpg", "00003.jpg",
                                                   "00004.jpg"]
    assert [int(a["class"][0, 0]) for a in annos] == [1, 2, 1, 2]
    assert str(meta[0][0]) == "AM General Hummer SUV 2000"
    flowers = make_dataset("oxford_flowers", tmp_path, num_classes=3, per_class=(1, 1, 1))
    labels = loadmat(flowers / "imagelabels.mat")["labels"][0]
    assert sorted(labels.tolist()) == [1, 1, 1, 2, 2, 2, 3, 3, 3]


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_generation_is_deterministic(tmp_path):
    a = make_dataset("sun397", tmp_path / "a", seed=3)
    b = make_dataset("sun397", tmp_path / "b", seed=3)
    c = make_dataset("sun397", tmp_path / "c", seed=4)
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)


def test_more_classes_than_the_name_tables(tmp_path):
    from disakit.datasets import load_dataset

    make_dataset("ucf101", tmp_path, num_classes=13, per_class=(1, 1, 1))
    ds = load_dataset("ucf101", tmp_path)
    assert ds.num_classes == 13 and len(set(ds.classnames)) == 13


def test_name_resolution():
    assert resolve_name("dtd") == resolve_name("DescribableTextures") == "DescribableTextures"
    assert resolve_name("imagenet_a") == "ImageNetA"
    with pytest.raises(ValueError, match="Unknown dataset 'pets'.*oxford_pets"):
        resolve_name("pets")


def load_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_synthetic_dataset",
                                                  REPO / "scripts" / "make_synthetic_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_help_runs_as_a_script():
    proc = subprocess.run([sys.executable, "scripts/make_synthetic_dataset.py", "--help"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "--no-split-json" in proc.stdout


def test_cli_writes_datasets(tmp_path, capsys):
    cli = load_cli()
    code = cli.main(["--dataset", "eurosat", "imagenet_r", "--root", str(tmp_path), "--classes",
                     "3", "--per-class", "2", "1", "1", "--no-split-json"])
    assert code == 0
    assert len(list((tmp_path / "eurosat" / "2750").iterdir())) == 3
    assert not (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").exists()
    assert (tmp_path / "imagenet-rendition" / "imagenet-r").is_dir()
    assert cli.main(["--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "Unknown dataset" in capsys.readouterr().err
