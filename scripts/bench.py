"""Benchmark shardgen against the machine's limit and against the plain alternative, in one run.

Prints figures; asserts nothing. For every input folder it measures, on the same sketches and the
same render settings (``RenderOptions(size=...)``: PNG, antialiased, line width 2.5% of the size):

  bound     the in-memory render+encode rate: ``render_sketch`` + ``encode_image`` (the calls
            shardgen's worker makes), one forked process per core over an even split of the
            sketches, no tar, no disk, no queue; timed from fork to join (loading excluded)
  baseline  what a competent user writes instead: ``multiprocessing.Pool.imap`` over chunks of
            256 sketches + one ``webdataset.ShardWriter`` in the parent, same render function;
            timed end to end (start-up, loading the .npz files, rendering, writing)
  shardgen  ``python -m shardgen build SRC DST --procs N``, timed end to end (start-up, ingest,
            rendering, writing, index)
  encoders  the bound with each PNG encoder (shardgen's zlib-ng writer, the OpenCV encoder it
            replaced, a script's ``cv2.imencode(".png", img)`` at OpenCV's defaults), ``shardgen
            build`` with the old and the new one (the hidden, bench-only ``--png-encoder``), the
            per-image cost and size of each encoder in one process, and how many distinct
            encodings of the same sketches fresh processes give (one: same pixels, same bytes)

``--ingest-ranges MB`` instead times the ingest stage of a build of one large generated ndjson file
read in one pass against the same build reading it in byte ranges on every worker (``formats.ranges``).

Each is run as a child process and watched by a sampler thread that reads /proc every 50 ms:
CPU seconds (utime + stime) of the child and of every descendant (last value seen before it
exits) and the peak of the summed RSS of the whole tree (summed RSS counts shared pages once per
process, so it overstates, never understates).

Run it through ``scripts/bench`` (sets up .venv); ``scripts/bench --help`` lists the options.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHUNK = 256  # samples per task, for the baseline and shardgen alike
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# Watching a process tree through /proc


class TreeWatcher:
    """Samples a process and its descendants every ``interval`` s: CPU per role and peak summed RSS."""

    def __init__(self, pid: int, interval: float = 0.05, phase_file: Path | None = None) -> None:
        self.pid, self.interval, self.phase_file = pid, interval, phase_file
        self.cpu: dict[int, float] = {}  # pid -> last utime+stime seen (s)
        self.role: dict[int, str] = {}
        self.peak_rss = 0
        self.peak_rss_by_phase: dict[str, int] = {}
        self.samples = 0
        self.cpu_at_render: dict[str, float] | None = None  # CPU by role when ingest ended
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _children(self, pid: int) -> list[int]:
        out = []
        for path in glob.glob(f"/proc/{pid}/task/*/children"):
            try:
                with open(path) as f:
                    out += [int(p) for p in f.read().split()]
            except OSError:
                pass
        return out

    def _classify(self, pid: int, parent: int) -> str:
        if pid == self.pid:
            return "parent"
        if parent == self.pid:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                cmdline = b""
            if b"forkserver" in cmdline or b"resource_tracker" in cmdline:
                return "helpers"
        return "workers"

    def _sample(self) -> None:
        rss = 0
        stack = [(self.pid, 0)]
        while stack:
            pid, parent = stack.pop()
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if pid not in self.role:
                self.role[pid] = self._classify(pid, parent)
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), (int(fields[11]) + int(fields[12])) / CLK_TCK)
            rss += int(fields[21]) * PAGE
            stack += [(child, pid) for child in self._children(pid)]
        self.peak_rss = max(self.peak_rss, rss)
        if self.phase_file is not None:
            phase = "render" if self.phase_file.exists() else "ingest"
            if phase == "render" and self.cpu_at_render is None:
                self.cpu_at_render = self.cpu_by_role()
            self.peak_rss_by_phase[phase] = max(self.peak_rss_by_phase.get(phase, 0), rss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def cpu_by_role(self) -> dict[str, float]:
        out = {"parent": 0.0, "workers": 0.0, "helpers": 0.0}
        for pid, seconds in self.cpu.items():
            out[self.role[pid]] += seconds
        return out


def run_watched(cmd: list[str], phase_file: Path | None = None) -> dict:
    """Run ``cmd`` to completion under a TreeWatcher; wall time, CPU by role, peak RSS, stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    with TreeWatcher(proc.pid, phase_file=phase_file) as watcher:
        out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{err[-2000:]}")
    cpu = watcher.cpu_by_role()
    at_render = watcher.cpu_at_render or {role: 0.0 for role in cpu}
    return {
        "wall": wall,
        "cpu": cpu,
        "cpu_render": {role: cpu[role] - at_render[role] for role in cpu},
        "peak_rss": watcher.peak_rss,
        "peak_rss_by_phase": dict(watcher.peak_rss_by_phase),
        "stdout": out,
    }


# ---------------------------------------------------------------------------------------------
# The three contestants (the bound and the baseline run as `bench.py _bound/_baseline ...`)


def load_sketches(src: Path) -> list[tuple[str, int, dict, object]]:
    """Every valid sketch of every split: (split, class, metadata, strokes), in source order."""
    from shardgen.read import ADAPTERS, SPLITS, discover, validate_sketch

    out = []
    for class_index, source in enumerate(discover(src)):
        arrays = ADAPTERS[source.path.suffix](source.path, SPLITS)
        for split in SPLITS:
            for index, strokes in enumerate(arrays.get(split, ())):
                if validate_sketch(strokes) is None:
                    meta = {"category": source.category, "class": class_index, "split": split, "index": index}
                    out.append((split, class_index, meta, strokes))
    return out


