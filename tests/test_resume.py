"""Resume: a build killed at any moment and rerun ends byte-identical to one never interrupted."""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from shardgen import faults, png
from shardgen.errors import OptionsChangedError
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from tests.helpers import BUILD_ARGS, WHOLE_SHARD_ARGS, kill_build_at, leftovers, run_cli, shard_bytes


def journaled(dst) -> set[str]:
    path = dst / ".shardgen" / "journal.jsonl"
    return {json.loads(line)["file"] for line in path.read_text().splitlines()} if path.exists() else set()


# (point, n, layout): where the build is SIGKILLed, building in chunks (BUILD_ARGS) or with shards
# rendered whole (WHOLE_SHARD_ARGS: one task writes a shard straight into place). ingest: a class's
# arrays are packed but not its record; append: mid-shard (the parent holds the ninth chunk's
# fragment); rename: a shard fsynced under .partial, not renamed (on a worker); journal: a shard
# renamed to its final name but not yet in the journal. The hooks only observe: the rest of the
# build runs on until the kill, so how many shards were journaled by then varies, and the rerun
# must reuse exactly those.
KILL_POINTS = [
    ("ingest", 1, "chunks"),
    ("append", 8, "chunks"),
    ("rename", 2, "chunks"),
    ("journal", 1, "chunks"),
    ("rename", 1, "whole"),
    ("journal", 1, "whole"),
]
LAYOUTS = {"chunks": BUILD_ARGS, "whole": WHOLE_SHARD_ARGS}


@pytest.mark.slow
@pytest.mark.parametrize(("point", "n", "layout"), KILL_POINTS, ids=[f"{p}-{layout}" for p, _, layout in KILL_POINTS])
def test_sigkill_at_any_moment_then_rerun_gives_identical_shards(
    sample_src, reference_build, tmp_path, point, n, layout
):
    """SIGKILL of the whole process group at a crash point, then the same command: same bytes, nothing left over."""
    dst = tmp_path / "out"
    kill_build_at(sample_src, dst, point, n, tmp_path / "reached", args=LAYOUTS[layout])
    if point == "append":
        assert list((dst / ".shardgen" / "parts").iterdir()), "the kill should have caught chunk fragments"
    if point == "rename":
        assert list(dst.glob("*.tar.*.partial")), "the kill should have caught a shard before its rename"
    if point == "journal":
        unjournaled = {p.name for p in dst.glob("*.tar")} - journaled(dst)
        assert unjournaled, "the kill should have caught a renamed shard not yet journaled"
    complete = journaled(dst)

    rerun = run_cli("build", sample_src, dst, *LAYOUTS[layout])
    assert rerun.returncode == 0, rerun.stderr
    assert shard_bytes(dst) == shard_bytes(reference_build)
    manifest = (dst / "manifest.json").read_text()
    assert json.loads(manifest) == json.loads((reference_build / "manifest.json").read_text())
    assert leftovers(dst) == []
    assert f"reused {len(complete)};" in rerun.stdout


def test_resume_reuses_complete_shards_and_rerenders_damaged_ones(sample_src, tmp_path):
    """A rerun keeps journaled shards that still match size and sha256, rerenders a damaged one, same bytes."""
    options = BuildOptions(render=RenderOptions(size=32), shard_size=120, splits=("valid",))
    first = build(sample_src, tmp_path, options, procs=1, chunk_size=30)
    original = shard_bytes(tmp_path)
    assert first.shards_written == 2 and first.shards_reused == 0
    (tmp_path / "valid-000001.tar").write_bytes(b"damaged")
    (tmp_path / "valid-000000.tar.partial").write_bytes(b"half a shard")
    second = build(sample_src, tmp_path, options, procs=1, chunk_size=30)
    assert (second.shards_written, second.shards_reused, second.images_rendered) == (1, 1, 120)
    assert shard_bytes(tmp_path) == original
    assert leftovers(tmp_path) == []


