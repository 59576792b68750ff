"""shardgen: vector sketch datasets (sketch-rnn ``.npz``) to WebDataset tar shards, at CPU speed.

The public API is listed in ``__all__``. Names are imported on first use (PEP 562) so that the
command line starts without loading numpy, OpenCV and webdataset just to print ``--help``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BuildOptions": "options",
    "BuildPlan": "dryrun",
    "BuildResult": "progress",
    "DrawingOptions": "options",
    "InputError": "errors",
    "Interrupted": "errors",
    "OptionsChangedError": "errors",
    "OutputError": "errors",
    "OutputLockedError": "errors",
    "RenderOptions": "options",
    "Reporter": "progress",
    "ShardgenError": "errors",
    "SketchError": "errors",
    "UnsafePickleError": "errors",
    "UsageError": "errors",
    "VerifyError": "errors",
    "VerifyResult": "verify",
    "WorkerError": "errors",
    "build": "pipeline",
    "category_name": "read",
    "discover": "read",
    "encode_image": "render",
    "plan_build": "dryrun",
    "read_npz": "npz",
    "open_dataset": "dataset",
    "open_indexed": "dataset",
    "render_sketch": "render",
    "validate_sketch": "read",
    "verify": "verify",
    "write_samples": "sample",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shardgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # explicit imports for type checkers and readers
    from .dataset import open_dataset, open_indexed
    from .dryrun import BuildPlan, plan_build
    from .errors import (
        InputError,
        Interrupted,
        OptionsChangedError,
        OutputError,
        OutputLockedError,
        ShardgenError,
        SketchError,
        UnsafePickleError,
        UsageError,
        VerifyError,
        WorkerError,
    )
    from .npz import read_npz
    from .options import BuildOptions, DrawingOptions, RenderOptions
    from .pipeline import build
    from .progress import BuildResult, Reporter
    from .read import category_name, discover, validate_sketch
    from .render import encode_image, render_sketch
    from .sample import write_samples
    from .verify import VerifyResult, verify