def _render_slice(sketches, options, conn, encode=None) -> None:
    import cv2

    from shardgen.render import encode_image, render_sketch

    cv2.setNumThreads(1)
    encode = encode or encode_image
    total = 0
    for _split, _cls, _meta, strokes in sketches:
        total += len(encode(render_sketch(strokes, options), options))
    conn.send(total)


def child_bound(src: str, procs: int, size: int, encoder: str = "zlib-ng") -> None:
    """Render+encode only: fork one process per core over an even split, time fork to join."""
    import multiprocessing as mp

    options, encode = bound_encoder(encoder, size)
    sketches = load_sketches(Path(src))
    ctx = mp.get_context("fork")  # the slices are inherited, not sent: no IPC of sketches
    started = time.perf_counter()
    pipes, workers = [], []
    for rank in range(procs):
        recv, send = ctx.Pipe(duplex=False)
        worker = ctx.Process(target=_render_slice, args=(sketches[rank::procs], options, send, encode))
        worker.start()
        pipes.append(recv)
        workers.append(worker)
    payload = sum(pipe.recv() for pipe in pipes)
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    print(json.dumps({"images": len(sketches), "seconds": seconds, "payload": payload}))


# The bound's PNG encoders: shardgen's own (zlib-ng, the default), the OpenCV encoder shardgen used
# before it (libpng + zlib: no filter, Z_RLE, level 1), and what a user's script calls.
BOUND_ENCODERS = {
    "zlib-ng": "encode_image, zlib-ng (now)",
    "opencv": "encode_image, opencv (before)",
    "cv2-defaults": "cv2.imencode('.png') defaults",
}


def _user_imencode(image, _options) -> bytes:
    """What a user's script writes: ``cv2.imencode(".png", img)`` at OpenCV's defaults."""
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()


def bound_encoder(encoder: str, size: int):
    """(RenderOptions, encode function or None for ``encode_image``) of a ``BOUND_ENCODERS`` entry."""
    from shardgen.options import RenderOptions

    options = RenderOptions(size=size, png_encoder="opencv" if encoder == "opencv" else "zlib-ng")
    return options, _user_imencode if encoder == "cv2-defaults" else None


_OPTIONS = None


def _baseline_init(options) -> None:
    import cv2

    global _OPTIONS
    cv2.setNumThreads(1)
    _OPTIONS = options


def _baseline_chunk(chunk):
    from shardgen.render import encode_image, render_sketch

    out = []
    for key, cls, meta, strokes in chunk:
        png = encode_image(render_sketch(strokes, _OPTIONS), _OPTIONS)
        out.append({"__key__": key, "png": png, "cls": cls, "json": meta})
    return out


