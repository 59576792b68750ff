"""Check a finished build against its manifest: every shard, every sample, every image.

Each shard is read once, sequentially: the bytes feed sha256 (and md5, only where a wids index
lists an ``md5sum``, as older builds wrote) while ``tarfile`` (stream mode) walks the members, so
a shard is never held in memory whole. Shards are checked in worker processes, independently;
keys must be unique across the whole build, so each worker returns an 8-byte hash per key (a
build of 26 million samples costs 200 MB for this, not gigabytes of key strings) and the parent
looks for repeats. Problems are collected, not raised, so that one run names every broken shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fragments import partial_target
from .reading import NON_IMAGE, decode_image, group_by_key, load_manifest, render_channels

# Enough to show what is wrong with a shard without flooding the terminal when all of it is.
MAX_PROBLEMS_PER_SHARD = 5


@dataclass
class VerifyResult:
    """What ``verify`` checked and every problem it found (one line each, naming the file)."""

    dst: Path
    splits: int = 0
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    bad_files: set[str] = field(default_factory=set)
    unknown_files: set[str] = field(default_factory=set)  # .tar files in DST the manifest does not list

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, message: str) -> None:
        self.problems.append(f"{file}: {message}")
        self.bad_files.add(file)

    def verdict(self) -> str:
        checked = f"{self.splits} splits, {self.shards} shards, {self.samples:,} samples"
        if self.ok:
            return f"OK: {checked} match the manifest"
        advice = (
            "move the unknown shards away"
            if self.bad_files <= self.unknown_files
            else "rebuild the named shards (rerun shardgen build) or restore them"
        )
        return f"FAILED: {len(self.problems)} problem(s) in {len(self.bad_files)} file(s) ({checked} checked); {advice}"


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes (sha256, and md5 if asked) and counts every byte read through it."""

    def __init__(self, handle, md5: bool) -> None:
        super().__init__()
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class _DecoderMessages:
    """Captures what C decoders (libpng, libjpeg) print on file descriptor 2 while a shard is read,
    so their lines become part of the problem they explain instead of raw noise on the terminal."""

    def __enter__(self) -> _DecoderMessages:
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def take(self) -> str:
        """What was printed since the last call, on one line."""
        fd = self.file.fileno()
        size = os.lseek(fd, 0, os.SEEK_END)
        if not size:
            return ""
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, size).decode(errors="replace")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)  # fd 2 shares this offset: the next message starts at 0
        return "; ".join(line.strip() for line in text.splitlines() if line.strip())

    def __exit__(self, *exc_info) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.close()


@dataclass
class _ShardCheck:
    """What reading one shard found."""

    count: int = 0
    classes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    size: int = 0
    sha256: str = ""
    md5: str = ""
    key_hashes: list[int] = field(default_factory=list)


def _spelling(ext: str) -> str:
    """One name per image format, so that a ``jpeg`` build may write ``.jpg`` members."""
    ext = ext.lower()
    return {"jpeg": "jpg", "tif": "tiff"}.get(ext, ext)


