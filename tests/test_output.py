"""The output folder: --overwrite deletes only shardgen's own files, one build at a time, clear refusals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from shardgen.errors import InputError, OptionsChangedError, OutputLockedError, UsageError
from shardgen.identity import describe_difference
from shardgen.location import Location
from shardgen.npz import object_array
from shardgen.options import BuildOptions, RenderOptions
from shardgen.output import locked, record_outputs
from shardgen.pipeline import build
from tests.helpers import (
    BUILD_ARGS,
    ROOT,
    kill_build_at,
    kill_group,
    run_cli,
    shard_bytes,
    start_cli,
    wait_for,
    write_npz,
)

OPTIONS = BuildOptions(render=RenderOptions(size=32), shard_size=100, splits=("valid",))
OTHER = BuildOptions(render=RenderOptions(size=32), shard_size=240, splits=("valid",))


def user_files(dst) -> dict[str, str]:
    """Files a user keeps in the output folder, with names close to what shardgen writes."""
    files = {"thesis-backup.tar": "keep", ".notes.tmp": "x", "README.md": "# mine", "old.tar.partial": "y"}
    for name, text in files.items():
        (dst / name).write_text(text)
    return files


def test_overwrite_keeps_files_shardgen_did_not_write(tmp_path):
    """The issue's reproduction: --overwrite into a folder of the user's keeps both files and says so."""
    assert run_cli("sample", tmp_path / "s", "-n", "5").returncode == 0
    out = tmp_path / "u"
    out.mkdir()
    (out / "thesis-backup.tar").write_text("keep\n")
    (out / ".notes.tmp").write_text("x\n")
    result = run_cli("build", tmp_path / "s", out, "--overwrite", "--procs", "1", "--size", "32", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (out / "thesis-backup.tar").read_text() == "keep\n" and (out / ".notes.tmp").read_text() == "x\n"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and ".notes.tmp, thesis-backup.tar" in warnings[0], result.stderr


@pytest.mark.parametrize("records", ["state folder", "manifest only"])
def test_overwrite_replaces_the_recorded_build_and_keeps_the_rest(sample_src, tmp_path, records):
    """--overwrite removes the old build's shards (known from .shardgen or from the manifest alone), nothing else."""
    build(sample_src, tmp_path, OPTIONS, procs=1)
    assert len(list(tmp_path.glob("valid-*.tar"))) == 3
    files = user_files(tmp_path)
    if records == "manifest only":
        shutil.rmtree(tmp_path / ".shardgen")
    build(sample_src, tmp_path, OTHER, procs=1, overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("valid-*.tar")) == ["valid-000000.tar"]
    assert {name: (tmp_path / name).read_text() for name in files} == files


@pytest.mark.parametrize(
    ("where", "removed"), [("outputs record", True), ("manifest files", True), ("no record", False)]
)
def test_overwrite_removes_an_extra_file_only_when_a_record_names_it(sample_src, tmp_path, where, removed):
    """A file such as README.md goes with --overwrite only if the state or the manifest records shardgen wrote it."""
    build(sample_src, tmp_path, OPTIONS, procs=1)
    (tmp_path / "README.md").write_text("card")
    if where == "outputs record":
        record_outputs(Location.of(tmp_path), ["README.md"])
    elif where == "manifest files":
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "files": ["README.md"]}))
    build(sample_src, tmp_path, OTHER, procs=1, overwrite=True)
    # Where the old file went, the new build wrote its own dataset card (see card.py).
    assert ((tmp_path / "README.md").read_text() == "card") is not removed


