"""Safe loading of sketch-rnn ``.npz`` files.

The files hold numpy object arrays, which ``numpy.load`` can only read by unpickling. A pickle can
run any code, so instead of ``allow_pickle=True`` we parse the ``.npy`` members ourselves and
unpickle object arrays with :class:`NumpyOnlyUnpickler`. It resolves exactly the globals that
numpy's own array pickles use (numpy 1.x and 2.x, protocols 0-5, written by Python 2 or 3), each
only in the role numpy gives it, and refuses everything else before it is looked up. Sizes are
checked before anything is allocated: a member's declared size against a cap and its compressed
size, a header's shape against the member's size, an array's shape against its pickled data.
"""

from __future__ import annotations

import _codecs
import functools
import io
import math
import os
import pickle
import stat
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .errors import InputError, UnsafePickleError, reason

try:  # numpy >= 2 moved the implementation modules to numpy._core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]

# No public sketch file comes near this (the largest sketch-rnn .full.npz member is a few hundred MB).
MAX_MEMBER_BYTES = 8 << 30
# Stroke data deflates about 3:1; a member that claims far more is a decompression bomb. Small
# members (mostly header) are exempt: they compress well and cost nothing.
MAX_COMPRESSION_RATIO = 100
RATIO_EXEMPT_BYTES = 1 << 20

# What reading a corrupt or crafted file raises from zipfile, zlib, numpy's header parser or pickle.
READ_ERRORS = (
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    tokenize.TokenError,
    SyntaxError,  # numpy parses the header dict with ast.literal_eval
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    LookupError,
    OverflowError,
    MemoryError,
    RecursionError,
    NotImplementedError,  # an unsupported zip compression method
    OSError,
)


class _Global:
    """A global a pickle may name, usable only in the role numpy's array pickles give it.

    ``__slots__ = ()`` so that a pickle's BUILD cannot set attributes on the shared instances.
    """

    __slots__ = ()
    name = ""

    def __call__(self, *args: Any) -> Any:
        raise UnsafePickleError(f"pickle calls {self.name}, which numpy's array pickles never call")

    def refuse(self, args: tuple) -> NoReturn:
        raise UnsafePickleError(f"pickle calls {self.name} with arguments numpy never writes")


class _NdarrayClass(_Global):
    """``numpy.ndarray``: only the class argument of ``_reconstruct``, never a callable fed a buffer."""

    __slots__ = ()
    name = "numpy.ndarray"


class _Reconstruct(_Global):
    """``_reconstruct(ndarray, (0,), b"b")``: an empty array that BUILD then fills (checked)."""

    __slots__ = ()
    name = "numpy _reconstruct"

    def __call__(self, *args: Any) -> Any:
        if not (
            len(args) == 3
            and args[0] is _NDARRAY
            and type(args[1]) is tuple
            and args[1] == (0,)
            and type(args[2]) in (bytes, str)
            and args[2] in (b"b", "b")
        ):
            self.refuse(args)
        return _multiarray._reconstruct(_CheckedArray, (0,), b"b")


class _Dtype(_Global):
    """``dtype(descr, align, copy=True)``: always a fresh dtype, so BUILD never rewrites numpy's own."""

    __slots__ = ()
    name = "numpy.dtype"

    def __call__(self, *args: Any) -> Any:
        flags = args[1:]
        if not (len(args) == 3 and type(args[0]) is str and all(type(f) in (bool, int) for f in flags)):
            self.refuse(args)
        if args[2] != 1 or args[1] not in (0, 1):
            self.refuse(args)
        return np.dtype(args[0], align=bool(args[1]), copy=True)


class _FromBuffer(_Global):
    """``_frombuffer(data, dtype, shape, order)`` (protocol 5): a numeric array over in-band bytes."""

    __slots__ = ()
    name = "numpy _frombuffer"

    def __call__(self, *args: Any) -> Any:
        if not (len(args) == 4 and type(args[0]) in (bytes, bytearray) and type(args[3]) is str):
            self.refuse(args)
        data, dtype, shape, order = args[0], _plain_dtype(args[1]), args[2], args[3]
        if dtype.hasobject or order not in ("C", "F"):
            self.refuse(args)
        _check_array_data(shape, dtype, data)
        # what numpy's own _frombuffer does, for the two orders allowed above
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if order == "F" else "C")


