"""The run record on its own: identity comparison across toolkit versions, the folder lock."""
from __future__ import annotations

import json

import pytest

from disakit.runkit.lock import FolderLock, FolderLockedError
from disakit.runkit.record import RunIdentityError, RunRecord, fingerprint
from disakit.runkit.state import job_state

OLD = {"OPTIM.LR": 0.002, "DATASET.NAME": "EuroSAT", "SEED": 1}
DEFAULTS = {"OPTIM.LR": 0.002, "DATASET.NAME": "", "SEED": -1, "DATASET.DIR": ""}


def _finished_folder(tmp_path, identity):
    (tmp_path / "log.txt").write_text("Finish training\n=> result\n* accuracy: 50.0%\n")
    (tmp_path / "run.json").write_text(json.dumps(
        {"fingerprint": fingerprint(identity), "identity": identity, "status": "finished"}))
    return tmp_path


def test_a_key_added_later_with_its_default_is_the_same_run(tmp_path):
    folder = _finished_folder(tmp_path, OLD)
    newer = {**OLD, "DATASET.DIR": ""}  # a key a later version added, at its default
    assert fingerprint(newer) != fingerprint(OLD)
    assert RunRecord(folder, newer, ["x"], DEFAULTS).check() == "same"
    assert job_state(folder, True, newer, DEFAULTS).status == "done"


def test_a_key_added_later_with_another_value_is_another_run(tmp_path):
    folder = _finished_folder(tmp_path, OLD)
    newer = {**OLD, "DATASET.DIR": "mine"}
    with pytest.raises(RunIdentityError, match=r"DATASET.DIR: '<unset>' -> 'mine'"):
        RunRecord(folder, newer, ["x"], DEFAULTS).check()
    state = job_state(folder, True, newer, DEFAULTS)
    assert state.status == "mismatch" and "DATASET.DIR" in state.detail


def test_changed_value_is_another_run_even_without_defaults(tmp_path):
    folder = _finished_folder(tmp_path, OLD)
    with pytest.raises(RunIdentityError, match=r"OPTIM.LR: 0.002 -> 0.05"):
        RunRecord(folder, {**OLD, "OPTIM.LR": 0.05}, ["x"]).check()


def test_gradient_checkpointing_does_not_change_the_run():
    """It is exact, so switching it on to continue a run short of memory is the same run."""
    from yacs.config import CfgNode as CN

    from disakit.runkit.record import make_identity

    cfg = CN({"MODEL": CN({"GRAD_CHECKPOINTING": False, "INIT_WEIGHTS": ""}), "SEED": 1})
    on = cfg.clone()
    on.MODEL.GRAD_CHECKPOINTING = True
    assert fingerprint(make_identity(on)) == fingerprint(make_identity(cfg))
    on.MODEL.INIT_WEIGHTS = "w.pth"  # any other key of the node still counts
    assert fingerprint(make_identity(on)) != fingerprint(make_identity(cfg))


def test_lock_refuses_a_live_holder_and_releases(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(FolderLockedError, match="in use by another run"):
            FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path):  # released: free again
        pass
