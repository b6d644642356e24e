"""Our trainers on a real Dassl 0.6.3, through the real CLI, with the compatibility layer
(disakit/dassl_compat.py).

CI cannot install Dassl (it is not on PyPI), so ``train.py`` runs with ``tests/fake_dassl`` on
``PYTHONPATH``: a test double that re-implements Dassl 0.6.3's relevant behaviour, failures on
current torch included (see its ``dassl/__init__.py``). The last tests prove it faithful: without
the compatibility layer it fails exactly as the real one does.
"""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST_OPTS, REPO, run_cli, run_concurrently

TESTS = Path(__file__).resolve().parent
FAKE_DASSL = TESTS / "fake_dassl"
FAULTS = TESTS / "faults"
ANNOUNCEMENT = ("disakit: adapted Dassl 0.6.3 to torch {torch}: warm-up schedulers without "
                "'verbose'; checkpoints read with the safe loader; warm-up schedulers restore "
                "either engine's scheduler state").format(
                    torch=".".join(torch.__version__.split("+")[0].split(".")[:2]))
VERBOSE_ERROR = ("TypeError: LRScheduler.__init__() takes from 2 to 3 positional arguments but 4 "
                 "were given")

# trainer -> (config, registered model name, options for the 2-layer tiny CLIP)
TRAINERS = {
    "CoOp": ("CoOp/vit_b16_ctxv1", "prompt_learner", ["TRAINER.COOP.CTX_INIT", ""]),
    "PromptSRC": ("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx", "VLPromptLearner", [
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
        "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1"]),
}


def on_dassl(**extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(FAKE_DASSL), str(REPO)]), "DASSL_BACKEND": "dassl",
            **extra}


ON_OURS = {"DASSL_BACKEND": "dasslite"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(4, 1, 2), image_size=32)
    return root


def train_cmd(trainer: str, data_root: Path, clip: Path, out: Path, *opts: str) -> list[str]:
    config, _, extra = TRAINERS[trainer]
    return [sys.executable, "train.py", "--root", str(data_root), "--seed", "1",
            "--trainer", trainer, "--dataset-config-file", "configs/datasets/eurosat.yaml",
            "--config-file", f"configs/trainers/{config}.yaml", "--output-dir", str(out),
            "--backbone", str(clip), *FAST_OPTS, *extra, "DATASET.NUM_SHOTS", "4",
            "DATASET.SUBSAMPLE_CLASSES", "base", *opts]


def eval_cmd(trainer: str, data_root: Path, clip: Path, model_dir: Path, out: Path) -> list[str]:
    cmd = train_cmd(trainer, data_root, clip, out, "DATASET.SUBSAMPLE_CLASSES", "new")
    return cmd[:2] + ["--eval-only", "--model-dir", str(model_dir), "--load-epoch", "2"] + cmd[2:]


def checkpoint(folder: Path, name: str, file: str) -> dict:
    from disakit.runkit.safe_load import safe_torch_load

    return safe_torch_load(folder / name / file)


# --------------------------------------------------------------------- train + eval on Dassl
def test_coop_and_promptsrc_train_and_evaluate_on_dassl(data_root, tiny_clip_path, tmp_path):
    trained = run_concurrently({t: train_cmd(t, data_root, tiny_clip_path, tmp_path / t)
                                for t in TRAINERS}, on_dassl())
    tested = run_concurrently({t: eval_cmd(t, data_root, tiny_clip_path, tmp_path / t,
                                           tmp_path / f"{t}-new") for t in TRAINERS}, on_dassl())
    for trainer, (_, model_name, _) in TRAINERS.items():
        for out in (trained[trainer], tested[trainer]):
            assert out.count("disakit: adapted Dassl") == 1, trainer
            assert ANNOUNCEMENT in out.splitlines(), trainer
        assert f"Loading trainer: {trainer}" in trained[trainer]
        assert "Finish training" in trained[trainer] and "=> result" in trained[trainer]
        assert f"Loading weights to {model_name} from" in tested[trainer]
        assert "=> result" in tested[trainer] and "SUBSAMPLE NEW CLASSES!" in tested[trainer]
        # Written by our bookkeeping (random states) with Dassl's scheduler (its own format,
        # the successor object pickled inside, which torch's default refuses).
        state = checkpoint(tmp_path / trainer, model_name, "model.pth.tar-2")
        assert "rng_state" in state and state["epoch"] == 2
        assert isinstance(state["scheduler"]["successor"], torch.optim.lr_scheduler.LRScheduler)
        with pytest.raises(Exception, match="weights_only"):
            torch.load(tmp_path / trainer / model_name / "model.pth.tar-2")
    assert "Using GPA model for final inference..." in trained["PromptSRC"]
    assert checkpoint(tmp_path / "PromptSRC", "VLPromptLearner", "model.pth.tar-2")[
        "gpa_epochs"] == 2


