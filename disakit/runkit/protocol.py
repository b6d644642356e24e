"""One parametrised driver behind every ``scripts/<method>/*.sh``.

The upstream repositories copy the same shell script per method and protocol (about 90
duplicate pairs per kLOC); here each ``.sh`` is a one-line call of this driver, and the
per-method choices (which config for which protocol, shots -> epochs) are a table.

    python scripts/protocol.py PHASE --trainer T [positional args] [KEY VALUE ...]

PHASE and its positional arguments:
    base2new_train DATASET SEED     train on base classes (16 shots)
    base2new_test  DATASET SEED     evaluate that checkpoint on the new classes
    xd_train       SEED             train on ImageNet, all classes (cross-dataset / DG source)
    xd_test        DATASET SEED     evaluate the ImageNet checkpoint on DATASET
    dg_test        DATASET SEED     same as xd_test (ImageNet-V2/-Sketch/-A/-R)
    few_shot       DATASET SHOTS SEED   train and test on all classes with SHOTS shots
    zeroshot       DATASET [base|new|all]   zero-shot CLIP evaluation (ZeroshotCLIP trainers)

Environment: DATA (dataset root, default ./data), OUTPUT (default ./output), SHOTS (base2new/xd
shots, default 16), CFG (override the config name), PYTHON (interpreter). Trailing KEY VALUE
pairs are forwarded to train.py as config options (a trailing DATASET.NUM_SHOTS also sets the
``shots_K`` folder). A job is skipped only when its folder holds a finished run of the *same*
configuration (``Oops! The results exist at ...``); an interrupted or failed job is resumed or
re-run; a folder holding a run of another configuration is refused, naming the keys that differ
(OVERWRITE=1 moves that run aside instead). Finished outputs are never overwritten.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import yaml

from disakit.runkit.state import JobState, job_state

ROOT = Path(__file__).resolve().parents[2]  # the repository (train.py, configs/, scripts/)

FEW_SHOTS = (1, 2, 4, 8, 16)


def _base2new_everywhere(cfg: str, **published: object) -> dict:
    """A method's rows where only ``published`` settings have their own config; the others use
    the base-to-novel config (docs/methods/README.md: those results are the toolkit's own runs)."""
    return {"base2new": cfg, "xd": cfg, "few_shot": {s: cfg for s in FEW_SHOTS}, **published}


# PromptSRC's few-shot GPA (45, 5) group; its config holds (30, 30) (docs/methods/promptsrc.md).
# DiSa mirrors it (docs/methods/disa.md); its GPA keys are floats, so values carry a decimal point.
_GPA_GROUP_B = ("stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat")


def _gpa_group_b(node: str, mean: str, std: str) -> dict[str, list[str]]:
    """``few_shot_opts`` giving the GPA group-B datasets ``TRAINER.<node>.GPA_MEAN/STD``."""
    opts = [f"TRAINER.{node}.GPA_MEAN", mean, f"TRAINER.{node}.GPA_STD", std]
    return {dataset: opts for dataset in _GPA_GROUP_B}

# CoOp's and DAPT's few-shot configs: epochs by shot count (ImageNet: vit_b16_ep50 for all).
_SHOT_EPOCH_CONFIGS = {1: "vit_b16_ep50", 2: "vit_b16_ep100", 4: "vit_b16_ep100", 8: "vit_b16",
                       16: "vit_b16"}


def _dapt(lr: str, vis_beta: str, txt_beta: str) -> list[str]:
    return ["OPTIM.LR", lr, "TRAINER.DAPT.VIS_BETA", vis_beta, "TRAINER.DAPT.TXT_BETA", txt_beta]


# DAPT's published per-dataset LR, beta_v and beta_t, the same for every shot count
# (docs/methods/dapt.md; upstream kept them in its dataset YAMLs, here DATASET.NAME-only).
DAPT_PER_DATASET = {
    "imagenet": _dapt("2.0", "0.01", "0.01"), "caltech101": _dapt("0.2", "10.0", "0.01"),
    "oxford_pets": _dapt("0.02", "10.0", "0.1"), "stanford_cars": _dapt("0.002", "100.0", "0.1"),
    "oxford_flowers": _dapt("0.002", "10.0", "0.01"), "food101": _dapt("20.0", "10.0", "0.01"),
    "fgvc_aircraft": _dapt("2.0", "100.0", "0.01"), "sun397": _dapt("20.0", "100.0", "0.01"),
    "dtd": _dapt("20.0", "100.0", "0.01"), "eurosat": _dapt("20.0", "100.0", "10.0"),
    "ucf101": _dapt("20.0", "0.1", "0.1"),
}

def _tcp(template: str, knowledge: str) -> list[str]:
    return ["TRAINER.TCP.TEMPLATE", template, "TRAINER.TCP.KNOWLEDGE_TEMPLATE", knowledge]


# TCP's per-dataset prompt and hand-crafted templates (docs/methods/tcp.md), as its official
# code keys them by dataset. The trainer falls back to the same table (disakit/clipkit/templates.py)
# for an empty key; here they are explicit options, so a trailing option beats the table and the
# table beats the config file. The ImageNet family shares ImageNet's entry.
_TCP_IMAGENET = _tcp("a photo of a {}.", "a photo of a {}.")
TCP_PER_DATASET = {
    "oxford_pets": _tcp("X X X X {}, a type of pet.", "a photo of a {}, a type of pet."),
    "oxford_flowers": _tcp("X X X X {}, a type of flower.", "a photo of a {}, a type of flower."),
    "fgvc_aircraft": _tcp("X X X X {}, a type of aircraft.", "a photo of an aircraft {}."),
    "dtd": _tcp("X X X X {} texture.", "a photo of a {}, a type of texture."),
    "eurosat": _tcp("X X X X {}.", "a centered satellite photo of {}."),
    "stanford_cars": _tcp("X X X X {}, a type of car", "a photo of a {}."),
    "food101": _tcp("X X X X {}, a type of food.", "a photo of a {}, a type of food."),
    "sun397": _tcp("X X X X {}.", "a photo of a {}."),
    "caltech101": _tcp("X X X X {}.", "a photo of a {}."),
    "ucf101": _tcp("a photo of a person doing {}.", "a photo of a person doing {}."),
    **{name: _TCP_IMAGENET for name in ("imagenet", "imagenetv2", "imagenet_sketch",
                                        "imagenet_a", "imagenet_r")},
}

# MMRL's and MMRL++'s published per-dataset tables (docs/methods/mmrl.md, docs/methods/mmrlpp.md),
# as the official train.py applies them: after the config files, before the command-line
# options (the table beats the YAML, a trailing option beats the table). MMRL has one table for
# every task; MMRL++ one for base-to-novel and few-shot (lambda and beta) and one for the
# cross-dataset / DG runs (the source's lambda and beta, and beta per target: beta also acts at
# test time). The official scripts also pass TASK per phase and, for MMRL's cross-dataset runs,
# REG_WEIGHT 0.2 (source) and REP_DIM 512 (targets: EuroSAT's 2048 could not load the ImageNet
# checkpoint); see MMRL_PHASES / MMRLPP_PHASES.
def _per_dataset(node: str, table: dict[str, tuple]) -> dict[str, list[str]]:
    keys = ("REG_WEIGHT", "BETA") if node == "MMRLPP" else ("REG_WEIGHT", "REP_DIM")
    return {dataset: [item for key, value in zip(keys, values) if value is not None
                      for item in (f"TRAINER.{node}.{key}", value)]
            for dataset, values in table.items()}


MMRL_PER_DATASET = _per_dataset("MMRL", {
    "stanford_cars": ("7.0",), "fgvc_aircraft": ("6.0",), "sun397": ("6.0",), "dtd": ("6.0",),
    "food101": ("5.0",), "oxford_flowers": ("4.0",), "ucf101": ("3.0",), "imagenet": ("0.5",),
    "caltech101": ("0.5",), "oxford_pets": ("0.2",), "eurosat": ("0.01", "2048"),
})
MMRLPP_PER_DATASET = _per_dataset("MMRLPP", {  # base-to-novel and few-shot: (lambda, beta)
    "imagenet": ("0.2", "0.9"), "fgvc_aircraft": ("2.0", "0.9"), "ucf101": ("3.0", "0.9"),
    "dtd": ("7.0", "0.9"), "oxford_pets": ("0.01", "0.7"), "stanford_cars": ("6.0", "0.7"),
    "caltech101": ("3.0", "0.6"), "sun397": ("3.0", "0.5"), "oxford_flowers": ("7.0", "0.4"),
    "eurosat": ("0.01", "0.2"), "food101": ("1.0", "0.1"),
})
MMRLPP_CROSS_DATASET = _per_dataset("MMRLPP", {  # source (lambda, beta); targets: beta
    "imagenet": ("0.1", "0.9"), "imagenetv2": (None, "0.9"), "imagenet_r": (None, "0.9"),
    "imagenet_a": (None, "0.8"), "imagenet_sketch": (None, "0.7"), "fgvc_aircraft": (None, "0.9"),
    "ucf101": (None, "0.9"), "sun397": (None, "0.7"), "oxford_pets": (None, "0.6"),
    "caltech101": (None, "0.6"), "dtd": (None, "0.5"), "oxford_flowers": (None, "0.4"),
    "stanford_cars": (None, "0.3"), "eurosat": (None, "0.3"), "food101": (None, "0.3"),
})


def _tasks(node: str) -> dict[str, dict[str, list[str]]]:
    """``phase_opts`` setting ``TRAINER.<node>.TASK`` per phase, as the official scripts do."""
    task = {"base2new_train": "B2N", "base2new_test": "B2N", "few_shot": "FS",
            "xd_train": "CD", "xd_test": "CD", "dg_test": "CD"}
    return {phase: {"*": [f"TRAINER.{node}.TASK", value]} for phase, value in task.items()}


MMRL_PHASES = _tasks("MMRL")
MMRL_PHASES["xd_train"]["*"] += ["TRAINER.MMRL.REG_WEIGHT", "0.2"]
for _phase in ("xd_test", "dg_test"):
    MMRL_PHASES[_phase]["*"] += ["TRAINER.MMRL.REG_WEIGHT", "0.2", "TRAINER.MMRL.REP_DIM", "512"]
MMRLPP_PHASES = _tasks("MMRLPP")
for _phase in ("base2new_train", "base2new_test", "few_shot"):
    MMRLPP_PHASES[_phase].update(MMRLPP_PER_DATASET)
for _phase in ("xd_train", "xd_test", "dg_test"):
    MMRLPP_PHASES[_phase].update(MMRLPP_CROSS_DATASET)


def _mmrl(dataset_opts: dict, phase_opts: dict) -> dict:
    """MMRL's / MMRL++'s configs per protocol (the official scripts' choices)."""
    return {"base2new": "vit_b16", "base2new_imagenet": "vit_b16_imagenet",
            "xd": "vit_b16_cross_datasets",
            "few_shot": {s: "vit_b16_few_shot" for s in FEW_SHOTS},
            "few_shot_imagenet": "vit_b16_imagenet",
            "dataset_opts": dataset_opts, "phase_opts": phase_opts}


# Per trainer: config per protocol. "few_shot" maps shots -> config; "<protocol>_<dataset>"
# (e.g. "base2new_imagenet") overrides it for that dataset;
# "few_shot_opts" maps a dataset to extra KEY VALUE options (before the user's own);
# "dataset_opts" does the same for every phase run on that dataset; "phase_opts" maps a phase
# to {dataset or "*" (every dataset): options}, placed after "dataset_opts" (so they win).
METHODS: dict[str, dict] = {
    "CoOp": {
        "base2new": "vit_b16_ctxv1", "base2new_imagenet": "vit_b16_ep50_ctxv1",
        "xd": "vit_b16_ep50_ctxv1",
        "few_shot": _SHOT_EPOCH_CONFIGS,
        "few_shot_imagenet": "vit_b16_ep50",
    },
    "CoCoOp": _base2new_everywhere("vit_b16_c4_ep10_batch1_ctxv1"),
    "KgCoOp": _base2new_everywhere("vit_b16_ep100_ctxv1"),
    "MaPLe": _base2new_everywhere("vit_b16_c2_ep5_batch4_2ctx",
                                  xd="vit_b16_c2_ep5_batch4_2ctx_cross_datasets"),
    # The PromptSRC paper's IVLP (4+4, depth 9); CFG=vit_b16_c2_ep5_batch4_2+2ctx gives MaPLe's.
    "IVLP": _base2new_everywhere("vit_b16_c2_ep20_batch4_4+4ctx"),
    "PromptSRC": _base2new_everywhere(
        "vit_b16_c2_ep20_batch4_4+4ctx", xd="vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
        few_shot={s: "vit_b16_c2_ep50_batch4_4+4ctx_few_shot" for s in FEW_SHOTS},
        few_shot_opts=_gpa_group_b("PROMPTSRC", "45", "5")),
    # DiSa's published-setting configs are the toolkit's reconstruction (docs/methods/disa.md).
    "DiSa": _base2new_everywhere(
        "vit_b16_c2_ep20_batch4_4+4ctx", xd="vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
        few_shot={s: "vit_b16_c2_ep50_batch4_4+4ctx_few_shot" for s in FEW_SHOTS},
        few_shot_opts=_gpa_group_b("DISA", "45.0", "5.0")),
    "VPT": _base2new_everywhere("vit_b16_c2_ep5_batch4_8ctx_deep"),
    # No base-to-novel config was published for DAPT: its 16-shot config (toolkit's own runs).
    "DAPT": {"base2new": "vit_b16", "base2new_imagenet": "vit_b16_ep50", "xd": "vit_b16_ep50",
             "few_shot": _SHOT_EPOCH_CONFIGS, "few_shot_imagenet": "vit_b16_ep50",
             "dataset_opts": DAPT_PER_DATASET},
    "DPL": _base2new_everywhere(
        "vit_b16_c2_ep5_batch4_4+4ctx", xd="vit_b16_c2_ep2_batch4_4+4ctx_cross_datasets",
        few_shot={s: "vit_b16_c2_ep50_batch4_4+4ctx_few_shot" for s in FEW_SHOTS}),
    # TCP published base-to-novel only: 50 epochs, 25 on ImageNet and SUN397 (the epoch its
    # script evaluates there); the other protocols use the base-to-novel configs.
    "TCP": _base2new_everywhere(
        "vit_b16_ep100_ctxv1", base2new_imagenet="vit_b16_ep25_ctxv1",
        base2new_sun397="vit_b16_ep25_ctxv1", xd="vit_b16_ep25_ctxv1",
        few_shot_imagenet="vit_b16_ep25_ctxv1", few_shot_sun397="vit_b16_ep25_ctxv1",
        dataset_opts=TCP_PER_DATASET),
    "MMRL": _mmrl(MMRL_PER_DATASET, MMRL_PHASES),
    "MMRLpp": _mmrl({}, MMRLPP_PHASES),
    "ZeroshotCLIP": {"zeroshot": "vit_b16"},
    "ZeroshotCLIP2": {"zeroshot": "vit_b16"},
}
CONFIG_DIRS = {"ZeroshotCLIP": "CoOp", "ZeroshotCLIP2": "CoOp"}


def config_name(trainer: str, protocol: str, dataset: str = "", shots: int = 16,
                env: Mapping[str, str] | None = None) -> str:
    """The config a protocol uses for a trainer (``CFG`` in the environment overrides it)."""
    env = os.environ if env is None else env
    if env.get("CFG"):
        return env["CFG"]
    table = METHODS.get(trainer)
    if table is None:
        raise SystemExit(f"unknown trainer {trainer!r}; scripts exist for {sorted(METHODS)}")
    if dataset and f"{protocol}_{dataset}" in table:  # e.g. base2new_imagenet
        return table[f"{protocol}_{dataset}"]
    entry = table.get(protocol)
    if entry is None:
        raise SystemExit(f"{trainer} has no {protocol} protocol in scripts/protocol.py")
    if isinstance(entry, dict):
        if shots not in entry:
            raise SystemExit(f"{trainer} few-shot configs exist for shots {sorted(entry)}")
        return entry[shots]
    return entry


def config_path(trainer: str, cfg: str) -> Path:
    path = ROOT / "configs" / "trainers" / CONFIG_DIRS.get(trainer, trainer) / f"{cfg}.yaml"
    if not path.is_file():
        raise SystemExit(f"config file not found: {path}")
    return path


def max_epoch(cfg_file: Path, opts: list[str]) -> int:
    """MAX_EPOCH after the trailing opts: the epoch of the checkpoint a test phase loads."""
    given = [value for key, value in zip(opts[::2], opts[1::2]) if key == "OPTIM.MAX_EPOCH"]
    if given:  # yacs applies the options in order, so the last one wins
        return int(given[-1])
    return int(yaml.safe_load(cfg_file.read_text())["OPTIM"]["MAX_EPOCH"])


class ProtocolError(SystemExit):
    """A bad script argument or environment value; the message says what and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Error: {message}")


def _train_module():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import train  # noqa: PLC0415  (heavy: torch, trainers; only when a job is checked)

    return train


def requested_identity(train_args: list[str]) -> dict:
    """The identity (runkit.record) that ``train.py train_args`` would record, computed here.

    Why in-process: deciding "finished" needs the *requested* run's identity; comparing only
    the log's end signal skipped jobs whose options had changed.
    """
    train = _train_module()
    args = train.build_parser().parse_args(train_args)
    return train.run_identity(train.setup_cfg(args), args)


def default_identity() -> dict:
    """The identity of the default config (keys a newer version added compare as defaults)."""
    return _train_module().default_identity()


def job_status(train_args: list[str], out_dir: Path, training: bool) -> JobState:
    """The job's state, judged against the requested configuration (see runkit.state)."""
    return job_state(out_dir, training, requested_identity(train_args), default_identity())


def run_train_py(args: list[str], out_dir: Path, done_signal: str) -> int:
    """Run train.py unless the same job already finished; never overwrite finished outputs."""
    # A job whose folder does not exist yet is pending: skip resolving its identity (importing
    # torch and every trainer here costs seconds per job of a table).
    state = (job_status(args, out_dir, training=done_signal == "Finish training")
             if out_dir.exists() else JobState("pending"))
    if state.status == "done":
        print(f"Oops! The results exist at {out_dir} (so skip this job)")
        return 0
    if state.status in ("interrupted", "failed"):
        print(f"Resuming the unfinished job in {out_dir} ({state.status}: {state.detail})")
    overwrite = ["--overwrite"] if os.environ.get("OVERWRITE", "") not in ("", "0") else []
    python = os.environ.get("PYTHON") or sys.executable
    cmd = [python, str(ROOT / "train.py"), *overwrite, *args]
    print("+ " + shlex.join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def _option(opts: list[str], key: str) -> str | None:
    """The value yacs ends up with for ``key`` among ``KEY VALUE`` pairs (the last one wins)."""
    given = [value for k, value in zip(opts[::2], opts[1::2]) if k == key]
    return given[-1] if given else None


def _positive_int(text: str, what: str, fix: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ProtocolError(f"{what} must be a whole number, got {text!r}; {fix}") from None
    if value < 1:
        raise ProtocolError(f"{what} must be at least 1, got {value}; {fix}")
    return value


def effective_shots(opts: list[str], env: Mapping[str, str]) -> int:
    """Shots of a base2new/xd job: a trailing ``DATASET.NUM_SHOTS`` beats ``SHOTS`` (default 16)."""
    given = _option(opts, "DATASET.NUM_SHOTS")
    if given is not None:
        return _positive_int(given, "DATASET.NUM_SHOTS", "e.g. DATASET.NUM_SHOTS 16")
    return _positive_int(env.get("SHOTS", "16"), "SHOTS", "e.g. SHOTS=16 bash ...")


def dataset_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs" / "datasets").glob("*.yaml"))


def check_dataset(name: str) -> str:
    if not (ROOT / "configs" / "datasets" / f"{name}.yaml").is_file():
        raise ProtocolError(f"unknown dataset {name!r}; the datasets are: "
                            f"{', '.join(dataset_names())}")
    return name


def common(trainer: str, cfg_file: Path, dataset: str, seed: int, out_dir: Path,
           data: str = "./data") -> list[str]:
    return ["--root", data, "--seed", str(seed),
            "--trainer", trainer, "--dataset-config-file",
            str(ROOT / "configs" / "datasets" / f"{dataset}.yaml"),
            "--config-file", str(cfg_file), "--output-dir", str(out_dir)]


def method_opts(trainer: str, phase: str, dataset: str) -> list[str]:
    """The METHODS table's options for a job: ``dataset_opts``, then ``phase_opts`` (for every
    dataset, then this one's); the user's trailing options come after them and win."""
    table = METHODS.get(trainer, {})
    by_phase = table.get("phase_opts", {}).get(phase, {})
    return [*table.get("dataset_opts", {}).get(dataset, []), *by_phase.get("*", []),
            *by_phase.get(dataset, [])]


def phase_jobs(ns: argparse.Namespace,
               env: Mapping[str, str] | None = None) -> tuple[list[str], Path, str]:
    """train.py arguments, output dir and completion signal for the requested phase.

    ``env`` (default ``os.environ``) gives DATA, OUTPUT, SHOTS and CFG, as for the scripts.
    """
    env = os.environ if env is None else env
    out = Path(env.get("OUTPUT", "./output"))
    data = env.get("DATA", "./data")
    t, p = ns.trainer, ns.phase
    if t not in METHODS:
        raise ProtocolError(f"unknown trainer {t!r}; scripts exist for "
                            f"{', '.join(sorted(METHODS))}")
    dataset = check_dataset(getattr(ns, "dataset", "imagenet"))  # xd_train runs on ImageNet
    opts = [*method_opts(t, p, dataset), *ns.opts]
    shots = effective_shots(opts, env) if p != "few_shot" else 16
    if p == "few_shot" and _option(opts, "DATASET.NUM_SHOTS") not in (None, str(ns.shots)):
        raise ProtocolError("few_shot takes the shots as its SHOTS argument (few_shot.sh DATASET "
                            "SHOTS SEED), not as a DATASET.NUM_SHOTS option")
    if p in ("base2new_train", "base2new_test"):
        cfg = config_name(t, "base2new", ns.dataset, env=env)
        sub = f"{ns.dataset}/shots_{shots}/{t}/{cfg}/seed{ns.seed}"
        train_dir = out / "base2new" / "train_base" / sub
        f = config_path(t, cfg)
        if p == "base2new_train":
            return (common(t, f, ns.dataset, ns.seed, train_dir, data)
                    + ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "base", *opts],
                    train_dir, "Finish training")
        test_dir = out / "base2new" / "test_new" / sub
        return (common(t, f, ns.dataset, ns.seed, test_dir, data)
                + ["--model-dir", str(train_dir), "--load-epoch", str(max_epoch(f, opts)),
                   "--eval-only", "DATASET.NUM_SHOTS", str(shots),
                   "DATASET.SUBSAMPLE_CLASSES", "new", *opts], test_dir, "=> result")
    if p in ("xd_train", "xd_test", "dg_test"):
        cfg = config_name(t, "xd", env=env)
        f = config_path(t, cfg)
        train_dir = out / "imagenet" / t / f"{cfg}_{shots}shots" / f"seed{ns.seed}"
        if p == "xd_train":
            return (common(t, f, "imagenet", ns.seed, train_dir, data)
                    + ["DATASET.NUM_SHOTS", str(shots), *opts], train_dir, "Finish training")
        test_dir = out / "evaluation" / t / f"{cfg}_{shots}shots" / ns.dataset / f"seed{ns.seed}"
        return (common(t, f, ns.dataset, ns.seed, test_dir, data)
                + ["--model-dir", str(train_dir), "--load-epoch", str(max_epoch(f, opts)),
                   "--eval-only", *opts], test_dir, "=> result")
    if p == "few_shot":
        cfg = config_name(t, "few_shot", ns.dataset, ns.shots, env=env)
        f = config_path(t, cfg)
        run_dir = out / ns.dataset / t / f"{cfg}_{ns.shots}shots" / f"seed{ns.seed}"
        table_opts = METHODS.get(t, {}).get("few_shot_opts", {}).get(ns.dataset, [])
        return (common(t, f, ns.dataset, ns.seed, run_dir, data)
                + ["DATASET.NUM_SHOTS", str(ns.shots), *table_opts, *opts], run_dir,
                "Finish training")
    cfg = config_name(t, "zeroshot", env=env)
    f = config_path(t, cfg)
    run_dir = out / t / cfg / ns.dataset
    extra = []
    if ns.subsample != "all":
        run_dir, extra = run_dir / ns.subsample, ["DATASET.SUBSAMPLE_CLASSES", ns.subsample]
    return (common(t, f, ns.dataset, 1, run_dir, data) + ["--eval-only", *extra, *opts],
            run_dir, "=> result")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trainer", required=True)
    phases = parser.add_subparsers(dest="phase", required=True)
    for name, fields in {"base2new_train": ("dataset", "seed"),
                         "base2new_test": ("dataset", "seed"), "xd_train": ("seed",),
                         "xd_test": ("dataset", "seed"), "dg_test": ("dataset", "seed"),
                         "few_shot": ("dataset", "shots", "seed"),
                         "zeroshot": ("dataset",)}.items():
        sub = phases.add_parser(name)
        for field in fields:
            sub.add_argument(field, type=int if field in ("seed", "shots") else str)
        sub.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config options")
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.phase == "zeroshot":  # optional [all|base|new] before the KEY VALUE options
        has_mode = bool(ns.opts) and ns.opts[0] in ("all", "base", "new")
        ns.subsample, ns.opts = (ns.opts[0], ns.opts[1:]) if has_mode else ("all", ns.opts)
    if len(ns.opts) % 2:
        raise SystemExit(f"config options must be KEY VALUE pairs, got {ns.opts}")
    args, out_dir, signal = phase_jobs(ns)
    return run_train_py(args, out_dir, signal)


if __name__ == "__main__":
    sys.exit(main())
