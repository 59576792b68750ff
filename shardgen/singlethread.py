"""Imported first in the fork server our worker processes start from: native libraries run one
thread each, since processes are the parallelism.

numpy's OpenBLAS otherwise starts a thread per core when numpy is imported, and those threads
spin-wait on the CPU the workers render on (measured: 2% of a 2-core build's CPU, none of it
useful; shardgen calls no BLAS routine). It reads these variables once, at numpy's import, so
they must be set before that: in the worker processes, and in the command line's own process,
which runs the event loop and nothing numerical. Never in a library caller's process: a library
must not change its caller's environment. A value the user set is kept. OpenCV's own threads are
turned off in ``worker.init_worker`` (``cv2.setNumThreads(1)``).
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")

for _name in THREAD_VARIABLES:
    os.environ.setdefault(_name, "1")
