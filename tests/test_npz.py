"""The safe .npz reader: numpy's own pickles load, anything else is refused before it runs."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from shardgen.errors import InputError, UnsafePickleError
from shardgen.npz import read_npy, read_npz
from tests.helpers import Payload, object_array, python2_object_pickle, write_npz, write_raw_npz

SKETCHES = [np.array([[1, 2, 0], [3, -4, 1]], np.int16), np.array([[5, 6, 1]], np.int16)]


def _npy_bytes(array: np.ndarray, protocol: int) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue() + pickle.dumps(array, protocol=protocol)


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_object_arrays_of_every_pickle_protocol_load(protocol):
    """Object arrays pickled with protocols 0-5 by this numpy read back equal."""
    array = object_array([s.astype(np.float32) for s in SKETCHES] + SKETCHES)
    loaded = read_npy(io.BytesIO(_npy_bytes(array, protocol)))
    assert len(loaded) == 4
    for got, want in zip(loaded, array):
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_python2_numpy1_pickles_load(tmp_path):
    """The public sketch-rnn files' layout (Python 2, numpy.core, py2 str payloads) loads exactly."""
    path = write_raw_npz(tmp_path / "cat.npz", {"train": python2_object_pickle(SKETCHES)})
    loaded = read_npz(path)["train"]
    assert [a.tolist() for a in loaded] == [s.tolist() for s in SKETCHES]
    assert loaded[0].dtype == np.int16


def test_numeric_members_load_without_pickle(tmp_path):
    """Plain numeric members are read directly."""
    path = write_npz(tmp_path / "x.npz", train=np.arange(6, dtype=np.int32).reshape(2, 3))
    assert read_npz(path)["train"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_pickle_that_calls_a_function_is_refused_and_does_not_run(tmp_path):
    """An object array holding a crafted object is refused, naming the file; its payload never runs."""
    marker = tmp_path / "payload-ran"
    path = write_npz(tmp_path / "evil.npz", train=object_array([SKETCHES[0], Payload(marker)]))
    with pytest.raises(UnsafePickleError) as caught:
        read_npz(path)
    assert "evil.npz" in str(caught.value) and "posix.mkdir" in str(caught.value)
    assert not marker.exists()


def test_codecs_encode_is_limited_to_latin1():
    """The one non-numpy global allowed (bytes in Python 3 protocol-2 pickles) cannot pick a codec."""
    evil = pickle.dumps(b"x", protocol=2).replace(b"latin1", b"zlib__")
    with pytest.raises(UnsafePickleError):
        from shardgen.npz import NumpyOnlyUnpickler

        NumpyOnlyUnpickler(io.BytesIO(evil), encoding="latin1").load()


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated"])
def test_files_that_are_not_npz_are_refused(tmp_path, content):
    """A non-zip or truncated zip named .npz gives an InputError naming the file."""
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken.npz"):
        read_npz(path)


def test_truncated_member_is_refused(tmp_path):
    """A member cut short inside its pickle gives an InputError, not an EOFError."""
    data = python2_object_pickle(SKETCHES)
    path = write_raw_npz(tmp_path / "cut.npz", {"train": data[: len(data) // 2]})
    with pytest.raises(InputError, match="cut.npz"):
        read_npz(path)
