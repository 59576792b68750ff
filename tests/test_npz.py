"""The safe .npz reader: numpy's own pickles load, anything else is refused before it runs."""

from __future__ import annotations

import io
import pickle
import random

import numpy as np
import pytest

from shardgen.errors import InputError, UnsafePickleError
from shardgen.npz import object_array, read_npy, read_npz
from tests.helpers import Payload, python2_object_pickle, write_npz, write_raw_npz

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


class _Reduces:
    """Pickles as ``function(*arguments)``, and with a ``state`` as numpy's array pickles set it."""

    def __init__(self, function, arguments: tuple, state=None) -> None:
        self.reduced = (function, arguments) if state is None else (function, arguments, state)

    def __reduce__(self):
        return self.reduced


def _reconstruct_function():
    from shardgen.npz import _multiarray

    return _multiarray._reconstruct


CRAFTED = {
    # numpy.ndarray(shape, dtype, buffer, offset) reads outside the buffer with a negative offset
    "ndarray called with a buffer": lambda: _Reduces(np.ndarray, ((64,), np.dtype(np.uint8), b"x" * 8, -4096)),
    # numpy's pickles always pass shape (0,) and typecode b"b"; anything else allocates at will
    "_reconstruct with a shape": lambda: _Reduces(_reconstruct_function(), (np.ndarray, (1 << 40,), b"b")),
    "_reconstruct of another class": lambda: _Reduces(_reconstruct_function(), (np.dtype, (0,), b"b")),
    # copy=False hands out numpy's shared int16 dtype, which a BUILD would then rewrite for everyone
    "dtype without copy": lambda: _Reduces(np.dtype, ("i2", False, False)),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_numpy_names_are_admitted_only_in_their_role(name):
    """ndarray is only _reconstruct's class argument, _reconstruct only builds an empty array, dtype only copies."""
    array = object_array([SKETCHES[0], CRAFTED[name]()])
    with pytest.raises(UnsafePickleError):
        read_npy(io.BytesIO(_npy_bytes(array, 2)))


def _array_state(shape: tuple, dtype: np.dtype, data) -> _Reduces:
    return _Reduces(_reconstruct_function(), (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


@pytest.mark.parametrize(
    "element",
    [
        _array_state((1 << 40,), np.dtype(object), [1, 2]),
        _array_state((1 << 40, 3), np.dtype(np.int16), b"\x00" * 6),
        _array_state((-1, 3), np.dtype(np.int16), b"\x00" * 6),
    ],
    ids=["object", "int16", "negative"],
)
def test_array_state_larger_than_its_data_is_refused(tmp_path, element):
    """An array inside the pickle whose shape claims more than its data holds is refused before allocating."""
    array = object_array([SKETCHES[0], element])
    path = write_raw_npz(tmp_path / "big.npz", {"train": _npy_bytes(array, 2)})
    with pytest.raises(InputError, match="big.npz: train: "):
        read_npz(path)


def _dtype_with_state(descr: str, state: tuple) -> _Reduces:
    return _Reduces(np.dtype, (descr, False, True), state)


DTYPE_STATES = {
    # an int16 that claims to be 1000 int64s: every element read runs far past the data
    "subarray": ("i2", (3, "<", (np.dtype("i8"), (1000,)), None, None, -1, -1, 0), b"\x00" * 4),
    # a field at offset 100000 of a 4-byte item
    "field past the item": ("V4", (3, "|", None, ("a",), {"a": (np.dtype("i8"), 100000)}, 4, 1, 16), b"\x00" * 8),
    # an object dtype without its object flags takes raw bytes as object pointers
    "object without its flags": ("O8", (3, "|", None, None, None, -1, -1, 0), b"\x00" * 16),
}


@pytest.mark.parametrize("name", sorted(DTYPE_STATES))
def test_dtype_state_that_changes_the_layout_is_refused(name):
    """A dtype whose pickled state adds a subarray, a field past its size or drops its object flags is refused."""
    descr, state, data = DTYPE_STATES[name]
    element = _Reduces(
        _reconstruct_function(), (np.ndarray, (0,), b"b"), (1, (2,), _dtype_with_state(descr, state), False, data)
    )
    with pytest.raises(UnsafePickleError):
        read_npy(io.BytesIO(_npy_bytes(object_array([SKETCHES[0], element]), 2)))


def _npy_header(descr: str, shape: tuple) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue()


@pytest.mark.parametrize("descr, shape", [("<i2", (10**12, 3)), ("<i2", (2**62, 2**62)), ("|O", (10**12,))])
def test_header_declaring_more_than_the_member_holds_is_refused(tmp_path, descr, shape):
    """A .npy header declaring (10**12, 3) over a few bytes is one InputError naming file and member."""
    path = write_raw_npz(tmp_path / "huge.npz", {"train": _npy_header(descr, shape) + b"\x00" * 60})
    with pytest.raises(InputError, match=r"huge.npz: train: .*declares"):
        read_npz(path)


def test_member_that_decompresses_far_beyond_its_size_is_refused(tmp_path):
    """A small compressed .npz holding a huge, uniform sketch (a zip bomb) is refused before it is read."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, train=object_array([np.zeros((2_000_000, 3), np.int16)]))
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match=r"bomb.npz: train: .*compress"):
        read_npz(path)


def test_member_above_the_size_cap_is_refused(tmp_path, monkeypatch):
    """A member bigger than the sane cap is refused by its declared size."""
    monkeypatch.setattr("shardgen.npz.MAX_MEMBER_BYTES", 100)
    path = write_npz(tmp_path / "large.npz", train=object_array(SKETCHES * 10))
    with pytest.raises(InputError, match=r"large.npz: train: .*larger than"):
        read_npz(path)


def test_encrypted_member_is_an_input_error(tmp_path):
    """A member flagged as encrypted is an InputError, not zipfile's RuntimeError."""
    path = write_npz(tmp_path / "locked.npz", train=object_array(SKETCHES))
    data = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + flag_offset] |= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="locked.npz: train: .*encrypted"):
        read_npz(path)


def _mutations(data: bytes, rng: random.Random, count: int):
    """``count`` seeded corruptions of ``data``: flipped, overwritten, cut, inserted or repeated bytes."""
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated))
            kind = rng.randrange(5)
            if kind == 0:
                mutated[at] ^= 1 << rng.randrange(8)
            elif kind == 1:
                mutated[at] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
            elif kind == 2:
                del mutated[at:]
                if not mutated:
                    mutated = bytearray(b"P")
            elif kind == 3:
                mutated[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                end = min(len(mutated), at + rng.randint(1, 16))
                mutated[at:at] = mutated[at:end]
        yield bytes(mutated)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_fuzzed_npz_raises_nothing_but_input_error(tmp_path, compressed):
    """300 seeded mutations each of a stored and a compressed .npz: the reader returns or raises InputError."""
    from shardgen.read import SPLITS, read_sketchrnn_npz

    source = tmp_path / "source.npz"
    save = np.savez_compressed if compressed else np.savez
    save(source, train=object_array(SKETCHES * 3), valid=np.arange(12, dtype=np.int16).reshape(4, 3))
    path = tmp_path / "fuzzed.npz"
    escaped = []
    for number, data in enumerate(_mutations(source.read_bytes(), random.Random(int(compressed)), 300)):
        path.write_bytes(data)
        try:
            read_sketchrnn_npz(path, SPLITS)
        except InputError:
            pass
        except Exception as error:  # noqa: BLE001 - the point of the test is that nothing else escapes
            escaped.append(f"mutation {number}: {type(error).__name__}: {error}"[:200])
    assert not escaped, "\n".join(escaped[:20]) + f"\n({len(escaped)} of 300)"