def child_baseline(src: str, dst: str, procs: int, size: int, shard_size: int) -> None:
    """The plain script: Pool.imap over chunks, one ShardWriter per split in the parent."""
    import multiprocessing as mp

    import numpy as np
    import webdataset as wds

    from shardgen.options import RenderOptions

    options = RenderOptions(size=size)
    sketches = load_sketches(Path(src))
    images = 0
    with mp.Pool(procs, initializer=_baseline_init, initargs=(options,)) as pool:
        for split in ("train", "valid", "test"):
            rows = [
                (f"{split}-{cls:04d}-{meta['index']:08d}", cls, meta, strokes)
                for s, cls, meta, strokes in sketches
                if s == split
            ]
            if not rows:
                continue
            rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]  # mix the classes
            chunks = [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
            with wds.ShardWriter(f"{dst}/{split}-%06d.tar", maxcount=shard_size, verbose=0) as sink:
                for samples in pool.imap(_baseline_chunk, chunks):
                    for sample in samples:
                        sink.write(sample)
                        images += 1
    print(json.dumps({"images": images}))


# ---------------------------------------------------------------------------------------------
# The report


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else ""


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def shard_stats(dst: Path) -> dict:
    """Bytes per sample in the shards, and how much of it is image payload / any payload."""
    total = images = image_bytes = payload = 0
    for path in sorted(dst.glob("*.tar")):
        total += path.stat().st_size
        with tarfile.open(path) as archive:
            for member in archive:
                payload += member.size
                if not member.name.endswith((".cls", ".json")):
                    images += 1
                    image_bytes += member.size
    return {"images": images, "total": total, "image": image_bytes, "payload": payload}


def compile_bytecode() -> bool:
    """Write shardgen's bytecode (``__pycache__``) as pip does when it installs a package; return
    whether PYTHONDONTWRITEBYTECODE is set (Python then never writes it itself).

    With PYTHONDONTWRITEBYTECODE set (it is on some machines, this one included), every process
    of every run would compile shardgen's modules from source again: ~0.07 s in the build process
    and as much in its fork server, a start-up cost that an installed shardgen never pays.
    """
    import compileall

    compileall.compile_dir(ROOT / "shardgen", quiet=1)
    return bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, {platform.system()}"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def help_time(reps: int = 5) -> tuple[float, float]:
    """Median wall time of ``python -m shardgen --help`` and of a bare ``python -c pass``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def timed(cmd):
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - t)
        return median(times)

    return timed([sys.executable, "-m", "shardgen", "--help"]), timed([sys.executable, "-c", "pass"])


def sample_input(cache: Path, categories: int, per_split: int) -> Path:
    """``shardgen sample`` data, written once into the cache and reused."""
    from shardgen.sample import write_samples

    path = cache / f"sample-c{categories}-n{per_split}-s0"
    if not path.is_dir():
        print(f"  (writing {categories * per_split * 3:,} synthetic sketches to {path} once)", flush=True)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_samples(tmp, categories=categories, per_split=per_split, seed=0)
        tmp.rename(path)
    return path


def bench_input(src: Path, args, work: Path) -> None:
    py, me = sys.executable, str(Path(__file__).resolve())
    print(f"\n== input {src}", flush=True)
    rates: dict[str, list[float]] = {"bound": [], "baseline": [], "shardgen": []}
    runs: dict[str, list[dict]] = {"bound": [], "baseline": [], "shardgen": []}
    images = 0
    for rep in range(args.reps):
        # Interleaved, so that load from other users of the machine hits all three alike; shardgen
        # right after the bound, so that each rep's ratio compares runs seconds apart (this host's
        # speed drifts by 20-30% within minutes, and the baseline takes three times as long).
        run = run_watched([py, me, "_bound", str(src), str(args.procs), str(args.size)])
        result = json.loads(run["stdout"])
        images = result["images"]
        rates["bound"].append(images / result["seconds"])
        runs["bound"].append(run)

        out = work / "shardgen"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [py, "-m", "shardgen", "build", str(src), str(out), "--procs", str(args.procs)]
        cmd += ["--size", str(args.size), "--no-progress"]
        cmd += ["--chunk-size", str(args.chunk_size)] if args.chunk_size else []
        run = run_watched(cmd, phase_file=out / ".shardgen" / "layout.json")
        rates["shardgen"].append(images / run["wall"])
        runs["shardgen"].append(run)

        out = work / "baseline"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        run = run_watched([py, me, "_baseline", str(src), str(out), str(args.procs), str(args.size), "10000"])
        rates["baseline"].append(json.loads(run["stdout"])["images"] / run["wall"])
        runs["baseline"].append(run)
        print(
            f"  rep {rep + 1}/{args.reps}: "
            + ", ".join(f"{name} {rates[name][-1]:,.0f}/s" for name in ("bound", "shardgen", "baseline"))
            + f"  ({load()})",
            flush=True,
        )

    stats = shard_stats(work / "shardgen")
    base_stats = shard_stats(work / "baseline")
    bound, baseline, ours = (median(rates[k]) for k in ("bound", "baseline", "shardgen"))
    print(f"\n  {images:,} images, {args.size} px PNG, antialiased, line width 2.5%, --procs {args.procs}")
    print(f"  median of {args.reps} runs (min-max):")
    print(f"  {'':10s} {'images/s':>10s} {'range':>15s} {'peak RSS (tree)':>16s}")
    for name in ("bound", "baseline", "shardgen"):
        rss = median([r["peak_rss"] for r in runs[name]])
        print(f"  {name:10s} {median(rates[name]):10,.0f} {spread(rates[name]):>15s} {mb(rss):>16s}")
    print(f"  shardgen / bound    = {ours / bound:.2f}   (target >= 0.9 on 2 cores, issue 10)")
    paired = [ours_rep / bound_rep for ours_rep, bound_rep in zip(rates["shardgen"], rates["bound"])]
    print(
        f"  shardgen / bound of each rep (back to back): {', '.join(f'{r:.2f}' for r in paired)};"
        f" median {median(paired):.2f}"
    )
    print(f"  shardgen / baseline = {ours / baseline:.2f}   (target >= 1.25)")
    cpu_per_k = {}
    for name in ("bound", "baseline", "shardgen"):
        cpu = [r["cpu"] for r in runs[name]]
        cpu_per_k[name] = median([sum(c.values()) for c in cpu]) * 1000 / images
    print(
        f"  CPU s per 1,000 images, all processes: bound {cpu_per_k['bound']:.3f}, baseline "
        f"{cpu_per_k['baseline']:.3f}, shardgen {cpu_per_k['shardgen']:.3f}; by CPU time (insensitive to other load):"
        f" shardgen/bound = {cpu_per_k['bound'] / cpu_per_k['shardgen']:.2f},"
        f" shardgen/baseline = {cpu_per_k['baseline'] / cpu_per_k['shardgen']:.2f}"
    )
    for name in ("baseline", "shardgen"):
        cpu = [r["cpu"] for r in runs[name]]
        parent = median([c["parent"] for c in cpu]) * 1000 / images
        workers = median([c["workers"] for c in cpu]) * 1000 / images
        helpers = median([c["helpers"] for c in cpu]) * 1000 / images
        print(
            f"  {name:10s} CPU s per 1,000 images: parent {parent:.4f}, workers {workers:.3f}"
            f" (parent = {100 * parent / workers:.1f}% of workers; target <= 3%)"
            + (f", forkserver+resource tracker {helpers:.4f}" if helpers else "")
        )
    render = [r["cpu_render"] for r in runs["shardgen"]]
    parent = median([c["parent"] for c in render]) * 1000 / images
    workers = median([c["workers"] for c in render]) * 1000 / images
    print(
        f"  {'':10s} render phase only (after ingest, start-up excluded): parent {parent:.4f}, workers {workers:.3f}"
        f" ({100 * parent / workers:.1f}%)"
    )
    for name, s in (("baseline", base_stats), ("shardgen", stats)):
        n = max(s["images"], 1)
        print(
            f"  {name:10s} shard bytes per sample {s['total'] / n:,.0f}: image {s['image'] / n:,.0f}, "
            f"all payload (image+cls+json) {s['payload'] / n:,.0f}, tar overhead {(s['total'] - s['payload']) / n:,.0f}"
            f" ({100 * (s['total'] - s['payload']) / s['total']:.0f}%)"
        )


def bench_memory(args, work: Path) -> None:
    py = sys.executable
    print(f"\n== memory: peak RSS of the shardgen build's process tree (--size {args.memory_size} png, to keep")
    print("   run time bounded: memory does not depend on the image size), summed RSS sampled every 50 ms")
    results = []
    for total in args.memory_sketches:
        per_split = -(-total // 30)
        src = sample_input(Path(args.out) / "cache", 10, per_split)
        out = work / f"memory-{total}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [py, "-m", "shardgen", "build", str(src), str(out), "--procs", str(args.procs)]
        cmd += ["--size", str(args.memory_size), "--no-progress"]
        run = run_watched(cmd, phase_file=out / ".shardgen" / "layout.json")
        phases = run["peak_rss_by_phase"]
        results.append(run["peak_rss"])
        print(
            f"  {per_split * 30:>9,} sketches (10 classes x {per_split:,} x 3 splits): peak {mb(run['peak_rss'])}"
            f" (ingest {mb(phases.get('ingest', 0))}, render {mb(phases.get('render', 0))}),"
            f" {per_split * 30 / run['wall']:,.0f} images/s, {run['wall']:.0f} s  ({load()})",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
    if len(results) > 1:
        print(
            f"  largest / smallest = {results[-1] / results[0]:.2f}   "
            f"(target <= 1.15, and <= 1 GB at 1M: {mb(results[-1])})"
        )


def bench_cluster(src: Path, args, work: Path) -> None:
    """Throughput of the same build through a Dask cluster (``--scheduler``) and through local processes."""
    print(f"\n== cluster: {src} through the Dask scheduler at {args.scheduler} vs --procs {args.procs}", flush=True)
    rates: dict[str, list[float]] = {"local": [], "cluster": []}
    common = ["--size", str(args.size), "--no-progress", "--json"]
    common += ["--chunk-size", str(args.chunk_size)] if args.chunk_size else []
    modes = {"local": ["--procs", str(args.procs)], "cluster": ["--scheduler", args.scheduler]}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    images = 0
    for rep in range(args.reps):
        for mode, extra in modes.items():  # interleaved, so that load from others hits both alike
            out = work / f"cluster-{mode}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "shardgen", "build", str(src), str(out), *common, *extra]
            started = time.perf_counter()
            result = subprocess.run(cmd, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"{mode} build failed: {result.stderr.strip()}")
            images = json.loads(result.stdout)["images"]
            rates[mode].append(images / seconds)
            print(
                f"  rep {rep + 1}/{args.reps} {mode:>7}: {images / seconds:,.0f} images/s ({seconds:.1f} s)", flush=True
            )
    local, cluster = median(rates["local"]), median(rates["cluster"])
    print(f"\n  {images:,} images, {args.size} px PNG; wall time of the whole command (start-up included)")
    print(f"  local --procs {args.procs}: {local:,.0f} images/s {spread(rates['local'])}")
    print(f"  cluster:          {cluster:,.0f} images/s {spread(rates['cluster'])}  ({cluster / local:.2f} x local)")


# ---------------------------------------------------------------------------------------------
# PNG encoders: shardgen's own (zlib-ng) against the OpenCV encoder it replaced and a user's defaults


def bench_encode_image(src: Path, args) -> None:
    """Per-image encode time and size in one process, interleaved: zlib-ng, OpenCV as before, cv2 defaults."""
    import cv2
    import numpy as np

    from shardgen.render import encode_image, render_sketch

    cv2.setNumThreads(1)
    sketches = load_sketches(src)
    sketches = sketches[:: max(1, len(sketches) // args.encode_sketches)][: args.encode_sketches]
    options = bound_encoder("zlib-ng", args.size)[0]
    images = [render_sketch(strokes, options) for _split, _cls, _meta, strokes in sketches]
    variants = {name: bound_encoder(name, args.size) for name in BOUND_ENCODERS}
    micros: dict[str, list[float]] = {name: [] for name in ["render_sketch", *variants]}
    for _ in range(args.encode_reps):
        started = time.perf_counter()
        for _split, _cls, _meta, strokes in sketches:
            render_sketch(strokes, options)
        micros["render_sketch"].append((time.perf_counter() - started) * 1e6 / len(images))
        for name, (variant_options, encode) in variants.items():
            encode = encode or encode_image
            started = time.perf_counter()
            for image in images:
                encode(image, variant_options)
            micros[name].append((time.perf_counter() - started) * 1e6 / len(images))
    sizes = {
        name: float(np.mean([len((encode or encode_image)(image, opts)) for image in images]))
        for name, (opts, encode) in variants.items()
    }
    print(f"\n== PNG encoding, one process: {len(images):,} sketches of {src} at {args.size} px, antialiased")
    print(f"   (median of {args.encode_reps} interleaved passes; {load()})")
    print(f"  {'':32s} {'us/image':>9s} {'range':>13s} {'bytes/image':>12s}")
    for name, values in micros.items():
        label, size = BOUND_ENCODERS.get(name, name), f"{sizes[name]:12,.0f}" if name in sizes else ""
        print(f"  {label:32s} {median(values):9.1f} {min(values):6.1f}-{max(values):<6.1f} {size}")
    now, before, defaults = (median(micros[name]) for name in ("zlib-ng", "opencv", "cv2-defaults"))
    print(f"  zlib-ng / cv2 defaults = {now / defaults:.2f}   (target <= 0.5)")
    print(f"  zlib-ng / opencv before = {now / before:.2f}   (target <= 0.45)")
    print(f"  bytes zlib-ng / opencv before = {sizes['zlib-ng'] / sizes['opencv']:.4f}   (target <= 1)")
    digests = {digest_in_fresh_process(src, args.size, len(images)) for _ in range(args.determinism_processes)}
    print(
        f"  the same {len(images):,} sketches encoded in {args.determinism_processes} fresh processes: "
        f"{len(digests)} distinct encoding(s) (target 1: bytes depend on the pixels alone)"
    )


def digest_in_fresh_process(src: Path, size: int, count: int) -> str:
    """sha256 of ``count`` sketches of ``src`` rendered and encoded by a new interpreter (its own
    memory layout). An encoder whose bytes follow addresses gives more than one: with ISA-L, 4 of
    20 processes encoded 4,000 real sketches to other bytes."""
    command = [sys.executable, str(Path(__file__).resolve()), "_encode_digest", str(src), str(size), str(count)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def child_encode_digest(src: str, size: int, count: int) -> None:
    from shardgen.render import encode_image, render_sketch

    options = bound_encoder("zlib-ng", size)[0]
    sketches = load_sketches(Path(src))
    sketches = sketches[:: max(1, len(sketches) // count)][:count]
    digest = hashlib.sha256()
    for _split, _cls, _meta, strokes in sketches:
        digest.update(encode_image(render_sketch(strokes, options), options))
    print(digest.hexdigest())


def bench_encoders(src: Path, args, work: Path) -> None:
    """The bound with each PNG encoder and ``shardgen build`` with each, interleaved in one run.

    Besides images/s it reports CPU seconds of the whole process tree per 1,000 images, which other
    load on the machine disturbs much less than wall time.
    """
    py, me = sys.executable, str(Path(__file__).resolve())
    runs = [("bound", encoder) for encoder in BOUND_ENCODERS] + [("build", "opencv"), ("build", "zlib-ng")]
    rates: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    cpu: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for rep in range(args.reps):
        for kind, encoder in runs:
            if kind == "bound":
                run = run_watched([py, me, "_bound", str(src), str(args.procs), str(args.size), encoder])
                result = json.loads(run["stdout"])
                images, seconds = result["images"], result["seconds"]
            else:
                out = work / f"shardgen-{encoder}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [py, "-m", "shardgen", "build", str(src), str(out), "--procs", str(args.procs)]
                cmd += ["--size", str(args.size), "--no-progress", "--png-encoder", encoder]
                run = run_watched(cmd)
                seconds = run["wall"]
            rates[kind, encoder].append(images / seconds)
            cpu[kind, encoder].append(sum(run["cpu"].values()) * 1000 / images)
        print(f"  encoders rep {rep + 1}/{args.reps} done  ({load()})", flush=True)
    print(f"\n== PNG encoders end to end on {src}: {images:,} images, --procs {args.procs}, median of {args.reps}")
    print(f"  {'':46s} {'images/s':>10s} {'range':>15s} {'CPU s/1k img':>13s}")
    for (kind, encoder), values in rates.items():
        label = f"{'bound' if kind == 'bound' else 'shardgen build'}, {BOUND_ENCODERS[encoder]}"
        print(f"  {label:46s} {median(values):10,.0f} {spread(values):>15s} {median(cpu[kind, encoder]):13.3f}")
    rate = {run: median(values) for run, values in rates.items()}
    work_per_image = {run: median(values) for run, values in cpu.items()}

    def gain(kind: str, slow: str) -> str:
        by_cpu = work_per_image[kind, slow] / work_per_image[kind, "zlib-ng"]
        return f"{rate[kind, 'zlib-ng'] / rate[kind, slow]:.2f} (CPU time: {by_cpu:.2f})"

    print(f"  build zlib-ng / opencv = {gain('build', 'opencv')}   (target >= 1.3)")
    print(f"  bound zlib-ng / opencv = {gain('bound', 'opencv')}")
    print(f"  bound zlib-ng / a script's cv2.imencode defaults = {gain('bound', 'cv2-defaults')}")


# ---------------------------------------------------------------------------------------------
# The ceiling: what the pipeline around render+encode costs (issue 10)


def child_ceiling(src: str, dst: str, procs: int, image_bytes: int, chunk: str) -> None:
    """``shardgen.build`` in this process with every image a constant ``image_bytes``; prints JSON.

    The worker reads ``SHARDGEN_BENCH_CONSTANT_IMAGE`` when it is imported (in the fork server,
    started by this build), so the variable is set before shardgen is imported. Parent CPU is
    ``getrusage(RUSAGE_SELF)`` around the call: every thread of this process (the event loop and
    the pool's feeder and manager threads), nothing of the workers.
    """
    import resource

    os.environ["SHARDGEN_BENCH_CONSTANT_IMAGE"] = str(image_bytes)
    from shardgen.options import BuildOptions
    from shardgen.pipeline import build

    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    chunk_size = None if chunk == "auto" else int(chunk)
    result = build(Path(src), Path(dst), BuildOptions(), procs=procs, chunk_size=chunk_size)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"images": result.images, "seconds": wall, "parent_cpu": cpu}))


def ceiling_run(src: Path, out: Path, procs: int, image_bytes: int, chunk: str = "auto") -> dict:
    shutil.rmtree(out, ignore_errors=True)
    me = str(Path(__file__).resolve())
    run = run_watched([sys.executable, me, "_ceiling", str(src), str(out), str(procs), str(image_bytes), chunk])
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(run["stdout"])


def bench_ceiling(args, work: Path) -> None:
    src = sample_input(Path(args.out) / "cache", 10, -(-args.ceiling_sketches // 30))
    print(f"\n== ceiling: render+encode replaced by a constant {args.ceiling_bytes:,}-byte image")
    print("   (SHARDGEN_BENCH_CONSTANT_IMAGE), shardgen.build in-process, median of the reps")
    procs_list = sorted({1, *(2**i for i in range(1, 12) if 2**i < args.procs), args.procs})
    table = {}
    for procs in procs_list:
        runs = [ceiling_run(src, work / "ceiling", procs, args.ceiling_bytes) for _ in range(args.reps)]
        images = runs[0]["images"]
        table[procs] = (median([images / r["seconds"] for r in runs]), median([r["parent_cpu"] for r in runs]))
        rate, cpu = table[procs]
        print(
            f"  --procs {procs:<3d} {images:,} images: {rate:10,.0f} images/s, parent CPU {1e6 * cpu / images:.2f} us"
            f"/image  ({load()})",
            flush=True,
        )
    rate, cpu = table[2 if 2 in table else procs_list[-1]]
    parent_us = 1e6 * cpu / images
    print(f"  parent CPU per image at --procs 2: {parent_us:.2f} us (target <= 2)")
    for chunk in ("256", "1024"):
        runs = [ceiling_run(src, work / "ceiling", 2, args.ceiling_bytes, chunk) for _ in range(args.reps)]
        cpu_us = 1e6 * median([r["parent_cpu"] for r in runs]) / images
        rate = median([images / r["seconds"] for r in runs])
        print(f"  the same with --chunk-size {chunk}: {cpu_us:.2f} us/image, {rate:,.0f} images/s")
    print(f"  ceiling at --procs {procs_list[-1]}: {table[procs_list[-1]][0]:,.0f} images/s")
    print(
        f"  a parent at {parent_us:.2f} us/image alone could carry {1e6 / parent_us:,.0f} images/s; 128 cores render"
        " about 250,000 images/s (256 px PNG)"
    )
    print_scaling("ceiling", {procs: rate for procs, (rate, _) in table.items()})


def print_scaling(name: str, rates: dict[int, float]) -> None:
    base = rates[min(rates)]
    print(f"  scaling ({name}): procs, images/s, efficiency = rate / (procs x rate at 1 proc)")
    for procs, rate in sorted(rates.items()):
        print(f"    {procs:>4d} {rate:12,.0f} {rate / (procs * base):8.2f}")


def bench_scaling(args, work: Path) -> None:
    """Real builds (render on) at 1, 2, 4 ... --procs workers, on the synthetic input."""
    src = sample_input(Path(args.out) / "cache", 10, -(-args.sketches // 30))
    print(f"\n== scaling: `shardgen build --size {args.size}` on {src.name}, median of {args.reps}")
    procs_list = sorted({1, *(2**i for i in range(1, 12) if 2**i < args.procs), args.procs})
    rates = {}
    for procs in procs_list:
        out, values = work / "scaling", []
        for _ in range(args.reps):
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "shardgen", "build", str(src), str(out), "--procs", str(procs)]
            run = run_watched(cmd + ["--size", str(args.size), "--no-progress"])
            values.append(sum(s["count"] for s in json.loads((out / "manifest.json").read_text())["splits"].values()))
            values[-1] /= run["wall"]
        rates[procs] = median(values)
        print(f"  --procs {procs:<3d} {rates[procs]:10,.0f} images/s  ({load()})", flush=True)
    shutil.rmtree(work / "scaling", ignore_errors=True)
    print_scaling("build", rates)


def bench_large_images(args, work: Path) -> None:
    """Peak summed RSS of a build of large uncompressed images: in-flight work is bounded in bytes."""
    src = sample_input(Path(args.out) / "cache", 10, -(-args.large_sketches // 30))
    out = work / "large"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "shardgen", "build", str(src), str(out), "--procs", str(args.procs)]
    cmd += ["--size", "2048", "--format", "npy", "--no-progress"]
    run = run_watched(cmd, phase_file=out / ".shardgen" / "layout.json")
    images = sum(s["count"] for s in json.loads((out / "manifest.json").read_text())["splits"].values())
    shutil.rmtree(out, ignore_errors=True)
    print(f"\n== large images: {images:,} sketches at --size 2048 --format npy (4 MB each), --procs {args.procs}")
    print(
        f"  peak summed RSS of the process tree {mb(run['peak_rss'])} (target < 1.5 GB), render phase"
        f" {mb(run['peak_rss_by_phase'].get('render', 0))}, {images / run['wall']:,.0f} images/s"
    )


# ---------------------------------------------------------------------------------------------
# Streaming QuickDraw input: peak memory while ingesting a large generated ndjson file


def quickdraw_file(work: Path, gigabytes: float) -> Path:
    """A simplified ndjson file of about ``gigabytes``, of generated drawings (written once, reused)."""
    from shardgen.sample import write_samples

    work.mkdir(parents=True, exist_ok=True)
    path = work / "circle.ndjson"
    target = int(gigabytes * 1e9)
    if not path.exists() or path.stat().st_size < target:
        with tempfile.TemporaryDirectory() as seeds:
            write_samples(seeds, categories=10, per_split=100, format="ndjson")
            files = sorted(Path(seeds).glob("*.ndjson"))
            lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        written, number = 0, 0
        with open(path.with_suffix(".tmp"), "w") as out:
            while written < target:
                record = lines[number % len(lines)]
                line = json.dumps({**record, "key_id": str(10**17 + number)}, separators=(",", ":")) + "\n"
                out.write(line)
                written, number = written + len(line), number + 1
        path.with_suffix(".tmp").replace(path)
    return path


def bench_formats_memory(gigabytes: float, work: Path) -> None:
    """Ingest ``gigabytes`` of generated simplified ndjson in a child; report its peak RSS (target < 300 MB)."""
    path = quickdraw_file(work, gigabytes)
    print(f"\nformats memory: ingest of {path.stat().st_size / 1e9:.2f} GB of simplified ndjson, one process")
    result = subprocess.run(
        [sys.executable, __file__, "_formats_ingest", str(path), str(work / "store")],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout)
    print(
        f"  {figures['drawings']:,} drawings in {figures['seconds']:.1f} s "
        f"({figures['drawings'] / figures['seconds']:,.0f} drawings/s; the machine may be shared)"
    )
    print(
        f"  peak RSS {figures['peak_rss'] / 1e6:.0f} MB (target < 300 MB; "
        f"{figures['start_rss'] / 1e6:.0f} MB of it before reading: Python, numpy, shardgen)"
    )


def child_formats_ingest(path: str, store: str) -> None:
    """Run one QuickDraw file's ingest as a build's worker does; print drawings, seconds, RSS."""
    import resource

    from shardgen.formats.ingest import DrawingIngestTask, ingest_drawings
    from shardgen.read import SourceFile

    start_rss = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    shutil.rmtree(store, ignore_errors=True)
    task = DrawingIngestTask(
        source=SourceFile(Path(path), "circle"),
        class_index=0,
        store_dir=Path(store),
        splits=("train",),
        limit=None,
        on_error="skip",
        fingerprint="bench",
    )
    began = time.perf_counter()
    record = ingest_drawings(task)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps({"drawings": record.counts["train"], "seconds": seconds, "peak_rss": peak, "start_rss": start_rss})
    )


def bench_ingest_ranges(megabytes: float, args, work: Path) -> None:
    """A build of one large ndjson file: its ingest stage read in one pass, then in byte ranges."""
    path = quickdraw_file(work / "ingest-ranges" / f"src-{megabytes:g}MB", megabytes / 1000)
    py, me = sys.executable, str(Path(__file__).resolve())
    size = path.stat().st_size / 1e6
    print(f"\ningest in byte ranges: one {size:.0f} MB simplified ndjson file, --procs {args.procs}, 32 px")
    stages: dict[str, list[dict]] = {"one pass": [], "ranges": []}
    for _rep in range(args.reps):
        for mode in stages:  # interleaved, so that other load hits both alike
            dst = work / "ingest-ranges" / "out"
            shutil.rmtree(dst, ignore_errors=True)
            cmd = [py, me, "_ingest_stage", str(path.parent), str(dst), str(args.procs), mode]
            stages[mode].append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    drawings = stages["ranges"][0]["images"]
    for mode, runs in stages.items():
        times = [r["ingest"] for r in runs]
        ingest, total = median(times), median([r["total"] for r in runs])
        print(
            f"  {mode:9s} ingest {ingest:6.2f} s ({min(times):.2f}-{max(times):.2f}),"
            f" {drawings / ingest:9,.0f} drawings/s; whole build {total:6.2f} s"
        )
    ratio = median([r["ingest"] for r in stages["one pass"]]) / median([r["ingest"] for r in stages["ranges"]])
    print(f"  ingest speed-up in ranges: x{ratio:.2f} (ideal x{args.procs}: the join and the store writes are extra)")


def child_ingest_stage(src: str, dst: str, procs: int, mode: str) -> None:
    """One ``shardgen.build`` at 32 px; print how long its ingest stage and the whole build took."""
    from shardgen import build
    from shardgen.formats import ranges
    from shardgen.options import BuildOptions, RenderOptions
    from shardgen.progress import Reporter

    class Stages(Reporter):
        def __init__(self) -> None:
            self.began: dict[str, float] = {}

        def stage(self, name: str, total: int) -> None:
            self.began[name] = time.perf_counter()

    if mode == "one pass":
        ranges.MIN_RANGE_BYTES = 1 << 62  # every file in one range
    reporter = Stages()
    began = time.perf_counter()
    result = build(src, dst, BuildOptions(render=RenderOptions(size=32)), procs=procs, reporter=reporter)
    total = time.perf_counter() - began
    ingest = reporter.began["render"] - reporter.began["ingest"]
    print(json.dumps({"images": result.images, "ingest": ingest, "total": total}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", type=Path, help="extra folders of .npz files to bench on")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (the median is reported)")
    parser.add_argument("--sketches", type=int, default=30_000, help="synthetic sketches (10 classes x 3 splits)")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    parser.add_argument("--chunk-size", type=int, default=None, help="shardgen --chunk-size (default: its own)")
    parser.add_argument(
        "--memory-sketches",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[100_000, 1_000_000],
        help="comma-separated sketch counts for the memory runs ('' to skip them)",
    )
    parser.add_argument("--memory-size", type=int, default=32, help="image size of the memory runs")
    parser.add_argument("--no-sample", action="store_true", help="bench only the given input folders")
    parser.add_argument("--no-encoders", action="store_true", help="skip the PNG encoder comparisons")
    parser.add_argument("--encoders-only", action="store_true", help="run only the PNG encoder comparisons")
    parser.add_argument("--encode-sketches", type=int, default=3000, help="sketches of the per-image encode timing")
    parser.add_argument("--encode-reps", type=int, default=5, help="passes of the per-image encode timing")
    parser.add_argument(
        "--determinism-processes", type=int, default=6, help="fresh processes that encode the same sketches"
    )
    parser.add_argument("--ceiling", action="store_true", help="also measure the ceiling and parent CPU per image")
    parser.add_argument("--ceiling-sketches", type=int, default=90_000, help="sketches of the ceiling runs")
    parser.add_argument("--ceiling-bytes", type=int, default=4096, help="the constant image's size in bytes")
    parser.add_argument("--scaling", action="store_true", help="also time real builds at 1, 2, 4 ... --procs")
    parser.add_argument(
        "--large-sketches", type=int, default=1000, help="sketches of the 2048 px npy memory run (0 to skip)"
    )
    parser.add_argument("--only", choices=["ceiling", "scaling", "large"], help="run only this measurement")
    parser.add_argument("--out", default=str(ROOT / "bench-out"), help="work folder (cache, shards)")
    parser.add_argument(
        "--formats-memory",
        type=float,
        nargs="?",
        const=1.0,
        metavar="GB",
        help="only measure peak memory while ingesting GB (default 1) of generated QuickDraw ndjson",
    )
    parser.add_argument(
        "--ingest-ranges",
        type=float,
        nargs="?",
        const=200.0,
        metavar="MB",
        help="only time the ingest of one MB (default 200) ndjson file in one pass and in byte ranges",
    )
    parser.add_argument(
        "--scheduler", help="Dask scheduler ADDRESS: bench builds through that cluster against --procs local processes"
    )
    args = parser.parse_args()
    if compile_bytecode():
        print("PYTHONDONTWRITEBYTECODE is set: wrote shardgen's bytecode first, as an install does")
    if args.formats_memory:
        bench_formats_memory(args.formats_memory, Path(args.out) / "formats")
        return
    if args.ingest_ranges:
        print(f"machine: {machine()}; at start: {load()}")
        bench_ingest_ranges(args.ingest_ranges, args, Path(args.out))
        print(f"\nat end: {load()}")
        return

    work = Path(args.out) / "work"
    work.mkdir(parents=True, exist_ok=True)
    import cv2
    import numpy
    import webdataset

    print("shardgen bench:", " ".join(sys.argv[1:]) or "(defaults)")
    print(f"machine: {machine()}")
    print(f"versions: numpy {numpy.__version__}, opencv {cv2.__version__}, webdataset {webdataset.__version__}")
    print(f"at start: {load()}; a load above the core count means others share the CPU (figures are noisy)")
    only = {"ceiling": bench_ceiling, "scaling": bench_scaling, "large": bench_large_images}.get(args.only)
    if only is not None:
        only(args, work)
        print(f"\nat end: {load()}")
        return
    shardgen_help, bare = help_time()
    print(f"\n`python -m shardgen --help`: {shardgen_help:.3f} s (target <= 0.3; `python -c pass` takes {bare:.3f} s)")

    inputs = [] if args.no_sample else [sample_input(Path(args.out) / "cache", 10, -(-args.sketches // 30))]
    if args.scheduler:
        for src in [*inputs, *args.inputs]:
            bench_cluster(src, args, work / src.name)
        print(f"\nat end: {load()}")
        return
    for src in [*inputs, *args.inputs]:
        if not args.encoders_only:
            bench_input(src, args, work / src.name)
        if not args.no_encoders:
            bench_encode_image(src, args)
            bench_encoders(src, args, work / src.name)
    if args.memory_sketches and not args.encoders_only:
        bench_memory(args, work)
    if args.large_sketches and not args.encoders_only:
        bench_large_images(args, work)
    if args.ceiling:
        bench_ceiling(args, work)
    if args.scaling:
        bench_scaling(args, work)
    print(f"\nat end: {load()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_bound":
        child_bound(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "_ceiling":
        child_ceiling(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif len(sys.argv) > 1 and sys.argv[1] == "_encode_digest":
        child_encode_digest(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_formats_ingest":
        child_formats_ingest(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_ingest_stage":
        child_ingest_stage(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        child_baseline(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
