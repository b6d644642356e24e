"""Bad data gives errors that name the problem and the fix, not stack traces from deep code."""
from __future__ import annotations

import json
import os
import re

import pytest

from disakit.datasets import load_dataset
from disakit.datasets.common import MissingImagesError, find_missing_images, subsample_classes
from disakit.datasets.synthetic import make_dataset


@pytest.mark.parametrize("name, folder", [
    ("oxford_pets", "oxford_pets"), ("caltech101", "caltech-101"), ("imagenet", "imagenet"),
    ("fgvc_aircraft", "fgvc_aircraft"), ("imagenet_r", "imagenet-rendition"),
])
def test_missing_dataset_folder_names_path_and_doc(tmp_path, name, folder):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert str(tmp_path / folder) in message and "DATASETS.md" in message
    assert not (tmp_path / folder).exists()  # nothing was created in the wrong place


def test_missing_images_are_counted_and_listed(tmp_path):
    folder = make_dataset("oxford_pets", tmp_path)
    split = json.loads((folder / "split_zhou_OxfordPets.json").read_text())
    gone = [entry[0] for entry in split["test"][:7]]
    for relpath in gone:
        os.remove(folder / "images" / relpath)
    with pytest.raises(MissingImagesError) as info:
        load_dataset("oxford_pets", tmp_path)
    message = str(info.value)
    assert "lists 7 image(s) that do not exist" in message
    assert str(folder / "images" / gone[0]) in message and "and 2 more" in message
    assert gone[6] not in message  # only the first five are listed
    assert "split_zhou_OxfordPets.json" in message and "DATASETS.md" in message


def test_missing_image_folder_is_reported_as_missing_images(tmp_path):
    folder = make_dataset("ucf101", tmp_path)
    os.rename(folder / "UCF-101-midframes", folder / "midframes")
    with pytest.raises(MissingImagesError, match=r"lists 45 image\(s\)"):
        load_dataset("ucf101", tmp_path)


def test_missing_images_found_when_building_from_annotations(tmp_path):
    folder = make_dataset("sun397", tmp_path, with_split_json=False)
    os.remove(next((folder / "SUN397" / "a" / "abbey").iterdir()))
    with pytest.raises(MissingImagesError, match="annotation files.*lists 1 image"):
        load_dataset("sun397", tmp_path)
    assert not (folder / "split_zhou_SUN397.json").exists()  # no broken split was saved


def test_missing_annotation_file_is_named(tmp_path):
    folder = make_dataset("stanford_cars", tmp_path, with_split_json=False)
    os.remove(folder / "devkit" / "cars_meta.mat")
    expected = re.escape(str(folder / "devkit" / "cars_meta.mat"))
    with pytest.raises(FileNotFoundError, match=expected):
        load_dataset("stanford_cars", tmp_path)


def test_missing_classnames_txt_for_variant(tmp_path):
    folder = make_dataset("imagenetv2", tmp_path)
    os.remove(folder / "classnames.txt")
    with pytest.raises(FileNotFoundError, match="classnames.txt.*copy it from imagenet"):
        load_dataset("imagenetv2", tmp_path)


def test_imagenet_flat_val_folder_is_explained(tmp_path):
    folder = make_dataset("imagenet", tmp_path)
    val = folder / "images" / "val"
    for wnid_dir in list(val.iterdir()):
        for image in wnid_dir.iterdir():
            image.rename(val / image.name)
        wnid_dir.rmdir()
    with pytest.raises(ValueError, match="sort the\\s+validation images into <wnid>/ folders"):
        load_dataset("imagenet", tmp_path)


def test_malformed_split_entry(tmp_path):
    folder = make_dataset("dtd", tmp_path)
    path = folder / "split_zhou_DescribableTextures.json"
    split = json.loads(path.read_text())
    split["val"][0] = split["val"][0][:2]
    path.write_text(json.dumps(split))
    with pytest.raises(ValueError, match=r"\[val\]: malformed entry"):
        load_dataset("dtd", tmp_path)


def test_unknown_subsample_value():
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES must be one of"):
        subsample_classes([], subsample="novel")


def test_find_missing_images_lists_once_per_folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    for name in ("1.jpg", "2.jpg"):
        (tmp_path / "a" / name).write_bytes(b"x")
    calls = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: calls.append(p) or real_listdir(p))
    paths = [str(tmp_path / "a" / n) for n in ("1.jpg", "3.jpg", "2.jpg")]
    paths.append(str(tmp_path / "nope" / "1.jpg"))
    assert find_missing_images(paths) == [paths[1], paths[3]]
    assert sorted(calls) == sorted([str(tmp_path / "a"), str(tmp_path / "nope")])
