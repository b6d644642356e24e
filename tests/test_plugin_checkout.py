"""disakit.plugin inside a user's own CoOp-style checkout (their train.py, trainers, datasets,
bundled clip/), run through *their* CLI from *their* root, on a Dassl that is not our engine's
top-level package; plus the plugin's config merging in-process.

The checkout is written by the test: a minimal ``train.py`` modelled on CoOp's (same flags,
``extend_cfg`` / ``setup_cfg`` / ``main`` flow, ``from dassl...`` imports, trainer and dataset
modules imported at the top) with the two documented lines added; its own ``CoOp`` trainer and
``EuroSAT`` reader registered into the Dassl registries; its own ``clip/`` package, a stub that
leaves a marker file when imported. The Dassl is ``tests/fake_dassl`` (a reduced Dassl 0.6.3
test double) when present, else a package aliasing every ``dassl.<module>`` to the bundled
engine's module of that name; either way ``DASSL_BACKEND`` is unset, so the seam picks it as a
real Dassl.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FAST_OPTS, REPO
from yacs.config import CfgNode as CN

MARKER = "BUNDLED_CLIP_IMPORTED"

CHECKOUT = {
    "train.py": '''
        """A user's CoOp-style train.py (modelled on CoOp's), plus the two disakit lines."""
        import argparse

        import torch

        import disakit.plugin  # registers DiSa & co into this Dassl (done in extend_cfg)

        from dassl.utils import setup_logger, set_random_seed, collect_env_info
        from dassl.config import get_cfg_default
        from dassl.engine import build_trainer

        # custom
        import datasets.eurosat
        import trainers.coop


        def reset_cfg(cfg, args):
            if args.root:
                cfg.DATASET.ROOT = args.root
            if args.output_dir:
                cfg.OUTPUT_DIR = args.output_dir
            if args.seed:
                cfg.SEED = args.seed
            if args.trainer:
                cfg.TRAINER.NAME = args.trainer
            if args.backbone:
                cfg.MODEL.BACKBONE.NAME = args.backbone


        def extend_cfg(cfg):
            from yacs.config import CfgNode as CN

            cfg.TRAINER.COOP = CN()
            cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors
            cfg.TRAINER.COOP.CSC = False  # class-specific context
            cfg.TRAINER.COOP.CTX_INIT = ""  # initialization words
            cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32, amp
            cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # 'middle' or 'end' or 'front'
            cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
            disakit.plugin.extend_cfg(cfg)  # our TRAINER.<NAME> nodes; yours are kept


        def setup_cfg(args):
            cfg = get_cfg_default()
            extend_cfg(cfg)
            if args.dataset_config_file:
                cfg.merge_from_file(args.dataset_config_file)
            if args.config_file:
                cfg.merge_from_file(args.config_file)
            reset_cfg(cfg, args)
            cfg.merge_from_list(args.opts)
            cfg.freeze()
            return cfg


        def main(args):
            cfg = setup_cfg(args)
            if cfg.SEED >= 0:
                print("Setting fixed seed: {}".format(cfg.SEED))
                set_random_seed(cfg.SEED)
            setup_logger(cfg.OUTPUT_DIR)
            print("** System info **\\n{}\\n".format(collect_env_info()))
            trainer = build_trainer(cfg)
            if args.eval_only:
                trainer.load_model(args.model_dir, epoch=args.load_epoch)
                trainer.test()
                return
            if not args.no_train:
                trainer.train()


        if __name__ == "__main__":
            parser = argparse.ArgumentParser()
            parser.add_argument("--root", type=str, default="")
            parser.add_argument("--output-dir", type=str, default="")
            parser.add_argument("--seed", type=int, default=-1)
            parser.add_argument("--config-file", type=str, default="")
            parser.add_argument("--dataset-config-file", type=str, default="")
            parser.add_argument("--trainer", type=str, default="")
            parser.add_argument("--backbone", type=str, default="")
            parser.add_argument("--eval-only", action="store_true")
            parser.add_argument("--model-dir", type=str, default="")
            parser.add_argument("--load-epoch", type=int)
            parser.add_argument("--no-train", action="store_true")
            parser.add_argument("opts", default=None, nargs=argparse.REMAINDER)
            main(parser.parse_args())
    ''',
    "trainers/__init__.py": "",
    "trainers/coop.py": '''
        """The checkout's own CoOp (a stand-in: a linear probe on mean pixel colours)."""
        from torch import nn
        from torch.nn import functional as F

        from dassl.engine import TRAINER_REGISTRY, TrainerX
        from dassl.optim import build_optimizer, build_lr_scheduler


        @TRAINER_REGISTRY.register()
        class CoOp(TrainerX):
            def build_model(self):
                from clip import clip  # as CoOp does: the repository's bundled CLIP

                print(f"their CoOp, built with their clip ({clip.WHICH})")
                self.model = nn.Linear(3, self.num_classes).to(self.device)
                self.optim = build_optimizer(self.model, self.cfg.OPTIM)
                self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
                self.register_model("linear", self.model, self.optim, self.sched)

            def forward_backward(self, batch):
                image, label = self.parse_batch_train(batch)
                loss = F.cross_entropy(self.model(image.mean(dim=(2, 3))), label)
                self.model_backward_and_update(loss)
                if (self.batch_idx + 1) == self.num_batches:
                    self.update_lr()
                return {"loss": loss.item()}

            def parse_batch_train(self, batch):  # as CoOp's (Dassl's also returns the domain)
                return batch["img"].to(self.device), batch["label"].to(self.device)

            def model_inference(self, image):
                return self.model(image.mean(dim=(2, 3)))
    ''',
    "datasets/__init__.py": "",
    "datasets/eurosat.py": '''
        """The checkout's own EuroSAT reader (CoOp's split file, few-shot draw, base/new)."""
        import math
        import os

        from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase
        from dassl.utils import read_json


        @DATASET_REGISTRY.register()
        class EuroSAT(DatasetBase):
            dataset_dir = "eurosat"

            def __init__(self, cfg):
                print("their EuroSAT reader")
                root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
                self.dataset_dir = os.path.join(root, self.dataset_dir)
                split = read_json(os.path.join(self.dataset_dir, "split_zhou_EuroSAT.json"))
                image_dir = os.path.join(self.dataset_dir, "2750")
                train, val, test = (
                    [Datum(impath=os.path.join(image_dir, path), label=int(label), classname=name)
                     for path, label, name in split[part]] for part in ("train", "val", "test"))
                shots = cfg.DATASET.NUM_SHOTS
                if shots >= 1:
                    train = self.generate_fewshot_dataset(train, num_shots=shots)
                    val = self.generate_fewshot_dataset(val, num_shots=min(shots, 4))
                labels = sorted({item.label for item in train})
                half = math.ceil(len(labels) / 2)
                keep = {"all": labels, "base": labels[:half],
                        "new": labels[half:]}[cfg.DATASET.SUBSAMPLE_CLASSES]
                relabel = {old: new for new, old in enumerate(keep)}

                def sub(items):
                    return [Datum(impath=i.impath, label=relabel[i.label], classname=i.classname)
                            for i in items if i.label in relabel]

                super().__init__(train_x=sub(train), val=sub(val), test=sub(test))
    ''',
    "clip/__init__.py": f'''
        """Stand-in for the CLIP copy CoOp-family repositories bundle at their root."""
        import os

        with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "{MARKER}"), "a") as f:
            f.write("imported\\n")
        from . import clip  # noqa: F401  (``from clip import clip``, as their trainers write)
    ''',
    "clip/clip.py": 'WHICH = "bundled stub"\n',
    "configs/datasets/eurosat.yaml": 'DATASET:\n  NAME: "EuroSAT"\n',
}

# A Dassl whose every module is the bundled engine's (used when tests/fake_dassl is absent).
ALIAS_DASSL = '''
    """A stand-in Dassl: ``dassl.<module>`` is ``disakit.dasslite.<module>``."""
    import importlib
    import sys

    for _name in ("config", "engine", "data", "data.datasets", "data.transforms",
                  "data.samplers", "optim", "evaluation", "metrics", "utils"):
        _module = importlib.import_module("disakit.dasslite." + _name)
        sys.modules[__name__ + "." + _name] = _module
        if "." not in _name:
            globals()[_name] = _module
