"""Run and report a paper's whole table (the logic is :mod:`runkit.driver`); ``--help`` for use."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from disakit.runkit.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
