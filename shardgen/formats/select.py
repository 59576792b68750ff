"""Which drawings a build keeps, and which split each goes to: QuickDraw files have no splits.

A drawing's split comes from a seeded hash of its ``key_id``, never from its position, so it does
not change when a file gains lines or its lines are reordered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SPLITS = ("train", "valid", "test")
ALL_TRAIN = (1.0, 0.0, 0.0)


@dataclass(frozen=True)
class DrawingOptions:
    """How drawings from QuickDraw files are split and filtered."""

    split_ratio: tuple[float, ...] = ALL_TRAIN  # train, valid, test (check() wants three); sums to 1
    recognized_only: bool = False
    countries: tuple[str, ...] | None = None  # keep only these country codes

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option that is out of range."""
        ratio = self.split_ratio
        if len(ratio) != 3 or any(not 0 <= r <= 1 for r in ratio) or abs(sum(ratio) - 1) > 1e-6:
            raise ValueError(f"split ratio must be three fractions TRAIN,VALID,TEST summing to 1, got {ratio}")
        if self.countries is not None and not self.countries:
            raise ValueError("countries must name at least one country code")

    @property
    def filters(self) -> bool:
        return self.recognized_only or self.countries is not None

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that can receive drawings."""
        return tuple(split for split, share in zip(SPLITS, self.split_ratio) if share > 0)

    def to_dict(self) -> dict:
        """Only what differs from the defaults, so builds that use none keep their identity."""
        out: dict = {}
        if self.split_ratio != ALL_TRAIN:
            out["split_ratio"] = list(self.split_ratio)
        if self.recognized_only:
            out["recognized_only"] = True
        if self.countries is not None:
            out["countries"] = list(self.countries)
        return out


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
