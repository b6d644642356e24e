"""Offline CLIP loading, checksum stamps, random CLIP files and the clip import shim.

Everything runs on the ``tiny`` random architecture; files live under pytest's tmp folders.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from disakit.clipkit import loading
from disakit.clipkit.compat import clip, tokenize
from disakit.clipkit.loading import (
    CLIP_CACHE_ENV,
    OFFICIAL_SHA256,
    ChecksumMismatchError,
    CLIPWeightsError,
    available_backbones,
    clip_cache_dir,
    load_clip,
    load_state_dict_any,
    resolve_backbone,
)
from disakit.clipkit.random_clip import CLIP_ARCHS, build_random_clip, save_clip

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

REPO_ROOT = Path(__file__).resolve().parents[1]
OPENAI_METADATA_KEYS = {"input_resolution", "context_length", "vocab_size"}
TEXTS = ["a photo of a cat.", "a centered satellite photo of a river.", "x"]


# ----------------------------------------------------------------------------- helpers / fixtures
def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in model.state_dict().items()}


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.equal(pa[key], pb[key]), key


def _official_fp16_layout(model: torch.nn.Module) -> torch.nn.Module:
    """What an fp16 file of ``model`` must load back to: build_model's fp16 rounding, in fp32."""
    rounded = copy.deepcopy(model)
    clip.model.convert_weights(rounded)
    return rounded.float()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    return build_random_clip("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_files(tiny_model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny_clip")
    return {fmt: save_clip(tiny_model, folder / f"tiny-{fmt}.pt", fmt=fmt)
            for fmt in ("jit", "state_dict")}


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "clip-cache"
    folder.mkdir()
    monkeypatch.setenv(CLIP_CACHE_ENV, str(folder))
    return folder


@pytest.fixture()
def hash_counter(monkeypatch) -> list[Path]:
    """Record every full-file hash so tests can prove the stamp cache skips re-hashing."""
    calls: list[Path] = []
    real = loading._sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(loading, "_sha256_file", counting)
    return calls


