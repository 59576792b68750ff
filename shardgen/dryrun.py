"""``shardgen build --dry-run``: what a build would write, worked out without rendering shards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import tar
from .errors import InputError, with_skip_hint
from .formats import is_drawing_file
from .formats.ingest import check_sources, plan_drawings
from .options import BuildOptions
from .orchestrate import splits_present
from .plan import shard_bounds
from .progress import Reporter, skipped_file, skipped_sketches
from .read import ADAPTERS, SPLITS, SourceFile, discover, split_sketches, valid_sketches
from .reading import STROKES
from .render import color_seed, encode_image, encode_npy, render_sketch
from .store import ClassRecord
from .worker import sample_key


@dataclass
class BuildPlan:
    """What a build would produce, worked out without rendering a shard or writing anything."""

    src: Path
    classes: list[str]
    counts: dict[str, int]  # split -> samples
    shard_counts: dict[str, list[int]]  # split -> samples in each shard
    estimated_bytes: dict[str, int]  # split -> estimated size of its shards
    bytes_per_sample: float  # mean size of one sample's tar members, measured on rendered sketches
    sampled: int  # how many sketches were rendered to measure it
    skipped: list[dict]
    skipped_files: list[dict]

    @property
    def images(self) -> int:
        return sum(self.counts.values())


def plan_build(
    src: Path, options: BuildOptions = BuildOptions(), *, sample: int = 64, reporter: Reporter | None = None
) -> BuildPlan:
    """Read and validate the inputs as ``build`` would, and say what it would write (``--dry-run``).

    Nothing is rendered into shards and nothing is written. The output size is an estimate: up to
    ``sample`` valid sketches, spread over the classes in proportion to their counts, are rendered and encoded
    in this process with the build's options, and their mean tar-member size is scaled up.
    Reading takes about as long as a build's ingest stage, in one process.
    """
    options.check()
    reporter = reporter or Reporter()
    sources = discover(Path(src))
    check_sources(sources, options.drawings, options.render.color)
    kept, reservoirs, skipped_files = _read_all(sources, options, sample, reporter)
    splits = splits_present(kept, options)
    picked = _proportional_sample(
        [[item for item in reservoir if item[0] in splits] for reservoir in reservoirs],
        [sum(record.counts.get(split, 0) for split in splits) for _, record in kept],
        sample,
    )
    sizes = _sample_sizes(picked, kept, options)
    per_sample = sum(sizes) / len(sizes) if sizes else 0.0
    counts = {split: sum(record.counts.get(split, 0) for _, record in kept) for split in splits}
    shard_counts = {
        split: [stop - start for start, stop in shard_bounds(counts[split], options.shard_size)] for split in splits
    }
    estimated = {}
    for split, shards in shard_counts.items():
        body = [round(n * per_sample) for n in shards]
        estimated[split] = sum(b + len(tar.end_of_archive(b)) for b in body)
    classes = [record.category for _, record in kept]
    skipped = [item for _, record in kept for item in record.skipped]
    return BuildPlan(
        Path(src), classes, counts, shard_counts, estimated, per_sample, len(sizes), skipped, skipped_files
    )


def _read_all(
    sources: list[SourceFile], options: BuildOptions, sample: int, reporter: Reporter
) -> tuple[list[tuple[SourceFile, ClassRecord]], list[list[tuple]], list[dict]]:
    """Read every source as the ingest stage would: the kept ones with their records and their
    candidates for the size sample, and the ``skipped_files`` entries of those left out."""
    wanted = tuple(options.splits or SPLITS)
    kept, reservoirs, skipped_files = [], [], []
    reporter.stage("read", len(sources))
    for source in sources:
        read = plan_drawings if is_drawing_file(source.path) else _read_npz
        try:
            record, valid = read(source, wanted, options, sample)
        except InputError as error:
            if options.on_error != "skip":
                raise with_skip_hint(error) from None
            skipped_files.append(skipped_file(reporter, source, error))
        else:
            skipped_sketches(reporter, record)
            reservoirs.append(valid)
            kept.append((source, record))
        reporter.advance(1)
    return kept, reservoirs, skipped_files


def _sample_sizes(picked: list[tuple], kept: list[tuple[SourceFile, ClassRecord]], options: BuildOptions) -> list[int]:
    """The tar members' size of each picked sketch, rendered and encoded as the build would."""
    sizes = []
    for class_index, split, index, sketch, drawing_meta in picked:
        key = sample_key(split, class_index, index)
        image = encode_image(render_sketch(sketch, options.render, color_seed(options.seed, key)), options.render)
        source, record = kept[class_index]
        meta = {"category": record.category, "class": class_index, "split": split, "index": index}
        meta["source"] = source.name
        meta.update(drawing_meta)
        members = [
            tar.member(f"{key}.{options.render.extension}", image),
            tar.member(f"{key}.cls", b"%d" % class_index),
            tar.member(f"{key}.json", json.dumps(meta, separators=(",", ":")).encode()),
        ]
        if options.render.strokes:
            members.append(tar.member(f"{key}.{STROKES}", encode_npy(sketch)))
        sizes.append(sum(map(len, members)))
    return sizes


def _read_npz(source: SourceFile, wanted: tuple[str, ...], options: BuildOptions, sample: int) -> tuple:
    """A ``.npz``'s record (counts, skipped sketches) and up to ``sample`` valid sketches to size."""
    path = Path(source.path)  # a dry run reads a local folder (plan_build takes a Path)
    by_split = ADAPTERS[path.suffix](path, wanted)
    record = ClassRecord(source.category, source.name, "")
    valid: list[tuple] = []  # (split, index, sketch, drawing metadata) candidates for the size sample
    for split, sketches in split_sketches(by_split, wanted, options.limit):
        count = 0
        for index, sketch in valid_sketches(sketches, source.name, split, options.on_error, record.skipped):
            count += 1
            valid.append((split, index, sketch, {}))
        record.counts[split] = count
    # Keep at most `sample` evenly spaced candidates per class, so memory stays small.
    return record, valid[:: max(1, len(valid) // max(sample, 1))][:sample]


def _proportional_sample(reservoirs: list[list], counts: list[int], sample: int) -> list[tuple]:
    """``(class index, *item)`` picks from each class's candidates, as many as its share of ``counts``.

    Small classes then weigh in the size estimate as little as they weigh in the output.
    """
    total = sum(counts)
    if total == 0 or sample <= 0:
        return []
    shares = [sample * count / total for count in counts]
    quotas = [int(share) for share in shares]
    by_remainder = sorted(range(len(counts)), key=lambda i: shares[i] - quotas[i], reverse=True)
    for i in by_remainder[: sample - sum(quotas)]:
        quotas[i] += 1
    picked: list[tuple] = []
    for class_index, (reservoir, quota) in enumerate(zip(reservoirs, quotas)):
        if quota and reservoir:
            picked.extend((class_index, *item) for item in reservoir[:: max(1, len(reservoir) // quota)][:quota])
    return picked
