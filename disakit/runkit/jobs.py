"""The unit the matrix driver schedules: one call of ``scripts/protocol.py``."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (train.py, configs/, scripts/)

# Phases that train (run first) and phases that evaluate a trained checkpoint (run after).
TRAIN_PHASES = ("base2new_train", "xd_train", "few_shot")
TEST_PHASES = ("base2new_test", "xd_test", "dg_test")


@dataclass(frozen=True)
class Job:
    """One job of a paper table, exactly as one ``scripts/<method>/<phase>.sh`` call runs it.

    ``positional`` are the protocol phase's positional arguments (e.g. ``("eurosat", "1")`` for
    ``base2new_train``); ``opts`` the trailing ``KEY VALUE`` options given to every job;
    ``out_dir`` the folder the per-job script writes; ``deps`` the keys of the jobs that must
    finish first (a test after its training).
    """

    key: str
    setting: str            # base2new | xd | dg | fewshot
    phase: str              # a scripts/protocol.py phase
    trainer: str
    dataset: str
    seed: int
    shots: int
    positional: tuple[str, ...]
    opts: tuple[str, ...]
    out_dir: Path
    deps: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=())  # e.g. (("SHOTS", "16"),)

    @property
    def is_train(self) -> bool:
        return self.phase in TRAIN_PHASES

    def argv(self, python: str | None = None) -> list[str]:
        """The command that runs this job (the same as the per-job ``.sh`` wrapper)."""
        return [python or sys.executable, str(ROOT / "scripts" / "protocol.py"),
                "--trainer", self.trainer, self.phase, *self.positional, *self.opts]

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment to run it in: ``base`` (default ``os.environ``) plus ``env``."""
        merged = dict(os.environ if base is None else base)
        merged.update(dict(self.env))
        return merged