# ----------------------------------------------------------------------------- compat shim
def test_compat_installs_shim_only_when_pkg_resources_is_missing():
    result = _run_python("""
        import sys
        sys.modules["pkg_resources"] = None  # makes `import pkg_resources` raise ImportError
        from disakit.clipkit.compat import clip, PKG_RESOURCES_SHIMMED
        import pkg_resources
        assert PKG_RESOURCES_SHIMMED and pkg_resources.__clipkit_shim__
        print(tuple(clip.tokenize(["a photo"]).shape))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 77)"


def test_compat_keeps_a_working_pkg_resources():
    result = _run_python("""
        import sys, types, packaging.version
        real = types.ModuleType("pkg_resources")
        real.packaging = packaging
        sys.modules["pkg_resources"] = real
        from disakit.clipkit.compat import clip, PKG_RESOURCES_SHIMMED
        assert sys.modules["pkg_resources"] is real and not PKG_RESOURCES_SHIMMED
        assert not hasattr(real, "__clipkit_shim__")
        print(clip.available_models()[0])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RN50"


# ----------------------------------------------------------------------------- random CLIP files
def test_both_formats_round_trip_to_identical_parameters(tiny_model, tiny_files):
    from_jit = load_clip(tiny_files["jit"])
    from_state_dict = load_clip(tiny_files["state_dict"])
    _assert_same_params(from_jit, from_state_dict)
    _assert_same_params(from_jit, _official_fp16_layout(tiny_model))
    assert all(p.dtype == torch.float32 for p in from_jit.parameters())
    assert not from_jit.training


def test_fp32_files_are_lossless(tiny_model, tmp_path):
    for fmt in ("jit", "state_dict"):
        path = save_clip(tiny_model, tmp_path / f"{fmt}.pt", fmt=fmt, dtype=torch.float32)
        _assert_same_params(load_clip(path), tiny_model)


def test_archive_has_openai_keys_and_fp16_layout(tiny_model, tiny_files):
    state = load_state_dict_any(tiny_files["jit"])
    assert set(state) == set(tiny_model.state_dict()) | OPENAI_METADATA_KEYS
    assert state["visual.conv1.weight"].dtype == torch.float16  # converted like build_model
    assert state["ln_final.weight"].dtype == torch.float32  # LayerNorms stay fp32
    assert int(state["input_resolution"]) == tiny_model.visual.input_resolution


def test_archive_matches_stock_clip_load(tiny_files):
    ours = load_clip(tiny_files["jit"])
    stock, _ = clip.load(str(tiny_files["jit"]), device="cpu", jit=False)
    images, texts = torch.randn(2, 3, 224, 224), tokenize(TEXTS)
    with torch.no_grad():
        assert (ours.encode_image(images) - stock.encode_image(images)).abs().max() <= 1e-5
        assert (ours.encode_text(texts) - stock.encode_text(texts)).abs().max() <= 1e-5


def test_traced_archive_runs_other_batch_sizes(tiny_model, tiny_files):
    traced = torch.jit.load(str(tiny_files["jit"]), map_location="cpu")
    eager = copy.deepcopy(tiny_model)
    clip.model.convert_weights(eager)
    texts = tokenize(TEXTS)
    with torch.no_grad():
        assert torch.allclose(traced.encode_text(texts).float(), eager.encode_text(texts).float(),
                              atol=1e-3)


def test_same_seed_same_weights_other_seed_differs():
    rng_before = torch.get_rng_state()
    a, b, c = (build_random_clip("tiny", seed=s) for s in (5, 5, 6))
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    _assert_same_params(a, b)
    assert not torch.equal(a.token_embedding.weight, c.token_embedding.weight)
    assert a.logit_scale.exp().item() == pytest.approx(100.0)


@pytest.mark.parametrize("arch", list(CLIP_ARCHS))
def test_every_arch_round_trips_through_build_model(arch):
    """build_model re-infers sizes (heads = width // 64); on meta tensors this costs no memory."""
    def signature(model):
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        return shapes, [getattr(m, "num_heads", None) for m in model.modules()]

    with torch.device("meta"):
        model = clip.model.CLIP(**CLIP_ARCHS[arch])
        rebuilt = clip.model.build_model(dict(model.state_dict()))
    assert signature(rebuilt) == signature(model)


def test_save_clip_rejects_unknown_options(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="onnx"):
        save_clip(tiny_model, tmp_path / "x.pt", fmt="onnx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bfloat16"):
        save_clip(tiny_model, tmp_path / "x.pt", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="tiny"):
        build_random_clip("tiny2")


def test_script_writes_loadable_file(tmp_path):
    out = tmp_path / "sub" / "random.pt"
    command = [sys.executable, "scripts/make_random_clip.py", "--arch", "tiny", "--seed", "3",
               "--format", "state_dict", "--dtype", "fp32", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    _assert_same_params(load_clip(out), build_random_clip("tiny", seed=3))


def test_script_help_lists_every_arch(capsys):
    spec = importlib.util.spec_from_file_location("make_random_clip",
                                                  REPO_ROOT / "scripts" / "make_random_clip.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(arch in out for arch in CLIP_ARCHS), out


# ----------------------------------------------------------------------------- resolution
def test_cache_dir_from_env_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv(CLIP_CACHE_ENV, str(tmp_path / "x"))
    assert clip_cache_dir() == tmp_path / "x"
    monkeypatch.delenv(CLIP_CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert clip_cache_dir() == tmp_path / ".cache" / "clip"


def test_names_map_to_url_basenames(cache_dir, tiny_files):
    assert set(available_backbones()) >= {"RN50", "ViT-B/32", "ViT-B/16", "ViT-L/14@336px"}
    for name, file_name in [("ViT-B/16", "ViT-B-16.pt"), ("ViT-L/14@336px", "ViT-L-14-336px.pt")]:
        shutil.copy(tiny_files["jit"], cache_dir / file_name)
        assert resolve_backbone(name) == cache_dir / file_name


def test_existing_paths_are_used_as_is(tiny_files, tmp_path, monkeypatch):
    shutil.copy(tiny_files["jit"], tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_backbone("w.pt") == Path("w.pt")
    assert resolve_backbone("~/w.pt") == tmp_path / "w.pt"
    assert resolve_backbone(str(tmp_path / "w.pt")) == tmp_path / "w.pt"


def test_missing_official_file_names_path_and_env_var(cache_dir):
    with pytest.raises(FileNotFoundError) as info:
        load_clip("ViT-B/32")
    message = str(info.value)
    assert str(cache_dir / "ViT-B-32.pt") in message
    assert CLIP_CACHE_ENV in message and "downloaded" in message


def test_unknown_name_suggests_closest_and_paths():
    with pytest.raises(ValueError) as info:
        resolve_backbone("ViT-B16")
    assert "'ViT-B/16'" in str(info.value) and "path" in str(info.value)


def test_missing_path_is_reported_as_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        resolve_backbone(str(tmp_path / "nothing.pt"))


# ----------------------------------------------------------------------------- checksums
def test_official_name_with_other_weights_is_rejected(cache_dir, tiny_files, hash_counter):
    target = cache_dir / "ViT-B-16.pt"
    shutil.copy(tiny_files["jit"], target)
    for name_or_path in ("ViT-B/16", str(target)):
        with pytest.raises(ChecksumMismatchError) as info:
            load_clip(name_or_path)
        assert str(target) in str(info.value) and "not the official" in str(info.value)
    assert not (cache_dir / loading.STAMP_FILE_NAME).exists()  # failures are never stamped
    _assert_same_params(load_clip("ViT-B/16", verify=False), load_clip(tiny_files["jit"]))


def test_verified_file_is_hashed_once_until_it_changes(cache_dir, tiny_files, hash_counter,
                                                       monkeypatch):
    target = cache_dir / "ViT-B-16.pt"
    shutil.copy(tiny_files["jit"], target)
    monkeypatch.setitem(OFFICIAL_SHA256, "ViT-B-16.pt", _sha256(target))
    first, second = load_clip("ViT-B/16"), load_clip("ViT-B/16")
    assert len(hash_counter) == 1
    _assert_same_params(first, second)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_clip("ViT-B/16")
    assert len(hash_counter) == 2


def test_custom_names_and_other_folders_are_not_hashed(cache_dir, tiny_files, hash_counter,
                                                       tmp_path):
    shutil.copy(tiny_files["jit"], cache_dir / "my-vit.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tiny_files["jit"], elsewhere / "ViT-B-16.pt")
    load_clip(cache_dir / "my-vit.pt")
    load_clip(elsewhere / "ViT-B-16.pt")
    assert hash_counter == []


# ----------------------------------------------------------------------------- bad files
def _garbage(path: Path, _: Path) -> None:
    path.write_bytes(b"definitely not a checkpoint" * 10)


def _truncated(path: Path, good: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_clip(path: Path, _: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)


@pytest.mark.parametrize("make_bad", [_garbage, _truncated, _not_clip])
def test_unusable_files_raise_one_clear_error(make_bad, tiny_files, tmp_path):
    bad = tmp_path / "bad.pt"
    make_bad(bad, tiny_files["jit"])
    with pytest.raises(CLIPWeightsError) as info:
        load_clip(bad)
    message = str(info.value)
    assert str(bad) in message and "torch.jit.load" in message and "torch.load" in message


def test_wrapped_and_prefixed_state_dicts_load(tiny_files, tmp_path):
    plain = load_state_dict_any(tiny_files["state_dict"])
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in plain.items()}, "epoch": 3}, wrapped)
    loaded = load_state_dict_any(wrapped)
    assert loaded.keys() == plain.keys()
    assert all(torch.equal(loaded[k], plain[k]) for k in plain)