# -------------------------------------------------------------- resume across the two engines
RESUME_OPTS = ["OPTIM.MAX_EPOCH", "4"]


@pytest.fixture(scope="module")
def uninterrupted(data_root, tiny_clip_path, tmp_path_factory) -> Path:
    """PromptSRC (GPA) for 4 epochs on our engine, in one go."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run_cli(*train_cmd("PromptSRC", data_root, tiny_clip_path, out, *RESUME_OPTS), env=ON_OURS)
    return out


def killed_after_epoch_2(cmd: list[str], env: dict[str, str], marker: Path) -> None:
    """Run ``cmd`` until it is about to write the third rolling resume point (epochs 1-2 are
    saved), then ``kill -9`` it."""
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "FAULT": "pause_in_write:3",
            "FAULT_MARKER": str(marker),
            "PYTHONPATH": os.pathsep.join([str(FAULTS), env.get("PYTHONPATH", str(REPO))])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, f"{cmd} ended ({proc.returncode}) before the fault point"
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{cmd} did not reach the fault point in time")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("first, then", [("ours", "dassl"), ("dassl", "ours")])
def test_a_run_killed_on_one_engine_resumes_on_the_other_to_the_same_prompts(
        first, then, data_root, tiny_clip_path, uninterrupted, tmp_path):
    envs = {"ours": ON_OURS, "dassl": on_dassl()}
    out = tmp_path / "run"
    cmd = train_cmd("PromptSRC", data_root, tiny_clip_path, out, *RESUME_OPTS)
    killed_after_epoch_2(cmd, envs[first], tmp_path / "reached")
    assert (out / "VLPromptLearner" / "checkpoint").read_text().strip() == "model-resume.pth.tar"
    assert checkpoint(out, "VLPromptLearner", "model-resume.pth.tar")["epoch"] == 2

    resumed = run_cli(*cmd, env=envs[then]).stdout
    assert ("disakit: adapted Dassl" in resumed) == (then == "dassl")
    assert "Found checkpoint at" in resumed and "Previous epoch: 2" in resumed
    assert "epoch [3/4]" in resumed and "epoch [2/4]" not in resumed
    assert "Using GPA model for final inference..." in resumed and "=> result" in resumed

    final = checkpoint(out, "VLPromptLearner", "model.pth.tar-4")
    reference = checkpoint(uninterrupted, "VLPromptLearner", "model.pth.tar-4")
    assert final["gpa_epochs"] == reference["gpa_epochs"] == 4
    for key, value in reference["state_dict"].items():  # the GPA prompts, bit for bit
        assert torch.equal(final["state_dict"][key], value), key
        assert torch.equal(final["gpa_sum"][key], reference["gpa_sum"][key]), key
    assert final["optimizer"]["param_groups"][0]["lr"] == \
        reference["optimizer"]["param_groups"][0]["lr"]
    assert sorted(p.name for p in (out / "VLPromptLearner").iterdir()) == [
        "checkpoint", "model.pth.tar-4"]  # the resume point is gone


# ----------------------------------------------- the double is faithful: without the layer
def test_without_the_compat_layer_every_run_dies_in_build_trainer(data_root, tiny_clip_path,
                                                                  tmp_path):
    no_compat = ("import runpy, sys; import disakit.dassl_compat as compat; "
                 "compat.adapt = lambda announce=True: []; sys.argv = sys.argv[1:]; "
                 "runpy.run_path('train.py', run_name='__main__')")
    cmd = train_cmd("CoOp", data_root, tiny_clip_path, tmp_path / "out")
    proc = run_cli(sys.executable, "-c", no_compat, *cmd[1:], env=on_dassl(), check=False)
    assert proc.returncode != 0
    assert "disakit: adapted" not in proc.stdout
    assert "in build_trainer" in proc.stderr and VERBOSE_ERROR in proc.stderr


PROBE = '''
import pickle, sys, os.path as osp
import torch
import dassl.engine, dassl.engine.trainer, dassl.utils, dassl.utils.torchtools as torchtools
from dassl.optim import lr_scheduler as dassl_sched
from dassl.utils import Registry, load_checkpoint, save_checkpoint
from disakit import dassl_compat
from disakit.dasslite.optim import lr_scheduler as ours

def sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

def dassl_warmup(opt):
    return dassl_sched.ConstantWarmupScheduler(
        opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, 4.0), 1, 1e-5)

registry = Registry("TRAINER")
registry.register(int)
try:
    registry.register(int)
except KeyError as err:
    print("duplicate:", err)

try:
    dassl_warmup(sgd())
except TypeError as err:
    print("build:", err)

folder = sys.argv[1]
opt = sgd()
successor = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 4.0)
save_checkpoint({"state_dict": {}, "epoch": 1, "scheduler": {"successor": successor}}, folder)
try:
    load_checkpoint(osp.join(folder, "model.pth.tar-1"))
except pickle.UnpicklingError:
    print("load: refused by weights_only")

dassl_compat._adapt_verbose(dassl_sched)  # only the first adaptation
opt = sgd()
source = ours.ConstantWarmupScheduler(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, 4.0), 1, 1e-5)
source.step()
target = dassl_warmup(sgd())
target.load_state_dict(source.state_dict())
try:
    target.step()
except AttributeError as err:
    print("resume:", err)

print("adapted:", dassl_compat.adapt(announce=False), dassl_compat.adapt())
for module in (torchtools, dassl.utils, dassl.engine.trainer):
    print("loads:", module.load_checkpoint(osp.join(folder, "model.pth.tar-1"))["epoch"])
target = dassl_warmup(sgd())
successor = target.successor
target.optimizer.load_state_dict(opt.state_dict())
target.load_state_dict(source.state_dict())
target.step()
source.step()
print("restored in place:", target.successor is successor,
      target.get_last_lr() == source.get_last_lr() == [target.optimizer.param_groups[0]["lr"]])
'''


def test_the_double_fails_as_real_dassl_does_until_adapted(tmp_path):
    proc = run_cli(sys.executable, "-c", PROBE, str(tmp_path), env=on_dassl())
    out = [line for line in proc.stdout.splitlines() if not line.startswith("Checkpoint saved")]
    assert out == [
        'duplicate: \'An object named "int" was already registered in "TRAINER" registry\'',
        f"build: {VERBOSE_ERROR.removeprefix('TypeError: ')}",
        f'Unable to load checkpoint from "{tmp_path / "model.pth.tar-1"}"',
        "load: refused by weights_only",
        "resume: 'dict' object has no attribute 'get_last_lr'",
        "adapted: ['load_checkpoint', 'scheduler_state'] ['load_checkpoint', 'scheduler_state']",
        "loads: 1", "loads: 1", "loads: 1",
        "restored in place: True True",
    ]


def test_a_trained_optimizer_pickled_inside_a_dassl_scheduler_loads_safely(tmp_path):
    """Its state is a ``defaultdict`` with entries, which torch's weights-only unpickler alone
    refuses to fill; the safe loader reads it (as a plain dict) and still refuses code."""
    from disakit.runkit.safe_load import safe_torch_load

    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    param.sum().backward()
    optimizer.step()
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4.0)
    torch.save({"scheduler": {"successor": successor}}, tmp_path / "model.pth.tar-1")
    classes = [collections.defaultdict, type(successor), type(optimizer), dict]
    with pytest.raises(Exception, match="Can only SETITEM"), \
            torch.serialization.safe_globals(classes):  # allow-listing the classes is not enough
        torch.load(tmp_path / "model.pth.tar-1", weights_only=True)
    loaded = safe_torch_load(tmp_path / "model.pth.tar-1")["scheduler"]["successor"]
    assert loaded.state_dict() == successor.state_dict()
    assert torch.equal(loaded.optimizer.state[loaded.optimizer.param_groups[0]["params"][0]][
        "momentum_buffer"], optimizer.state[param]["momentum_buffer"])
