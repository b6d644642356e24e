"""The protocol driver behind every ``scripts/<method>/*.sh``; the logic is :mod:`runkit.protocol`.

    python scripts/protocol.py PHASE --trainer T [positional args] [KEY VALUE ...]

Run with ``--help`` for the phases, their arguments and the environment variables.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from disakit.runkit.protocol import *  # noqa: E402,F401,F403  (tests and users import ``protocol``)
from disakit.runkit.protocol import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
