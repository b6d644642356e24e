"""``python -m disakit <command> ...``: the toolkit's commands.

    python -m disakit check-data DATA [--datasets NAME ...] [--verify-images] [--strict]

Each command is a ``main(argv, prog)`` function in the layer it belongs to, imported only when
it runs; add one by adding a row to :data:`COMMANDS`.
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

# command -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-data": ("disakit.datasets.check",
                   "check a data folder (the 15 benchmarks, your ImageFolder datasets) before "
                   "a run"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
    return (f"usage: python -m disakit <command> [options]\n\ncommands:\n{rows}\n\n"
            "'python -m disakit <command> --help' describes a command's options.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest, prog=f"python -m disakit {command}") or 0)


if __name__ == "__main__":
    sys.exit(main())