def test_resume_removes_the_temp_files_a_killed_build_left(sample_src, tmp_path):
    """A rerun deletes temp and partial files of shardgen's names as atomic.temp_path and fragments.partial_path
    name them (.NAME.PID-RANDOM.tmp, NAME.PID-RANDOM.partial) and as older versions did (.NAME.tmp); a user's
    own .notes.tmp stays."""
    options = BuildOptions(render=RenderOptions(size=32), shard_size=120, splits=("valid",))
    build(sample_src, tmp_path, options, procs=1)
    (tmp_path / "manifest.json").unlink()  # killed while writing it
    temp_names = (".manifest.json.4242-0a1b2c3d.tmp", ".valid.wids.json.4242-0a1b2c3d.tmp", ".valid-000001.tar.tmp")
    temp_names += (".README.md.4242-0a1b2c3d.tmp",)  # the dataset card
    for name in (*temp_names, "valid-000000.tar.4242-0a1b2c3d.partial"):
        (tmp_path / name).write_bytes(b"half a file")
    (tmp_path / ".notes.tmp").write_text("mine")
    build(sample_src, tmp_path, options, procs=1)
    assert leftovers(tmp_path) == [".notes.tmp"]


def test_resume_reuses_shards_journaled_with_an_md5_by_an_older_version(sample_src, tmp_path):
    """Journal records that also carry an md5 (as older versions wrote them) still count: their shards are reused."""
    options = BuildOptions(render=RenderOptions(size=32), shard_size=120, splits=("valid",))
    first = build(sample_src, tmp_path, options, procs=1)
    journal = tmp_path / ".shardgen" / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps({**record, "md5": "0" * 32}) + "\n" for record in records))
    (tmp_path / "manifest.json").unlink()  # not finished: the rerun must go by the journal
    again = build(sample_src, tmp_path, options, procs=1)
    assert (again.shards_reused, again.images_rendered) == (first.shards_written, 0)


