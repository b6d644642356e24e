"""End to end through the real CLI: train.py, the CoOp scripts and parse_test_res.py, on a
generated EuroSAT-layout dataset with the tiny random CLIP on CPU."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST_OPTS, REPO, run_cli

COOP_CFG = "configs/trainers/CoOp/vit_b16_ctxv1.yaml"
# The regex of the upstream parse_test_res.py scripts (CoOp, MaPLe, PromptSRC).
UPSTREAM_REGEX = re.compile(r"\* accuracy: ([\.\deE+-]+)%")
BATCH_LINE = re.compile(
    r"^epoch \[\d+/\d+\] batch \[\d+/\d+\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} "
    r"\(\d+\.\d{3}\) loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) "
    r"lr \d\.\d{4}e[+-]\d{2} eta \d+:\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=6, per_class=(6, 2, 3))
    return root


def train_py(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "train.py", *args, check=check)


def base_args(data_root: Path, out: Path, clip: Path) -> list[str]:
    return ["--root", str(data_root), "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/eurosat.yaml", "--config-file", COOP_CFG,
            "--output-dir", str(out), "--backbone", str(clip)]


def test_base_train_then_new_eval_then_parse(data_root, tiny_clip_path, tmp_path):
    train_dir, test_dir = tmp_path / "train_base" / "seed1", tmp_path / "test_new" / "seed1"
    train_py(*base_args(data_root, train_dir, tiny_clip_path), *FAST_OPTS,
             "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base")
    ckpt = train_dir / "prompt_learner" / "model.pth.tar-2"
    assert ckpt.is_file() and (train_dir / "prompt_learner" / "checkpoint").read_text() == \
        "model.pth.tar-2\n"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(state["state_dict"]) == {"ctx"}  # only what is learned; no CLIP, no buffers
    log = (train_dir / "log.txt").read_text().splitlines()
    assert any(BATCH_LINE.match(line) for line in log)
    assert "# classes  3" in log and "Finish training" in log and "Deploy the last-epoch model" in log
    assert any(line.startswith("Elapsed: ") for line in log)

    proc = train_py(*base_args(data_root, test_dir, tiny_clip_path), "--model-dir", str(train_dir),
                    "--load-epoch", "2", "--eval-only", "DATALOADER.NUM_WORKERS", "0",
                    "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert f'Loading weights to prompt_learner from "{ckpt}" (epoch = 2)' in proc.stdout
    new_log = (test_dir / "log.txt").read_text()
    assert "# classes  3" in new_log and "* total: 9" in new_log  # 3 new classes x 3 test images
    base_acc = float(UPSTREAM_REGEX.findall("\n".join(log))[-1])
    new_acc = float(UPSTREAM_REGEX.findall(new_log)[-1])

    out = run_cli(sys.executable, "parse_test_res.py", str(tmp_path / "train_base")).stdout
    assert f"accuracy: {base_acc:.2f}%" in out
    out = run_cli(sys.executable, "parse_test_res.py", str(tmp_path / "test_new"),
                  "--test-log").stdout
    assert f"accuracy: {new_acc:.2f}%" in out


def test_scripts_base2new_and_summary(data_root, tiny_clip_path, tmp_path):
    env = {"DATA": str(data_root), "OUTPUT": str(tmp_path), "SHOTS": "2"}
    opts = ["MODEL.BACKBONE.NAME", str(tiny_clip_path), *FAST_OPTS]
    for script in ("base2new_train", "base2new_test"):
        run_cli("bash", f"scripts/coop/{script}.sh", "eurosat", "1", *opts, env=env)
    again = run_cli("bash", "scripts/coop/base2new_train.sh", "eurosat", "1", *opts, env=env)
    assert "Oops! The results exist at" in again.stdout  # finished jobs are never redone
    table = run_cli(sys.executable, "parse_test_res.py", str(tmp_path / "base2new"), "--base2new",
                    "--shots", "2").stdout
    assert "eurosat" in table and "CoOp" in table


def test_interrupted_run_resumes_to_the_same_final_checkpoint(data_root, tiny_clip_path, tmp_path):
    opts = [*FAST_OPTS, "OPTIM.MAX_EPOCH", "4", "TRAIN.CHECKPOINT_FREQ", "1",
            "DATASET.NUM_SHOTS", "4", "TRAINER.COOP.CTX_INIT", ""]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_py(*base_args(data_root, full, tiny_clip_path), *opts)
    # Kill the second run right after its epoch-2 checkpoint, as an interruption would.
    proc = subprocess.Popen([sys.executable, "train.py", *base_args(data_root, cut, tiny_clip_path),
                             *opts], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("Checkpoint saved to") and line.rstrip().endswith("model.pth.tar-2"):
            proc.kill()
            break
    proc.wait()
    assert not (cut / "prompt_learner" / "model.pth.tar-4").exists()
    resumed = train_py(*base_args(data_root, cut, tiny_clip_path), *opts)
    assert "Found checkpoint at" in resumed.stdout and "epoch [1/4]" not in resumed.stdout
    assert "epoch [3/4]" in resumed.stdout
    a = torch.load(full / "prompt_learner" / "model.pth.tar-4", weights_only=True)["state_dict"]
    b = torch.load(cut / "prompt_learner" / "model.pth.tar-4", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (cut / "log.txt").read_text()  # one log: the killed attempt, a banner, the result
    assert log.count("=> Run continued") == 1 and log.count("* accuracy:") == 1
    assert log.index("epoch [1/4]") < log.index("=> Run continued") < log.index("=> result")
    assert "model.pth.tar-2" in log.split("=> Run continued")[0]  # line-buffered up to the kill


def test_missing_backbone_names_the_searched_path(data_root, tmp_path):
    proc = train_py(*base_args(data_root, tmp_path / "o", tmp_path / "nope.pt"), check=False)
    assert proc.returncode != 0 and "nope.pt" in proc.stderr
    env_proc = run_cli(sys.executable, "train.py", *base_args(data_root, tmp_path / "o2", "ViT-B/16"),
                       env={"CLIP_CACHE_DIR": str(tmp_path / "cache")}, check=False)
    assert env_proc.returncode != 0
    assert str(tmp_path / "cache" / "ViT-B-16.pt") in env_proc.stderr


def test_zero_shot_logits_equal_the_clip_package(data_root, tiny_clip_path):
    """ZeroshotCLIP through our loader and encoders == the clip package's own model."""
    import train
    from disakit.clipkit.compat import clip
    from disakit.clipkit.random_clip import build_random_clip, save_clip

    jit_path = tiny_clip_path.with_name("tiny-jit.pt")
    if not jit_path.exists():
        save_clip(build_random_clip("tiny", seed=0), jit_path, fmt="jit")
    args = train.build_parser().parse_args(
        ["--root", str(data_root), "--trainer", "ZeroshotCLIP", "--dataset-config-file",
         "configs/datasets/eurosat.yaml", "--config-file", COOP_CFG, "--backbone", str(jit_path),
         "DATALOADER.NUM_WORKERS", "0"])
    from disakit.dassl_api import build_trainer
    trainer = build_trainer(train.setup_cfg(args))
    batch = next(iter(trainer.test_loader))
    ours = trainer.model_inference(batch["img"])

    ref, _ = clip.load(str(jit_path), device="cpu", jit=False)
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    text = clip.tokenize([f"a centered satellite photo of {c}." for c in names])
    with torch.no_grad():
        img = ref.encode_image(batch["img"])
        txt = ref.encode_text(text)
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        expected = ref.logit_scale.exp() * img @ txt.t()
    assert (ours - expected).abs().max() <= 1e-3 * expected.abs().max()
    assert torch.equal(ours.argmax(1), expected.argmax(1))


def test_zeroshot_script_with_and_without_subsample(data_root, tiny_clip_path, tmp_path):
    env = {"DATA": str(data_root), "OUTPUT": str(tmp_path)}
    opts = ["MODEL.BACKBONE.NAME", str(tiny_clip_path), "DATALOADER.NUM_WORKERS", "0"]
    run_cli("bash", "scripts/zsclip/zeroshot.sh", "eurosat", "new", *opts, env=env)
    run_cli("bash", "scripts/zsclip/zeroshot.sh", "eurosat", *opts,
            env={**env, "TRAINER": "ZeroshotCLIP2"})
    new_log = (tmp_path / "ZeroshotCLIP" / "vit_b16" / "eurosat" / "new" / "log.txt").read_text()
    assert "SUBSAMPLE NEW CLASSES!" in new_log and UPSTREAM_REGEX.search(new_log)
    ens_log = (tmp_path / "ZeroshotCLIP2" / "vit_b16" / "eurosat" / "log.txt").read_text()
    assert "Prompt ensembling (n=8)" in ens_log and UPSTREAM_REGEX.search(ens_log)