'''

DISA_FAST = ["TRAINER.DISA.PROMPT_DEPTH_TEXT", "2", "TRAINER.DISA.PROMPT_DEPTH_VISION", "2",
             "TRAINER.DISA.GPA_MEAN", "2.0"]


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def installed_clip_dir() -> Path:
    dist = importlib.metadata.distribution("openai-clip")
    return Path(dist.locate_file("clip/__init__.py")).parent.resolve()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> dict:
    """The user's checkout, a Dassl, ``disakit`` importable on its own, and generated data."""
    from disakit.datasets.synthetic import make_dataset

    base = tmp_path_factory.mktemp("plugin")
    repo = base / "their_coop"
    write_tree(repo, CHECKOUT)
    # Only the name ``disakit`` from this project (never its top-level train/trainers/datasets),
    # as an installed distribution provides it.
    site = base / "site"
    site.mkdir()
    (site / "disakit").symlink_to(REPO / "disakit", target_is_directory=True)
    fake = REPO / "tests" / "fake_dassl"
    if not (fake / "dassl" / "__init__.py").is_file():
        fake = base / "alias_dassl"
        write_tree(fake, {"dassl/__init__.py": ALIAS_DASSL})
    data = base / "data"
    make_dataset("eurosat", data, num_classes=4, per_class=(2, 1, 2), image_size=32)
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{site}", "DASSL_BACKEND": "",
           "PYTHONUNBUFFERED": "1"}
    return {"repo": repo, "data": data, "env": env, "dassl": fake}


def their_train(checkout: dict, trainer: str, out: Path, *opts: str, config: str = "",
                flags: tuple = ()) -> list[str]:
    """Their CLI: ``python train.py`` from their root, flags, then ``KEY VALUE`` options."""
    cmd = [sys.executable, "train.py", "--root", str(checkout["data"]), "--seed", "1",
           "--trainer", trainer, "--dataset-config-file", "configs/datasets/eurosat.yaml",
           "--output-dir", str(out), "--backbone", str(checkout["clip"]), *flags]
    return cmd + (["--config-file", config] if config else []) + [
        "DATASET.NUM_SHOTS", "2", *FAST_OPTS, *opts]


def run_all(checkout: dict, jobs: dict[str, list[str]]) -> dict[str, str]:
    procs = {name: subprocess.Popen(cmd, cwd=checkout["repo"], env=checkout["env"], text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name, cmd in jobs.items()}
    outs = {name: proc.communicate()[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: {jobs[name]} failed:\n{outs[name][-5000:]}"
    return outs


def test_disa_runs_in_their_checkout_with_their_cli_datasets_and_dassl(checkout, tiny_clip_path,
                                                                        tmp_path):
    checkout["clip"] = tiny_clip_path
    repo, marker = checkout["repo"], checkout["repo"] / MARKER
    configs = subprocess.run([sys.executable, "-m", "disakit.plugin", "configs", "DiSa"],
                             cwd=repo, env=checkout["env"], capture_output=True, text=True,
                             check=True).stdout.split()
    disa_cfg = next(c for c in configs if c.endswith("vit_b16_c2_ep20_batch4_4+4ctx.yaml"))

    train = run_all(checkout, {"DiSa": their_train(
        checkout, "DiSa", tmp_path / "base", "DATASET.SUBSAMPLE_CLASSES", "base", *DISA_FAST,
        config=disa_cfg)})["DiSa"]
    # The plugin's report: ours next to theirs, theirs kept, which CLIP.
    assert "disakit.plugin: our trainers and datasets in your Dassl registries" in train
    assert "disakit.CoOp (your CoOp is kept)" in train
    assert "disakit.EuroSAT (your EuroSAT is kept)" in train
    assert "DiSa," in train.split("trainers: ", 1)[1].splitlines()[0]
    assert "config kept as yours: DATASET.SUBSAMPLE_CLASSES, TRAINER.COOP" in train
    assert "TRAINER.DISA" in train.split("config added: ", 1)[1].splitlines()[0]
    assert f"CLIP for our trainers: disakit.clipkit._openai_clip from {installed_clip_dir()}" \
        in train
    # Their dataset reader, our trainer, their Dassl; trained and evaluated.
    assert "their EuroSAT reader" in train and "Loading trainer: DiSa" in train
    assert "Finish training" in train and "=> result" in train and "* accuracy:" in train
    assert (tmp_path / "base" / "prompt_learner" / "model.pth.tar-2").is_file()
    assert not marker.exists(), "our code imported the repository's bundled clip/"

    outs = run_all(checkout, {
        "DiSa new": their_train(checkout, "DiSa", tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES",
                                "new", *DISA_FAST, config=disa_cfg,
                                flags=("--eval-only", "--model-dir", str(tmp_path / "base"),
                                       "--load-epoch", "2")),
        "their CoOp": their_train(checkout, "CoOp", tmp_path / "their_coop", "OPTIM.MAX_EPOCH",
                                  "1"),
        "our CoOp": their_train(checkout, "disakit.CoOp", tmp_path / "our_coop",
                                flags=("--no-train",)),
    })
    assert "Loading weights to prompt_learner from" in outs["DiSa new"]
    assert "=> result" in outs["DiSa new"] and "their EuroSAT reader" in outs["DiSa new"]
    assert "their CoOp, built with their clip (bundled stub)" in outs["their CoOp"]
    assert "Finish training" in outs["their CoOp"]
    assert "Loading trainer: disakit.CoOp" in outs["our CoOp"]
    assert 'Initial context: "X X X X X X X X X X X X X X X X"' in outs["our CoOp"]  # their N_CTX
    assert marker.exists()  # their own trainer still gets their bundled clip


# ----------------------------------------------------------------------------- in-process
@pytest.fixture
def plugin(monkeypatch):
    import disakit.plugin as plugin

    monkeypatch.setattr(plugin, "_selection", dict(plugin._selection))
    monkeypatch.setattr(plugin, "_reported", False)
    return plugin


def their_cfg() -> CN:
    """The engine defaults plus a KgCoOp checkout's own ``extend_cfg`` nodes."""
    from disakit.dassl_api import get_cfg_default

    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN({"N_CTX": 16, "CSC": False, "CTX_INIT": False, "W": 1.0,
                           "PREC": "fp16", "CLASS_TOKEN_POSITION": "end", "ALPHA": 1.0})
    cfg.TRAINER.MAPLE = CN({"N_CTX": 2, "PROMPT_DEPTH": 3})
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.LOSS = CN({"GM": False})
    return cfg


def test_extend_cfg_adds_only_missing_keys_and_reports_what_stays_theirs(plugin, capsys):
    from disakit.trainers.config import TRAINER_KEYS

    cfg, before = their_cfg(), their_cfg()
    report = plugin.extend_cfg(cfg)
    printed = capsys.readouterr().out
    for node in ("COOP", "MAPLE"):  # every key they defined is untouched, type and value
        for key, value in before.TRAINER[node].items():
            assert cfg.TRAINER[node][key] == value and type(cfg.TRAINER[node][key]) is type(value)
    assert cfg.TRAINER.COOP.W == 1.0 and cfg.LOSS.GM is False
    assert cfg.TRAINER.MAPLE.CTX_INIT == "a photo of a"  # missing key added with our default
    assert dict(cfg.TRAINER.DISA) == TRAINER_KEYS["DISA"]  # missing node added whole
    assert "TRAINER.DISA" in report.added and "TRAINER.MAPLE.CTX_INIT" in report.added
    assert "TRAINER.COOP" in report.kept and "TRAINER.MAPLE.N_CTX" in report.kept
    assert "TRAINER.MAPLE.PROMPT_DEPTH is yours (3); our default is 9 (MaPLe reads yours)" \
        in report.differs
    assert "TRAINER.COOP.CTX_INIT is yours (False); our default is '' (CoOp reads yours)" \
        in report.differs
    assert "config kept as yours: " in printed and "TRAINER.COOP" in printed
    plugin.extend_cfg(their_cfg())
    assert capsys.readouterr().out == ""  # the report is printed once per process


def test_use_a_subset_adds_only_its_nodes(plugin):
    plugin.use(trainers=["DiSa"], datasets=None)
    cfg = their_cfg()
    report = plugin.extend_cfg(cfg, verbose=False)
    assert report.registration.trainers == {"DiSa": "DiSa"} and not report.registration.datasets
    assert "DISA" in cfg.TRAINER and "KGCOOP" not in cfg.TRAINER and "DPL" not in cfg.TRAINER
    with pytest.raises(KeyError, match="no bundled trainer named"):
        plugin.use(trainers="DiSaa")
        plugin.register()


def test_config_files_lists_our_configs(plugin):
    assert any(p.name == "vit_b16_c2_ep20_batch4_4+4ctx.yaml" for p in plugin.config_files("DiSa"))
    with pytest.raises(KeyError, match="known"):
        plugin.config_files("Nope")


def test_clip_is_the_installed_distribution_under_a_private_name():
    from disakit.clipkit import compat

    assert compat.clip.__name__ == compat.PRIVATE_NAME == "disakit.clipkit._openai_clip"
    assert Path(compat.clip.__file__).parent == installed_clip_dir() == compat.installed_clip_dir()
    assert compat.clip.model.CLIP.__module__ == "disakit.clipkit._openai_clip.model"


def test_no_clip_distribution_is_an_error_naming_the_fix(monkeypatch):
    from disakit.clipkit import compat

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(compat.ClipNotInstalledError, match="pip install openai-clip"):
        compat.installed_clip_dir()


def test_an_editable_clip_install_is_found_from_its_direct_url(tmp_path, monkeypatch):
    from disakit.clipkit import compat

    for name in ("__init__.py", "clip.py", "model.py"):
        (tmp_path / "CLIP" / "clip").mkdir(parents=True, exist_ok=True)
        (tmp_path / "CLIP" / "clip" / name).write_text("")

    class EditableDist:  # `pip install -e CLIP`: no package files listed, a PEP 610 record
        files = []

        def read_text(self, name):
            return json.dumps({"url": (tmp_path / "CLIP").as_uri(),
                               "dir_info": {"editable": True}}) if name == "direct_url.json" \
                else None

    def distribution(name):
        if name == "clip":
            return EditableDist()
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    assert compat.installed_clip_dir() == (tmp_path / "CLIP" / "clip").resolve()