def key_hash(key: str) -> int:
    """A stable 8-byte hash of a sample key. A collision among 10^8 keys has odds of about 1 in
    3,700 and costs nothing but a re-read: repeats are confirmed on the key names before reporting."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


class _Checker:
    """What checking a shard needs from the manifest; small, so it pickles to worker processes."""

    def __init__(self, manifest: dict, md5: bool = False) -> None:
        self.md5 = md5  # hash md5 too: a wids index lists md5sums to compare with
        self.classes = manifest["classes"]
        render = manifest.get("options", {}).get("render", {})
        self.size = render.get("size")
        self.channels = render_channels(manifest)
        self.format = render.get("format")

    def __call__(self, job: tuple[Path, str]) -> _ShardCheck:
        return self.read_shard(*job)

    def read_shard(self, path: Path, split: str) -> _ShardCheck:
        check = _ShardCheck()
        seen: set[str] = set()
        with open(path, "rb") as handle, _DecoderMessages() as messages:
            reader = _HashingReader(handle, self.md5)
            try:
                with tarfile.open(fileobj=reader, mode="r|") as archive:
                    for key, members in group_by_key(archive):
                        exts = [ext for ext, _ in members]
                        repeats = [ext for i, ext in enumerate(exts) if ext in exts[:i]]
                        check.problems += [f"member {key}.{ext} appears twice" for ext in repeats]
                        self.check_sample(key, dict(members), split, seen, check, messages)
            except (tarfile.TarError, OSError) as error:
                check.problems.append(f"not a readable tar archive after {check.count} samples ({error})")
            reader.drain()
        check.size, check.sha256 = reader.size, reader.sha256.hexdigest()
        check.md5 = reader.md5.hexdigest() if reader.md5 is not None else ""
        return check

    def check_sample(
        self, key: str, members: dict, split: str, seen: set[str], check: _ShardCheck, messages: _DecoderMessages
    ) -> None:
        check.count += 1

        def problem(message: str) -> None:
            check.problems.append(f"sample {key}: {message}")

        if key in seen:
            problem("key appears twice in this shard")
        else:  # repeats across shards are found by the parent, from the hashes
            seen.add(key)
            check.key_hashes.append(key_hash(key))
        images = [ext for ext in members if ext not in NON_IMAGE]
        if len(images) != 1:
            problem(f"has image members {images or 'none'}, expected one")
        elif self.format is not None and _spelling(images[0]) != _spelling(self.format):
            problem(f"image is .{images[0]}, the manifest says {self.format}")
        if "cls" not in members or "json" not in members:
            problem("lacks its .cls or .json member")
            return
        try:
            label = int(members["cls"])
            meta = json.loads(members["json"])
        except ValueError as error:
            problem(f"unreadable .cls or .json ({error})")
            return
        if not isinstance(meta, dict):
            problem(f".json holds a {type(meta).__name__}, not an object")
            return
        check.classes[label] += 1
        if not 0 <= label < len(self.classes):
            problem(f"label {label} is not a class of this build ({len(self.classes)} classes)")
        elif meta.get("class") != label or meta.get("category") != self.classes[label]:
            problem(
                f"label {label} ({self.classes[label]}) disagrees with its metadata "
                f"(class {meta.get('class')}, category {meta.get('category')!r})"
            )
        if meta.get("split") != split:
            problem(f"metadata says split {meta.get('split')!r}, the shard is in {split!r}")
        if len(images) == 1:
            self.check_image(members[images[0]], images[0], problem, messages)

    def check_image(self, data: bytes, ext: str, problem, messages: _DecoderMessages) -> None:
        try:
            image = decode_image(data, ext, self.channels)
        except Exception as error:  # any decoder failure is a finding about the data, not a crash
            detail = messages.take()
            problem(f"image does not decode ({error}{': ' + detail if detail else ''})")
            return
        # A warning about an image that decodes adds nothing that sha256 and the checks below miss.
        messages.take()
        if self.size is not None and image.shape[:2] != (self.size, self.size):
            problem(f"image is {image.shape[1]}x{image.shape[0]}, the manifest says {self.size}x{self.size}")


def verify(dst: Path, procs: int | None = None) -> VerifyResult:
    """Read every shard of the build in ``dst`` and compare it with the manifest and wids indexes.

    Shards are checked by ``procs`` worker processes (all cores by default; 1 checks in-process).
    """
    dst = Path(dst)
    manifest = load_manifest(dst)
    result = VerifyResult(dst)
    indexes = {split: _load_wids(dst, split) for split in manifest["splits"]}
    md5sums = any(isinstance(index, list) and any("md5sum" in entry for entry in index) for index in indexes.values())
    checker = _Checker(manifest, md5=md5sums)  # md5 only to find a stale md5sum an older build wrote
    listed = [(split, shard) for split, info in manifest["splits"].items() for shard in info["shards"]]
    present = [(split, shard) for split, shard in listed if (dst / shard["file"]).is_file()]
    checks = dict(zip((shard["file"] for _, shard in present), _run(checker, dst, present, procs)))

    for split, info in manifest["splits"].items():
        result.splits += 1
        classes: Counter = Counter()
        for shard in info["shards"]:
            result.shards += 1
            check = checks.get(shard["file"])
            if check is None:
                result.add(shard["file"], "missing: listed in the manifest but not on disk")
                continue
            _compare_shard(shard, check, result)
            classes.update(check.classes)
            result.samples += check.count
        expected = info.get("class_counts")
        if expected is not None and all(s["file"] in checks for s in info["shards"]):
            actual = [classes.get(i, 0) for i in range(len(expected))]
            if actual != expected:
                result.add(split, f"class counts {actual} differ from the manifest's {expected}")
        _verify_wids(split, indexes[split], info, checks, result)
    _find_repeated_keys(dst, checks, result)
    known = {shard["file"] for _, shard in listed}
    for path in sorted(dst.iterdir()):
        if (partial_target(path.name) or path.name).endswith(".tar") and path.name not in known:
            result.add(
                path.name, "unknown shard: not in the manifest (left from another build?); move it away or delete it"
            )
            result.unknown_files.add(path.name)
    return result


def _run(checker: _Checker, dst: Path, shards: list[tuple[str, dict]], procs: int | None) -> list[_ShardCheck]:
    jobs = [(dst / shard["file"], split) for split, shard in shards]
    procs = min(procs or os.cpu_count() or 1, max(len(jobs), 1))
    if procs == 1:
        return [checker(job) for job in jobs]
    with ProcessPoolExecutor(procs) as pool:
        return list(pool.map(checker, jobs))


def _find_repeated_keys(dst: Path, checks: dict[str, _ShardCheck], result: VerifyResult) -> None:
    """Keys must be unique build-wide: compare every shard's key hashes, then name the repeats."""
    names = list(checks)
    per_shard = [np.asarray(checks[name].key_hashes, dtype=np.int64) for name in names]
    if not per_shard:
        return
    owners = np.repeat(np.arange(len(names)), [len(h) for h in per_shard])
    hashes = np.concatenate(per_shard)
    order = np.argsort(hashes, kind="stable")
    repeated = hashes[order][1:] == hashes[order][:-1]
    if not repeated.any():
        return
    # Rare, so the key names are recovered by reading the member names of the shards involved.
    wanted = set(hashes[order][1:][repeated].tolist())
    where: dict[str, list[str]] = {}
    for index in sorted(set(owners[order][1:][repeated].tolist()) | set(owners[order][:-1][repeated].tolist())):
        with tarfile.open(dst / names[index], mode="r|") as archive:
            keys = {member.name.partition(".")[0] for member in archive}
        for key in sorted(keys):
            if key_hash(key) in wanted:
                where.setdefault(key, []).append(names[index])
    for key, shards in where.items():
        if len(shards) > 1:
            for shard in shards[1:]:
                result.add(shard, f"sample {key}: key also in {shards[0]}")


