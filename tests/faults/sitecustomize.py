"""Test-only fault injection into a real ``train.py`` subprocess (never shipped to users).

A test puts this folder first on ``PYTHONPATH`` and sets ``FAULT``; Python imports this module at
start-up, before ``train.py`` runs, so the process under test is the real CLI with one seam
patched to stop at a precise moment:

* ``FAULT=pause_at_batch:E:B`` -- at epoch E (1-based), batch B: write ``$FAULT_MARKER``, then
  sleep until killed (the test sends ``SIGKILL``); the marker holds the pid and the command
  line, and only the first process to get there pauses (one-shot: a later one, e.g. a
  resumed run or the next job of a matrix, goes on);
* ``FAULT=pause_in_write:N`` -- on the N-th rolling-checkpoint write, after the temporary file is
  complete but before it replaces the checkpoint: same;
* ``FAULT=crash_in_test`` -- the final evaluation raises (once; ``$FAULT_MARKER`` records it).
"""
import os
import sys
import time

_FAULT = os.environ.get("FAULT", "")
_MARKER = os.environ.get("FAULT_MARKER", "")


def _claim() -> bool:
    """Whether this process is the first to reach the fault (then it acts on it).

    The claim is one exclusive create, so two jobs of a matrix that reach the fault in the same
    instant cannot both claim it (checking that the marker exists and then writing it could
    let both through, and the loser then crashed replacing the shared temporary file).
    """
    try:
        os.close(os.open(_MARKER + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _pause() -> None:
    """Pause this process for the test to kill -- once: a later process (a resumed run, the
    next job of a matrix) finds the fault claimed and goes on."""
    if not _claim():
        return
    tmp = f"{_MARKER}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n{' '.join(sys.argv)}\n")
    os.replace(tmp, _MARKER)  # the test reads a whole marker or none
    sys.stdout.flush()
    while True:
        time.sleep(1)


def _install() -> None:
    kind, *args = _FAULT.split(":")
    if kind == "pause_at_batch":
        from disakit.dasslite.engine.trainer import TrainerX

        epoch, batch = int(args[0]), int(args[1])
        original = TrainerX.run_epoch

        def run_epoch(self):
            if self.epoch + 1 == epoch:
                loader = self.train_loader_x

                class Pausing:
                    def __len__(self):
                        return len(loader)

                    def __iter__(self):
                        for i, item in enumerate(loader):
                            if i + 1 == batch:
                                _pause()
                            yield item

                self.train_loader_x = Pausing()
                try:
                    return original(self)
                finally:
                    self.train_loader_x = loader
            return original(self)

        TrainerX.run_epoch = run_epoch
    elif kind == "pause_in_write":
        from disakit.dasslite.utils import RESUME_FILE

        target, seen = int(args[0]), [0]
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if os.path.basename(str(dst)) == RESUME_FILE:
                seen[0] += 1
                if seen[0] == target:
                    _pause()
            return real_replace(src, dst, *a, **k)

        os.replace = replace
    elif kind == "crash_in_test":
        from disakit.dasslite.evaluation.evaluator import Classification

        original_eval = Classification.evaluate

        def evaluate(self):
            if _claim():
                open(_MARKER, "w").close()
                raise RuntimeError("injected failure in the final test")
            return original_eval(self)

        Classification.evaluate = evaluate


if _FAULT:
    _install()