class _LatinEncode(_Global):
    """``_codecs.encode(text, "latin1")``: how Python 3 protocol 0-2 pickles spell bytes."""

    __slots__ = ()
    name = "_codecs.encode"

    def __call__(self, *args: Any) -> Any:
        if not (len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1", "iso-8859-1")):
            raise UnsafePickleError("pickle asks _codecs.encode for something other than latin1 text")
        return _codecs.encode(args[0], "latin1")


class _CheckedArray(np.ndarray):
    """The array ``_reconstruct`` hands out: its state is checked before numpy allocates for it."""

    def __setstate__(self, state: Any) -> None:
        # numpy 1.x and 2.x write (version 1, shape, dtype, is_fortran, data), from Python 2 or 3.
        if not (type(state) is tuple and len(state) == 5 and state[0] == 1 and type(state[3]) is bool):
            raise UnsafePickleError("pickle sets an array state numpy never writes")
        version, shape, dtype, fortran, data = state
        dtype = _plain_dtype(dtype)
        _check_array_data(shape, dtype, data)
        super().__setstate__((version, shape, dtype, fortran, data))


# The kinds of dtype an array inside the pickle may have: numbers, strings and objects.
PLAIN_KINDS = "biufcSUO"


def _plain_dtype(dtype: Any) -> np.dtype:
    """A fresh dtype of the same name as ``dtype``, which must be a plain number, string or object.

    A dtype's pickled state can give it fields, a subarray or flags that no longer match its item
    size (reads past the data, bytes taken as object pointers), so no array keeps the unpickled one.
    """
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError(f"pickled array has a {type(dtype).__name__} as dtype, not a numpy dtype")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in PLAIN_KINDS:
        raise UnsafePickleError(
            f"pickled array has a structured or unusual dtype ({dtype.str}); "
            "only plain numeric and object arrays are allowed"
        )
    return _fresh_dtype(dtype.str)


@functools.lru_cache(maxsize=64)
def _fresh_dtype(descr: str) -> np.dtype:
    return np.dtype(descr)


def _check_array_data(shape: Any, dtype: np.dtype, data: Any) -> None:
    """Refuse an array whose shape claims more than its pickled data holds, before allocating it."""
    if type(shape) is not tuple:
        raise InputError(f"pickled array has shape {shape!r}, not a tuple of sizes")
    count = 1
    for size in shape:
        if type(size) is not int or size < 0:
            raise InputError(f"pickled array has shape {shape!r}, not a tuple of sizes")
        count *= size
    # numpy pickles an object array's items as a list, any other array's as bytes (str from Python 2).
    kinds = (list,) if dtype.hasobject else (bytes, bytearray, str)
    if type(data) not in kinds:
        raise UnsafePickleError(f"pickled {dtype} array holds a {type(data).__name__}, which numpy never writes")
    expected = count * (1 if dtype.hasobject else dtype.itemsize)
    if len(data) != expected:
        raise InputError(f"pickled array of shape {shape} and dtype {dtype} does not match its data")


_NDARRAY = _NdarrayClass()
_ALLOWED_GLOBALS: dict[tuple[str, str], _Global] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype(),
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer(),
    ("_codecs", "encode"): _LatinEncode(),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"pickle refers to {module}.{name}; only numpy arrays are allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("pickle uses persistent ids; only numpy arrays are allowed")


def _plain(array: np.ndarray) -> np.ndarray:
    """The loaded array, and the arrays it holds, as plain ``ndarray`` rather than the checked subclass."""
    array = array.view(np.ndarray)
    if array.dtype.hasobject and array.size:
        flat = array.ravel(order="K")  # a view: pickles make C- or Fortran-contiguous arrays only
        items = (_plain(item) if type(item) is _CheckedArray else item for item in flat)
        flat[...] = np.fromiter(items, dtype=object, count=flat.size)
    return array


def load_object_array(stream: io.BufferedIOBase) -> np.ndarray:
    """Unpickle one numpy object array from ``stream`` with the numpy-only unpickler."""
    # latin1 reads Python 2 str payloads (array bytes) unchanged, as numpy itself recommends.
    obj = NumpyOnlyUnpickler(stream, encoding="latin1").load()
    if not isinstance(obj, np.ndarray):
        raise InputError(f"pickle holds a {type(obj).__name__}, expected a numpy array")
    return _plain(obj)


def read_npy_header(stream: io.BufferedIOBase) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at ``stream``, which is left at the data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version in ((2, 0), (3, 0)):
        # 3.0 only differs in allowing utf-8 in the header, which the 2.0 reader parses alike
        return np.lib.format.read_array_header_2_0(stream)
    raise InputError(f"unsupported .npy format version {version}")


def object_array(items: list) -> np.ndarray:
    """A 1-D object array of ``items`` (``np.array`` would stack equal-shaped sketches into one block)."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def read_npy(stream: io.BufferedIOBase, size: int | None = None) -> np.ndarray:
    """Read one ``.npy`` member of ``size`` bytes: numeric arrays directly, object arrays through
    the safe unpickler. The header's shape is checked against ``size`` before anything is allocated."""
    if size is None:
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    shape, fortran, dtype = read_npy_header(stream)
    available = size - stream.tell()
    if any(n < 0 for n in shape):
        raise InputError(f"header declares the impossible shape {shape}")
    count = math.prod(shape)
    # Every element takes at least a byte of the member (a pickled object, a numeric item).
    declared = count if dtype.hasobject else count * dtype.itemsize
    if max(count, declared) > available:
        raise InputError(
            f"header declares shape {shape} of {dtype} ({declared:,} bytes), the member holds {available:,}"
        )
    if dtype.hasobject:
        array = load_object_array(stream)
        if array.shape != tuple(shape):
            raise InputError(f"object array has shape {array.shape}, header says {shape}")
        return array
    data = stream.read(declared)
    if len(data) != declared:
        raise InputError("array data is truncated")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _check_member(info: zipfile.ZipInfo) -> None:
    """Refuse an encrypted, oversized or bomb-like member by its zip entry, before reading it."""
    if info.flag_bits & 0x1:
        raise InputError("member is encrypted; shardgen reads only plain .npz files")
    if info.file_size > MAX_MEMBER_BYTES:
        raise InputError(f"member is {info.file_size:,} bytes, larger than the {MAX_MEMBER_BYTES:,} allowed")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_EXEMPT_BYTES and ratio > MAX_COMPRESSION_RATIO:
        raise InputError(
            f"member decompresses to {info.file_size:,} bytes from {info.compress_size:,} "
            f"({ratio:.0f}:1; stroke data compresses about 3:1): refused as a decompression bomb"
        )


def open_regular_file(path: Path):
    """Open ``path`` for reading if it is a regular file; never blocks on a FIFO, never opens a device.

    A dangling symlink, a directory, a FIFO, a socket or a device is an :class:`InputError`.
    """
    try:
        kind = os.stat(path).st_mode
        if stat.S_ISREG(kind):
            # O_NONBLOCK: should the path become a FIFO after the stat, opening it does not hang.
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            kind = os.fstat(descriptor).st_mode
            if stat.S_ISREG(kind):
                return os.fdopen(descriptor, "rb")
            os.close(descriptor)
    except FileNotFoundError:
        what = "a dangling symlink" if os.path.islink(path) else "missing"
        raise InputError(f"cannot read: {what}", path) from None
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror or error}", path) from None
    raise InputError(f"cannot read: not a regular file but {_file_kind(kind)}", path)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a device")


def read_npz(path: Path, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read the arrays named ``keys`` (default: all) of an ``.npz`` without running pickled code.

    Raises :class:`InputError` (naming the file, and the member where there is one) for anything
    that is not a readable ``.npz``.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    key = None
    try:
        with open_regular_file(path) as handle, zipfile.ZipFile(handle) as archive:
            members = {Path(info.filename).stem: info for info in archive.infolist() if info.filename.endswith(".npy")}
            for key in members if keys is None else [k for k in keys if k in members]:
                _check_member(members[key])
                with archive.open(members[key]) as raw:
                    stream = io.BufferedReader(raw)  # type: ignore[type-var]  # a ZipExtFile, typed as IO[bytes]
                    arrays[key] = read_npy(stream, members[key].file_size)
    except InputError as error:
        if error.path is not None:
            raise
        raise type(error)(f"{key}: {error.message}" if key else error.message, path) from None
    except zipfile.BadZipFile:
        raise InputError("not a valid .npz (zip) file", path) from None
    except READ_ERRORS as error:
        # Truncated or crafted members surface as any of these from zipfile, numpy or pickle.
        where = f"{key}: " if key else ""
        raise InputError(f"{where}cannot read .npz: {reason(error)}", path) from None
    return arrays
