"""Safe loading of sketch-rnn ``.npz`` files.

The files hold numpy object arrays, which ``numpy.load`` can only read by unpickling. A pickle can
run any code, so instead of ``allow_pickle=True`` we parse the ``.npy`` members ourselves and
unpickle object arrays with :class:`NumpyOnlyUnpickler`, which resolves exactly the globals that
numpy's own array pickles use (numpy 1.x and 2.x, protocols 0-5, written by Python 2 or 3) and
refuses everything else before it is looked up.
"""

from __future__ import annotations

import _codecs
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UnsafePickleError

try:  # numpy >= 2 moved the implementation modules to numpy._core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: Python 3 protocol 0-2 pickles spell bytes this way."""
    if encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"pickle asks to encode with {encoding!r}, only latin1 is allowed")
    return _codecs.encode(text, "latin1", errors)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("_codecs", "encode"): _latin1_encode,
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


def load_object_array(stream: io.BufferedIOBase) -> np.ndarray:
    """Unpickle one numpy object array from ``stream`` with the numpy-only unpickler."""
    # latin1 reads Python 2 str payloads (array bytes) unchanged, as numpy itself recommends.
    obj = NumpyOnlyUnpickler(stream, encoding="latin1").load()
    if not isinstance(obj, np.ndarray):
        raise InputError(f"pickle holds a {type(obj).__name__}, expected a numpy array")
    return obj


def read_npy(stream: io.BufferedIOBase) -> np.ndarray:
    """Read one ``.npy`` member: numeric arrays directly, object arrays through the safe unpickler."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        # 3.0 only differs in allowing utf-8 in the header, which the 2.0 reader parses alike
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise InputError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        array = load_object_array(stream)
        if array.shape != tuple(shape):
            raise InputError(f"object array has shape {array.shape}, header says {shape}")
        return array
    count = int(np.prod(shape, dtype=np.int64))
    data = stream.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise InputError("array data is truncated")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_npz(path: Path, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read the arrays named ``keys`` (default: all) of an ``.npz`` without running pickled code.

    Raises :class:`InputError` (naming the file) for anything that is not a readable ``.npz``.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
            for key in members if keys is None else [k for k in keys if k in members]:
                with archive.open(members[key]) as raw:
                    stream = io.BufferedReader(raw)  # type: ignore[arg-type]
                    try:
                        arrays[key] = read_npy(stream)
                    except InputError as error:
                        raise type(error)(f"{key}: {error.message}", path) from None
    except InputError as error:
        raise error if error.path else InputError(error.message, path) from None
    except zipfile.BadZipFile:
        raise InputError("not a valid .npz (zip) file", path) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OSError,
        zipfile.LargeZipFile,
        NotImplementedError,
    ) as error:
        # Truncated or crafted members surface as any of these from zipfile, numpy or pickle.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"cannot read .npz: {reason}", path) from None
    return arrays
