"""``python -m shardgen`` and the ``shardgen`` console script: run the command line (``cli.main``).

The command line's modules (typer, click: ~0.05 s) load with SIGINT blocked: a Ctrl-C meanwhile is
raised once they are in, and ends the process with one line and exit 130, not a traceback (nor
swallowed inside an import: see ``cli._EarlySigint``). Python's own start-up and the ``shardgen``
package's ``__init__`` (two standard modules) come before this module and are not covered.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Run one command of the command line; see :func:`shardgen.cli.main`."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") else None
    try:
        try:
            from .cli import main as run
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a Ctrl-C meanwhile is raised here
    except KeyboardInterrupt:
        sys.stderr.write("shardgen: interrupted\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