def test_records_never_make_overwrite_delete_outside_dst(sample_src, tmp_path):
    """A manifest naming ../victim or a sub-path does not make --overwrite touch that file."""
    dst, victim = tmp_path / "out", tmp_path / "victim.tar"
    build(sample_src, dst, OPTIONS, procs=1)
    victim.write_text("precious")
    manifest = json.loads((dst / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps({**manifest, "files": ["../victim.tar", str(victim)]}))
    build(sample_src, dst, OTHER, procs=1, overwrite=True)
    assert victim.read_text() == "precious"


def test_refusal_of_a_foreign_folder_does_not_offer_overwrite(sample_src, tmp_path):
    """A non-empty folder that holds no build is refused without suggesting --overwrite."""
    user_files(tmp_path)
    with pytest.raises(UsageError, match="holds no shardgen build") as refused:
        build(sample_src, tmp_path, OPTIONS, procs=1)
    assert "--overwrite" not in str(refused.value)


def test_overwrite_refuses_a_foreign_file_under_a_name_it_writes(sample_src, tmp_path):
    """--overwrite never replaces a user's file named like a shard; it refuses, naming it, and keeps it."""
    (tmp_path / "valid-000000.tar").write_text("mine")
    with pytest.raises(UsageError, match="valid-000000.tar, named as shardgen names its outputs"):
        build(sample_src, tmp_path, OPTIONS, procs=1, overwrite=True)
    assert (tmp_path / "valid-000000.tar").read_text() == "mine"


def test_overwrite_that_refuses_deletes_nothing(sample_src, tmp_path):
    """--overwrite refused over a user's file named like a shard leaves the old build whole, not half deleted."""
    build(sample_src, tmp_path, OPTIONS, procs=1)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    (tmp_path / "valid-000007.tar").write_text("mine")
    with pytest.raises(UsageError, match=r"valid-000007.tar, .*\(nothing was deleted\)"):
        build(sample_src, tmp_path, OTHER, procs=1, overwrite=True)
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    assert after == {**before, "valid-000007.tar": b"mine"}
    rerun = build(sample_src, tmp_path, OPTIONS, procs=1)
    assert (rerun.shards_written, rerun.shards_reused) == (0, 3)


def test_a_locked_folder_refuses_a_second_holder_at_once(tmp_path):
    """While one holder has DST locked, another is refused with OutputLockedError naming this process."""
    dst, state = Location.of(tmp_path), tmp_path / ".shardgen"
    with locked(dst, state), pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"), locked(dst, state):
        pass
    with locked(dst, state):  # released on exit
        pass


def test_a_killed_holder_leaves_no_lock(tmp_path):
    """SIGKILL of the process holding the lock frees it: the OS releases flock locks of dead processes."""
    holder = (
        "import os, pathlib\nfrom shardgen.location import Location\nfrom shardgen.output import locked\n"
        f"with locked(Location.of({str(tmp_path)!r}), pathlib.Path({str(tmp_path)!r}, '.shardgen')):\n"
        "    os.kill(os.getpid(), 9)"
    )
    died = subprocess.run([sys.executable, "-c", holder], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert died.returncode == -signal.SIGKILL
    with locked(Location.of(tmp_path), tmp_path / ".shardgen"):
        pass


@pytest.mark.slow
def test_second_build_into_the_same_folder_is_refused_naming_the_first(sample_src, tmp_path):
    """Two concurrent builds into one DST: the second exits 2 at once with one line naming the first's pid."""
    dst = tmp_path / "out"
    first = start_cli("build", sample_src, dst, *BUILD_ARGS, env={"SHARDGEN_FAULT": "sleep-per-chunk:1"})
    try:
        wait_for((dst / ".shardgen" / "owner.json").exists, first)
        second = run_cli("build", sample_src, dst, *BUILD_ARGS)
    finally:
        kill_group(first)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"another shardgen build is writing here (pid {first.pid}: shardgen build" in lines[0]


@pytest.mark.slow
def test_build_killed_by_sigkill_leaves_no_lock(sample_src, reference_build, tmp_path):
    """kill -9 of a running build, then the same command: it runs (no stale lock) and finishes the build."""
    dst = tmp_path / "out"
    kill_build_at(sample_src, dst, "append", 3, tmp_path / "reached")
    rerun = run_cli("build", sample_src, dst, *BUILD_ARGS)
    assert rerun.returncode == 0, rerun.stderr
    assert shard_bytes(dst) == shard_bytes(reference_build)


def test_dangling_symlink_output_is_named_as_such(sample_src, tmp_path):
    """DST that is a symlink to nowhere: one clear line saying so, not 'No such file or directory'."""
    (tmp_path / "out").symlink_to(tmp_path / "missing")
    with pytest.raises(UsageError, match="symbolic link to .*missing, which does not exist") as refused:
        build(sample_src, tmp_path / "out", OPTIONS, procs=1)
    assert "No such file" not in str(refused.value)


def test_same_build_after_deleting_state_reuses_every_shard(sample_src, tmp_path):
    """Deleting .shardgen after a build (safe) and rerunning the same build reuses its shards: nothing rendered."""
    first = build(sample_src, tmp_path, OPTIONS, procs=1)
    shards, manifest = shard_bytes(tmp_path), (tmp_path / "manifest.json").read_bytes()
    shutil.rmtree(tmp_path / ".shardgen")
    again = build(sample_src, tmp_path, OPTIONS, procs=1)
    assert (again.images_rendered, again.shards_reused) == (0, first.shards_written)
    assert shard_bytes(tmp_path) == shards and (tmp_path / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("change", ["options", "inputs"])
def test_other_build_after_deleting_state_is_refused_naming_the_difference(sample_src, tmp_path, change):
    """With .shardgen gone, the manifest still tells a build with other options or newer inputs apart."""
    src = tmp_path / "src"
    shutil.copytree(sample_src, src)
    dst = tmp_path / "out"
    build(src, dst, OPTIONS, procs=1)
    shutil.rmtree(dst / ".shardgen")
    if change == "inputs":
        later = (dst / "manifest.json").stat().st_mtime_ns + 10**9
        os.utime(src / "star.npz", ns=(later, later))
    expected = "shard_size: 100 -> 240" if change == "options" else "inputs (star.npz changed)"
    with pytest.raises(OptionsChangedError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build(src, dst, OTHER if change == "options" else OPTIONS, procs=1)


def stopped_on_a_bad_file(tmp_path):
    """SRC with one good and one unreadable file, and DST of a build that stopped on it; the build's args."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    write_npz(src / "ant.npz", valid=object_array([np.array([[0, 0, 0], [5, 5, 1]], np.int16)] * 3))
    (src / "bad.npz").write_bytes(b"not a zip file\n")
    args = ("--procs", "1", "--size", "32", "--no-progress")
    assert run_cli("build", src, out, *args).returncode == 2
    return src, out, args


@pytest.mark.parametrize("rerun", ["with --on-error skip", "with the bad file removed"])
def test_a_build_stopped_before_its_first_shard_gives_way_to_the_fixed_rerun(tmp_path, rerun):
    """A build that stopped on a bad file wrote no shard: the rerun with other options or inputs builds, saying so."""
    src, out, args = stopped_on_a_bad_file(tmp_path)
    if rerun == "with --on-error skip":
        result, difference = (
            run_cli("build", src, out, *args, "--on-error", "skip"),
            "options (on_error: skip-sketches -> skip)",
        )
    else:
        (src / "bad.npz").unlink()
        result, difference = run_cli("build", src, out, *args), "inputs (bad.npz removed)"
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {out}: replacing an unfinished build with other {difference}: it had written no shard"
        in result.stderr
    )
    assert json.loads((out / "manifest.json").read_text())["classes"] == ["ant"]


def test_a_build_stopped_before_its_first_shard_is_still_guarded_by_other_files(tmp_path):
    """The same rerun is refused when DST holds anything besides the state folder (here a file of the user's)."""
    src, out, args = stopped_on_a_bad_file(tmp_path)
    (out / "notes.txt").write_text("mine\n")
    result = run_cli("build", src, out, *args, "--on-error", "skip")
    assert result.returncode == 2 and "holds a build with other options (on_error" in result.stderr
    assert "--overwrite" in result.stderr and (out / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize(
    "sketches",
    [[np.zeros((0, 3), np.int16), np.array([[0, 0, 0], [np.nan, 1, 1]])], []],
    ids=["every sketch invalid", "no sketches"],
)
def test_build_with_nothing_to_render_is_an_error(tmp_path, sketches):
    """Inputs that leave nothing to render are an InputError, not an empty build with exit 0."""
    write_npz(tmp_path / "odd.npz", train=object_array(sketches))
    with pytest.raises(InputError, match="nothing to build"):
        build(tmp_path, tmp_path / "out", BuildOptions(), procs=1)


def test_a_refusal_says_which_inputs_were_added_removed_or_changed():
    """Two identities' inputs are told apart per file: added, removed or changed, the first five named."""

    def identity(*files):
        return {"inputs": [{"file": name, "size": size} for name, size in files], "options": {}}

    before, after = identity(("ant.npz", 1), ("bee.npz", 2)), identity(("bee.npz", 3), ("cat.npz", 4))
    assert describe_difference(before, after) == "inputs (ant.npz removed, bee.npz changed, cat.npz added)"
    seven = describe_difference(identity(), identity(*((f"{n}.npz", 1) for n in range(7))))
    assert seven == "inputs (0.npz added, 1.npz added, 2.npz added, 3.npz added, 4.npz added, 2 more)"
