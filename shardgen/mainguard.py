"""Catch a classic multiprocessing mistake before any worker starts: ``shardgen.build()`` called by
a script's top-level code, outside ``if __name__ == "__main__":``.

Our workers start with the forkserver (or spawn) method, and each one first re-runs the main script
as ``__mp_main__`` (so that functions defined there can be unpickled). An unguarded ``build()`` then
runs again in every worker: they would write to DST too, then die, and the build would only see dead
workers ("out of memory?"). This module tells the user what is wrong and what to do instead.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import sys
import tokenize
from types import FrameType, ModuleType

from .errors import UsageError

HINT = (
    'put the call under `if __name__ == "__main__":` (see "Safe importing of main module" in the multiprocessing docs)'
)


def check_main_guard() -> None:
    """Raise :class:`UsageError` if starting our worker processes now would re-run this build in each."""
    # multiprocessing sets this while a new worker imports the main script: we are that re-run.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise UsageError(f"shardgen.build() ran again in a worker process re-running the main script; {HINT}")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)  # None for -c, the REPL and notebooks: nothing to re-run
    if main is None or path is None or not reruns_main(main):
        return
    line = top_level_line(main, sys._getframe(1))
    if line is not None and not guarded(path, line):
        message = f"line {line} calls shardgen.build() from the script's top level, which every worker re-runs"
        raise UsageError(f"{message}; {HINT}", path)


def reruns_main(main: ModuleType) -> bool:
    """Whether workers re-run ``main``, by the rules of ``multiprocessing.spawn``."""
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:  # python -m NAME: re-run by name, except a package's __main__
        return name != "__main__" and not name.endswith(".__main__")
    path = getattr(main, "__file__", None)
    return path is not None and os.path.splitext(os.path.basename(path))[0] != "ipython"


def top_level_line(main: ModuleType, frame: FrameType | None) -> int | None:
    """The line of ``main``'s top-level code that is running now, if the call comes from there."""
    line = None
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    return line


def guarded(path: str | None, line: int) -> bool:
    """Whether ``line`` of the script at ``path`` is inside an ``if __name__ == "__main__":`` block.

    A script that cannot be read or parsed counts as guarded: the check must never block a build
    that would have worked.
    """
    if path is None:
        return True
    try:
        with tokenize.open(path) as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError, TypeError):
        return True
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        inside = node.body[0].lineno <= line <= (node.body[-1].end_lineno or line)
        if inside and _is_main_test(node.test):
            return True
    return False


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    left, right = test.left, test.comparators[0]
    return (_is_name(left) and _is_main(right)) or (_is_main(left) and _is_name(right))


def _is_name(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "__name__"


def _is_main(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == "__main__"
