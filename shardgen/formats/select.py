"""Which drawings a build keeps, and which split each goes to: QuickDraw files have no splits.

A drawing's split comes from a seeded hash of its ``key_id``, never from its position, so it does
not change when a file gains lines or its lines are reordered.
"""

from __future__ import annotations

import hashlib

from ..options import ALL_TRAIN, SPLITS, DrawingOptions


def assign_split(key_id: str, seed: int, ratio: tuple[float, ...]) -> str:
    """The split of the drawing ``key_id``: a uniform hash in [0, 1) cut at the ratio's bounds."""
    if ratio == ALL_TRAIN:
        return "train"
    digest = hashlib.blake2b(f"{seed}:{key_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "little") / 2**64
    bound = 0.0
    for split, share in zip(SPLITS, ratio):
        bound += share
        if point < bound:
            return split
    return next(split for split, share in zip(reversed(SPLITS), reversed(ratio)) if share > 0)


def rejection(meta: dict, options: DrawingOptions) -> str | None:
    """Which filter leaves the drawing out (``not_recognized``, ``country``), or ``None``."""
    if options.recognized_only and meta.get("recognized") is not True:
        return "not_recognized"
    if options.countries is not None and meta.get("countrycode") not in options.countries:
        return "country"
    return None
