"""build() from a script without the main guard: a clear error before any worker starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

import pytest

from shardgen.errors import UsageError
from shardgen.mainguard import check_main_guard, guarded, reruns_main
from tests.helpers import ROOT

UNGUARDED = """\
import shardgen

shardgen.build({src!r}, {dst!r}, procs=2)
print("built")
"""


def run_script(path) -> subprocess.CompletedProcess:
    """Run ``python PATH`` with this worktree's shardgen importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, env=env)


def test_unguarded_script_says_what_to_do(sample_src, tmp_path):
    """A script calling build() at its top level fails at once, naming itself, the line and the fix."""
    script = tmp_path / "train.py"
    script.write_text(UNGUARDED.format(src=str(sample_src), dst=str(tmp_path / "out")))
    result = run_script(script)
    assert result.returncode != 0 and "built" not in result.stdout
    assert f"{script}: line 3 calls shardgen.build() from the script's top level" in result.stderr
    assert 'put the call under `if __name__ == "__main__":`' in result.stderr
    assert "out of memory" not in result.stderr
    assert not (tmp_path / "out").exists()  # stopped before DST was touched


@pytest.mark.parametrize(
    ("source", "line", "expected"),
    [
        ("build()\n", 1, False),
        ('if __name__ == "__main__":\n    build()\n', 2, True),
        ("if '__main__' == __name__:\n    build()\n", 2, True),
        ('if __name__ == "__main__":\n    pass\nelse:\n    build()\n', 4, False),
        ('if __name__ != "__main__":\n    build()\n', 2, False),
        ('def main():\n    build()\n\n\nif __name__ == "__main__":\n    main()\n', 6, True),
        ("def main():\n    build()\n\n\nmain()\n", 5, False),
    ],
)
def test_guarded_finds_the_main_block(tmp_path, source, line, expected):
    """Only lines in the body of ``if __name__ == "__main__":`` count as guarded."""
    script = tmp_path / "script.py"
    script.write_text(source)
    assert guarded(str(script), line) is expected


@pytest.mark.parametrize(
    ("attributes", "reruns"),
    [
        ({"__file__": "/x/train.py"}, True),
        ({"__file__": "/x/ipython.py"}, False),
        ({"__file__": "/x/__main__.py", "__spec__": "shardgen.__main__"}, False),
        ({"__file__": "/x/tool.py", "__spec__": "tool"}, True),
        ({}, False),
    ],
)
def test_reruns_main_follows_multiprocessing(attributes, reruns):
    """Workers re-run a script or a ``-m`` module, never a package's ``__main__``, IPython or ``-c`` code."""
    main = types.ModuleType("__main__")
    for name, value in attributes.items():
        setattr(main, name, types.SimpleNamespace(name=value) if name == "__spec__" else value)
    assert reruns_main(main) is reruns


def test_main_without_a_file_is_never_blocked(monkeypatch):
    """A notebook's or ``python -c``'s main module has no file: nothing is re-run, nothing refused."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    check_main_guard()


def test_unreadable_script_counts_as_guarded(tmp_path):
    """A script whose source is gone never blocks a build."""
    assert guarded(str(tmp_path / "gone.py"), 1) is True


def test_a_worker_re_running_the_script_stops_at_once(monkeypatch):
    """Inside a worker that is still importing the main script, build() refuses before doing anything."""
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(UsageError, match="re-running the main script"):
        check_main_guard()


@pytest.mark.slow
def test_guarded_script_builds(sample_src, tmp_path):
    """The same script with its call under the main guard builds as usual."""
    script = tmp_path / "train.py"
    body = textwrap.indent(UNGUARDED.format(src=str(sample_src), dst=str(tmp_path / "out")).split("\n", 2)[2], "    ")
    script.write_text(f'import shardgen\n\nif __name__ == "__main__":\n{body}')
    result = run_script(script)
    assert result.returncode == 0, result.stderr
    assert "built" in result.stdout and (tmp_path / "out" / "manifest.json").exists()