def _compare_shard(shard: dict, check: _ShardCheck, result: VerifyResult) -> None:
    name = shard["file"]
    if check.size != shard["bytes"]:
        result.add(name, f"is {check.size:,} bytes, the manifest says {shard['bytes']:,} (truncated or changed)")
    elif check.sha256 != shard["sha256"]:
        result.add(name, "sha256 differs from the manifest (corrupted or changed)")
    if check.count != shard["count"]:
        result.add(name, f"holds {check.count} samples, the manifest says {shard['count']}")
    for problem in check.problems[:MAX_PROBLEMS_PER_SHARD]:
        result.add(name, problem)
    if len(check.problems) > MAX_PROBLEMS_PER_SHARD:
        result.add(name, f"... and {len(check.problems) - MAX_PROBLEMS_PER_SHARD} more problems")


def _load_wids(dst: Path, split: str) -> list[dict] | str:
    """The shard list of ``split``'s wids index, or what is wrong with the index."""
    try:
        index = json.loads((dst / f"{split}.wids.json").read_text())
    except FileNotFoundError:
        return "missing (random access with wids will not work)"
    except ValueError as error:
        return f"not valid JSON ({error})"
    shardlist = index.get("shardlist", []) if isinstance(index, dict) else None
    if not isinstance(shardlist, list) or not all(isinstance(s, dict) for s in shardlist):
        return "not a wids shard index (an object with a list of shards)"
    return shardlist


def _verify_wids(
    split: str, shardlist: list[dict] | str, info: dict, checks: dict[str, _ShardCheck], result: VerifyResult
) -> None:
    name = f"{split}.wids.json"
    if isinstance(shardlist, str):
        result.add(name, shardlist)
        return
    listed = [(s.get("url"), s.get("nsamples"), s.get("filesize")) for s in shardlist]
    expected = [(s["file"], s["count"], s["bytes"]) for s in info["shards"]]
    if listed != expected:
        result.add(name, "its shard list disagrees with the manifest")
        return
    for entry, shard in zip(shardlist, info["shards"]):
        check = checks.get(shard["file"])
        # Only an intact shard says anything about the index: a corrupt one is reported already.
        if check is not None and check.sha256 == shard["sha256"] and entry.get("md5sum") not in (None, check.md5):
            result.add(name, f"md5sum of {shard['file']} differs from the (intact) file: the index is stale")