def test_rerun_with_other_options_is_refused_naming_the_difference(sample_src, tmp_path):
    """Changing seed or shard size between runs exits 2 naming what changed; --overwrite replaces the build."""
    args = ("--procs", "1", "--size", "32", "--splits", "valid", "--no-progress")
    assert run_cli("build", sample_src, tmp_path / "out", *args).returncode == 0
    refused = run_cli("build", sample_src, tmp_path / "out", *args, "--seed", "3", "--shard-size", "50")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "seed: 0 -> 3" in refused.stderr and "shard_size: 10000 -> 50" in refused.stderr
    assert "--overwrite" in refused.stderr
    replaced = run_cli("build", sample_src, tmp_path / "out", *args, "--seed", "3", "--shard-size", "50", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tar")) == [f"valid-00000{i}.tar" for i in range(5)]


@pytest.mark.parametrize("first", ["opencv", "the isal writer before"])
def test_rerun_with_another_png_encoder_is_refused(sample_src, tmp_path, monkeypatch, first):
    """The manifest records the PNG encoder and version; a rerun with another refuses, so no build mixes two."""
    options = BuildOptions(render=RenderOptions(size=32), splits=("valid",))
    first_options = BuildOptions(render=RenderOptions(size=32, png_encoder="opencv"), splits=("valid",))
    with ThreadPoolExecutor(1) as pool:
        with monkeypatch.context() as patch:
            if first != "opencv":
                patch.setattr(png, "encoder_version", lambda: "shardgen png 2, isal 1.9.1 (ISA-L 2.32.1)")
            first_build = build(sample_src, tmp_path, first_options if first == "opencv" else options, executor=pool)
        recorded = first_build.manifest["options"]["render"]["png_encoder"]
        assert recorded.startswith("opencv " if first == "opencv" else "shardgen png 2, isal")
        expected = f"render.png_encoder: {re.escape(recorded)} -> {re.escape(png.encoder_version())}"
        with pytest.raises(OptionsChangedError, match=expected):
            build(sample_src, tmp_path, options, executor=pool)


def test_rerun_with_changed_inputs_is_refused_naming_the_file(sample_src, tmp_path):
    """A source file that changed since the first run is named in the refusal."""
    src = tmp_path / "src"
    src.mkdir()
    for path in sample_src.glob("*.npz"):
        (src / path.name).write_bytes(path.read_bytes())
    args = ("--procs", "1", "--size", "32", "--splits", "valid", "--no-progress")
    assert run_cli("build", src, tmp_path / "out", *args).returncode == 0
    os.utime(src / "star.npz", ns=(1, 1))  # same bytes, other mtime: cheap fingerprints treat it as changed
    refused = run_cli("build", src, tmp_path / "out", *args)
    assert refused.returncode == 2 and "inputs (star.npz changed)" in refused.stderr


def test_successful_build_leaves_no_partial_or_temp_file(sample_src, tmp_path):
    """After a build, no *.partial or .*.tmp file exists anywhere under DST (state folder included)."""
    build(sample_src, tmp_path, BuildOptions(render=RenderOptions(size=32), shard_size=100), procs=2, chunk_size=20)
    assert list(tmp_path.glob("*.tar")) and leftovers(tmp_path) == []


def test_fault_specs_parse_and_unknown_ones_are_refused():
    """SHARDGEN_FAULT specs parse to kind -> parameters; a misspelt fault is an error, not a no-op."""
    assert faults.parse("stop:at=rename,n=1;readonly;sleep-per-chunk:0.2") == {
        "stop": {"at": "rename", "n": "1"},
        "readonly": {},
        "sleep-per-chunk": {"value": "0.2"},
    }
    assert faults.parse(None) == {} and faults.parse("") == {}
    with pytest.raises(ValueError, match="unknown fault"):
        faults.parse("worker-exitt:after=1")
    with pytest.raises(ValueError, match="stop needs"):
        faults.parse("stop:at=nowhere")


def test_rerun_with_splits_in_another_order_resumes(sample_src, tmp_path):
    """--splits valid,test then test,valid is the same build: the rerun reuses it instead of refusing."""
    args = ("--procs", "1", "--size", "32", "--no-progress", "--json")
    assert run_cli("build", sample_src, tmp_path / "out", *args, "--splits", "valid,test").returncode == 0
    rerun = run_cli("build", sample_src, tmp_path / "out", *args, "--splits", "test,valid")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["shards_written"] == 0


@pytest.mark.parametrize("width, same", [(6.4, True), (6.4 + 1e-4, True), (6.0, False), (7.9, False)])
def test_line_widths_compare_by_what_they_draw(width, same):
    """Two line widths are the same build option when they draw the same OpenCV thickness and dot size."""
    from shardgen.identity import comparable_identity

    def identity(line_width: float) -> dict:
        options = BuildOptions(render=RenderOptions(size=256, line_width=line_width))
        return {"inputs": [], "options": options.to_dict()}

    assert (comparable_identity(identity(6.4)) == comparable_identity(identity(width))) is same


@pytest.mark.parametrize("name, size", [("strokes", 100), ("offsets", 200)], ids=["in-header", "in-data"])
def test_truncated_store_file_is_repacked_on_resume(sample_src, reference_build, tmp_path, name, size):
    """A store file cut short before a rerun is detected and re-packed; the resumed build is byte-identical."""
    dst = tmp_path / "out"
    assert run_cli("build", sample_src, dst, *BUILD_ARGS).returncode == 0
    with open(dst / ".shardgen" / "store" / "train" / f"00001.{name}.npy", "r+b") as store_file:
        store_file.truncate(size)
    (dst / "train-000000.tar").unlink()
    rerun = run_cli("build", sample_src, dst, *BUILD_ARGS)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
    assert shard_bytes(dst) == shard_bytes(reference_build)


def test_plan_files_lost_in_a_crash_are_planned_again_and_resumed_identically(sample_src, reference_build, tmp_path):
    """Plan files are not fsynced: a rerun that finds them garbage (lost in a crash) rewrites them, same bytes."""
    dst = tmp_path / "out"
    assert run_cli("build", sample_src, dst, *BUILD_ARGS).returncode == 0
    for plan in (dst / ".shardgen").glob("plan-*.npy"):
        plan.write_bytes(b"\0" * plan.stat().st_size)  # what a crash before writeback can leave
    (dst / "train-000000.tar").unlink()
    rerun = run_cli("build", sample_src, dst, *BUILD_ARGS)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
    assert shard_bytes(dst) == shard_bytes(reference_build) and "reused 11;" in rerun.stdout
