"""Train or evaluate a prompt learner: the CoOp repositories' ``train.py``, same flags and flow.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Differences from upstream, all fixes: ``--seed 0`` seeds with 0 (upstream ignores it); a
mistyped config key fails with the closest valid keys; the training config is merged in the
order given in docs/engine.md#configuration.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import torch

from disakit.bundle import register
from disakit.clipkit.loading import CLIPWeightsError, file_sha256, resolve_backbone
from disakit.dassl_api import build_trainer, collect_env_info, get_cfg_default, set_random_seed
from disakit.dasslite.utils.logger import setup_logger
from disakit.datasets.common import SplitFileError
from disakit.runkit.lock import FolderLockedError
from disakit.runkit.record import RunIdentityError, RunSession, make_identity, read_record
from disakit.runkit.safe_load import UnsafeCheckpointError
from disakit.runkit.state import resume_banner
from disakit.trainers.config import (
    ConfigError,
    check_output_dir,
    check_values,
    extend_cfg,
    merge_checked,
)

register()  # our trainers and dataset readers, into the seam's (Dassl's) registries


def print_args(args: argparse.Namespace, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """Copy command-line flags into the config (each only when given)."""
    flags = {"root": "DATASET.ROOT", "output_dir": "OUTPUT_DIR", "resume": "RESUME",
             "source_domains": "DATASET.SOURCE_DOMAINS", "target_domains": "DATASET.TARGET_DOMAINS",
             "transforms": "INPUT.TRANSFORMS", "trainer": "TRAINER.NAME",
             "backbone": "MODEL.BACKBONE.NAME", "head": "MODEL.HEAD.NAME"}
    for flag, key in flags.items():
        value = getattr(args, flag)
        if value:
            node, leaf = key.rsplit(".", 1) if "." in key else ("", key)
            target = cfg
            for part in filter(None, node.split(".")):
                target = target[part]
            target[leaf] = value
    if args.seed is not None:
        cfg.SEED = args.seed


def setup_cfg(args: argparse.Namespace):
    """Defaults -> toolkit keys -> dataset YAML -> trainer YAML -> flags -> opts, then freeze."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    # The trainer's upstream key spellings are translated (e.g. KgCoOp's TRAINER.COOP.*).
    if args.dataset_config_file:
        merge_checked(cfg, args.dataset_config_file,
                      f"--dataset-config-file {args.dataset_config_file}",
                      trainer=args.trainer or cfg.TRAINER.NAME)
    if args.config_file:
        merge_checked(cfg, args.config_file, f"--config-file {args.config_file}",
                      trainer=args.trainer or cfg.TRAINER.NAME)
    reset_cfg(cfg, args)
    merge_checked(cfg, list(args.opts), "the command-line options", trainer=cfg.TRAINER.NAME)
    check_values(cfg)
    cfg.freeze()
    return cfg


def run_identity(cfg, args: argparse.Namespace) -> dict:
    """Everything that determines this run's result (see :mod:`runkit.record`): the resolved
    config plus the backbone file's content and, for an evaluation, which model it evaluates."""
    try:
        backbone = file_sha256(resolve_backbone(cfg.MODEL.BACKBONE.NAME))
    except (OSError, ValueError, CLIPWeightsError):
        backbone = f"unresolved:{cfg.MODEL.BACKBONE.NAME}"  # loading it will fail and say why
    extra = {"run.backbone_sha256": backbone, "run.eval_only": bool(args.eval_only),
             "run.no_train": bool(args.no_train)}
    if args.eval_only:
        evaluated = read_record(args.model_dir) if args.model_dir else None
        extra["run.model"] = ((evaluated or {}).get("fingerprint")
                              or osp.abspath(args.model_dir or ""))
        extra["run.load_epoch"] = args.load_epoch
    return make_identity(cfg, extra)


def default_identity() -> dict:
    """The identity of the default config: keys a newer version added compare as defaults."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    return make_identity(cfg)


def main(args: argparse.Namespace) -> None:
    cfg = setup_cfg(args)
    check_output_dir(cfg.OUTPUT_DIR)
    if not cfg.OUTPUT_DIR:
        return run(cfg, args)
    session = RunSession(cfg.OUTPUT_DIR, run_identity(cfg, args), cfg.dump(),
                         overwrite=args.overwrite, defaults=default_identity())
    with session:
        if session.kind == "legacy":
            print(f"Note: {cfg.OUTPUT_DIR} has no run record (written by other code?); its config "
                  "cannot be checked against this run's. Recording this run's config now")
        run(cfg, args)


def run(cfg, args: argparse.Namespace) -> None:
    """The CoOp ``main``: seed, log, build the trainer, then evaluate or train."""
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if cfg.OUTPUT_DIR:  # a continued run appends to its log.txt (what the parsers read)
        setup_logger(cfg.OUTPUT_DIR, append_banner=resume_banner())
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="",
                   help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=None,
                   help="only non-negative value enables a fixed seed (0 included)")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="",
                   help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="",
                   help="CLIP backbone: a name (ViT-B/16, RN50, ...) or a checkpoint path")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="",
                   help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--overwrite", action="store_true",
                   help="the output dir holds a run with another config: move it aside to "
                        "<output-dir>/.replaced/<time>/ and start anew (default: refuse)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="modify config options using the command-line (KEY VALUE pairs)")
    return p


if __name__ == "__main__":
    try:
        main(build_parser().parse_args())
    except ConfigError as err:
        sys.exit(f"Config error: {err}")
    except SplitFileError as err:
        sys.exit(f"Dataset error: {err}")
    except (RunIdentityError, FolderLockedError, UnsafeCheckpointError) as err:
        sys.exit(f"Error: {err}")
