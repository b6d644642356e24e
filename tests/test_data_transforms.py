"""Transforms and samplers of dasslite.data: printed lines, pipelines and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.data.samplers import build_sampler
from disakit.dasslite.data.transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

FAMILY_LINES = """\
Building transform_train
+ random resized crop (size=(224, 224), scale=(0.08, 1.0))
+ random flip
+ to torch tensor of range [0, 1]
+ normalization (mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
Building transform_test
+ resize the smaller edge to 224
+ 224x224 center crop
+ to torch tensor of range [0, 1]
+ normalization (mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
"""


def family_cfg():
    """The CoOp-family INPUT settings, merged the way the YAML files set them."""
    cfg = get_cfg_default()
    cfg.merge_from_list([
        "INPUT.SIZE", "(224, 224)",
        "INPUT.INTERPOLATION", "bicubic",
        "INPUT.TRANSFORMS", '["random_resized_crop", "random_flip", "normalize"]',
        "INPUT.PIXEL_MEAN", str(CLIP_MEAN),
        "INPUT.PIXEL_STD", str(CLIP_STD),
    ])
    return cfg


def small_cfg(choices, size=(16, 16)):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.TRANSFORMS = list(choices)
    return cfg


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))


def test_family_printed_lines_are_dasslite_exact(capsys):
    cfg = family_cfg()
    build_transform(cfg, is_train=True)
    build_transform(cfg, is_train=False)
    assert capsys.readouterr().out == FAMILY_LINES


def test_family_test_pipeline_equals_resize_centercrop_normalize(image):
    cfg = family_cfg()
    out = build_transform(cfg, is_train=False)(image)
    by_hand = F.resize(image, 224, interpolation=T.InterpolationMode.BICUBIC)
    by_hand = F.center_crop(by_hand, [224, 224])
    by_hand = F.normalize(F.to_tensor(by_hand), CLIP_MEAN, CLIP_STD)
    assert out.shape == (3, 224, 224)
    assert torch.equal(out, by_hand)


def test_family_train_pipeline_equals_rrcrop_flip_normalize(image):
    cfg = family_cfg()
    tfm = build_transform(cfg, is_train=True)
    for seed in range(4):  # covers both flip outcomes
        torch.manual_seed(seed)
        out = tfm(image)
        torch.manual_seed(seed)
        top, left, h, w = T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        crop = F.resized_crop(
            image, top, left, h, w, [224, 224], interpolation=T.InterpolationMode.BICUBIC
        )
        if torch.rand(1) < 0.5:
            crop = F.hflip(crop)
        assert torch.equal(out, F.normalize(F.to_tensor(crop), CLIP_MEAN, CLIP_STD))


def test_resize_is_added_when_no_crop_is_chosen(capsys, image):
    out = build_transform(small_cfg(["random_flip"], size=(16, 24)), is_train=True)(image)
    assert capsys.readouterr().out.splitlines() == [
        "Building transform_train",
        "+ resize to 16x24",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
    ]
    assert out.shape == (3, 16, 24)


OPTIONAL_CHOICES = [
    ("random_crop", "+ random crop (padding = 4)"),
    ("random_translation", "+ random translation"),
    ("colorjitter", "+ color jitter (brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)"),
    ("randomgrayscale", "+ random gray scale"),
    ("gaussian_blur", "+ gaussian blur (kernel=21)"),
    ("cutout", "+ cutout (n_holes=1, length=16)"),
    ("gaussian_noise", "+ gaussian noise (mean=0.0, std=0.15)"),
    ("instance_norm", "+ instance normalization"),
]


@pytest.mark.parametrize("choice,line", OPTIONAL_CHOICES)
def test_optional_choice_prints_its_line_and_keeps_size(choice, line, capsys, image):
    out = build_transform(small_cfg([choice]), is_train=True)(image)
    assert line in capsys.readouterr().out.splitlines()
    assert out.shape == (3, 16, 16)


def test_center_crop_choice_is_a_training_noop_like_dassl(capsys):
    build_transform(small_cfg(["center_crop"]), is_train=True)
    with_choice = capsys.readouterr().out
    build_transform(small_cfg([]), is_train=True)
    assert with_choice == capsys.readouterr().out


def test_instance_norm_standardises_each_channel(image):
    out = build_transform(small_cfg(["instance_norm"]), is_train=False)(image)
    flat = out.reshape(3, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.std(1), torch.ones(3), atol=1e-4)


def test_cutout_zeroes_a_patch(image):
    cfg = small_cfg(["cutout"])
    cfg.INPUT.CUTOUT_LEN = 8
    np.random.seed(0)
    out = build_transform(cfg, is_train=True)(image)
    assert (out == 0).all(dim=0).sum() >= 16  # at least a 4x4 hole even at a corner


def test_test_pipeline_ignores_augmentation_choices(capsys, image):
    cfg = small_cfg(["random_flip", "colorjitter", "normalize"])
    build_transform(cfg, is_train=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "Building transform_test",
        "+ resize the smaller edge to 16",
        "+ 16x16 center crop",
        "+ to torch tensor of range [0, 1]",
    ]
    assert lines[4].startswith("+ normalization (mean=[0.485, 0.456, 0.406]")
    assert len(lines) == 5


def test_no_transform_returns_none(capsys):
    cfg = small_cfg(["normalize"])
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None
    assert capsys.readouterr().out == "Note: no transform is applied!\n"


def test_explicit_choices_override_config(capsys):
    build_transform(small_cfg(["normalize"]), is_train=True, choices=["random_flip"])
    out = capsys.readouterr().out
    assert "+ random flip" in out and "normalization" not in out


def test_unknown_choice_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError, match="'random_flop'") as err:
        build_transform(small_cfg(["random_flop"]))
    assert "random_flip" in str(err.value)


@pytest.mark.parametrize("choice", ["imagenet_policy", "randaugment"])
def test_unsupported_choice_is_rejected_before_printing(choice, capsys):
    assert choice in AVAI_CHOICES
    with pytest.raises(ValueError, match=choice):
        build_transform(small_cfg([choice]))
    assert capsys.readouterr().out == ""


def test_interpolation_modes_map_to_torchvision():
    assert INTERPOLATION_MODES == {
        "bilinear": T.InterpolationMode.BILINEAR,
        "bicubic": T.InterpolationMode.BICUBIC,
        "nearest": T.InterpolationMode.NEAREST,
    }


def test_bad_interpolation_is_named():
    cfg = small_cfg([])
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(ValueError, match="lanczos"):
        build_transform(cfg, is_train=False)


# ---- samplers ------------------------------------------------------------------------------


def test_random_sampler_follows_torch_global_rng():
    torch.manual_seed(3)
    first = list(build_sampler("RandomSampler", data_source=list(range(20))))
    torch.manual_seed(3)
    again = list(build_sampler("RandomSampler", data_source=list(range(20))))
    assert first == again and sorted(first) == list(range(20)) and first != sorted(first)


def test_sequential_sampler_keeps_order():
    assert list(build_sampler("SequentialSampler", data_source=list("abcd"))) == [0, 1, 2, 3]


def test_unknown_sampler_raises_value_error():
    with pytest.raises(ValueError, match="^Unknown sampler type: RandomDomainSamplr"):
        build_sampler("RandomDomainSamplr", data_source=[1, 2])
