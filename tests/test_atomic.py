"""Atomic writes: a full disk surfaces as ENOSPC, whatever numpy does with short writes."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shardgen import atomic
from shardgen.atomic import write_npy_to
from shardgen.write import output_error
from tests.helpers import ROOT

# Writes a store array past a 64 KiB file-size limit: the write stops part way, as on a full disk.
SHORT_WRITE = """
import resource, signal, sys
import numpy as np
from shardgen.atomic import write_npy_to
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))
try:
    with open(sys.argv[1], "wb") as f:
        write_npy_to(f, np.ones((100_000, 3), np.int16))
except OSError as error:
    print(error.errno)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_FSIZE and SIGXFSZ")
def test_short_write_of_a_store_array_keeps_its_errno(tmp_path):
    """A write cut short keeps the system's errno (numpy's fwrite path says only '... requested and ... written')."""
    result = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE, str(tmp_path / "a.npy")], capture_output=True, text=True, cwd=ROOT
    )
    assert result.stdout.strip() == str(errno.EFBIG), result.stdout + result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_npy_write_to_a_full_disk_says_no_space_and_how_to_resume():
    """Writing a store array to a full disk is ENOSPC, reported as no space left and how to resume."""
    with open("/dev/full", "wb", buffering=0) as full, pytest.raises(OSError) as caught:
        write_npy_to(full, np.zeros((100_000, 3), np.int16))
    assert caught.value.errno == errno.ENOSPC
    message = str(output_error(caught.value, Path("store")))
    assert "No space left on device" in message and "rerun to resume" in message


def test_temp_target_names_the_file_a_temp_path_stages(tmp_path):
    """temp_target undoes temp_path (and the older ``.NAME.tmp``); any other name gives None."""
    path = tmp_path / "train-000001.tar"
    assert atomic.temp_target(atomic.temp_path(path).name) == "train-000001.tar"
    assert atomic.temp_target(".manifest.json.tmp") == "manifest.json"
    assert atomic.temp_target("manifest.json") is None and atomic.temp_target(".notes") is None


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_start_writeback_hands_the_pages_to_the_kernel_and_changes_nothing(tmp_path):
    """On Linux start_writeback finds libc's sync_file_range; the file keeps its bytes and fsyncs as before."""
    assert atomic._sync_file_range() is not None  # else every shard's fsync would wait for all of it again
    data = bytes(range(256)) * 8192
    with open(tmp_path / "f", "wb") as f:
        f.write(data)
        f.flush()
        atomic.start_writeback(f)
        atomic.fsync(f)
    assert (tmp_path / "f").read_bytes() == data
