"""Byte identity: a small fixed build writes exactly the pinned bytes, whatever --procs and --chunk-size are."""

from __future__ import annotations

import hashlib

import pytest

from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from tests.helpers import sample_folder

# sha256 of every file a build writes at DST's top level (shards, wids indexes, manifest, card), for the
# build below. A change that alters output bytes on purpose (an encoder change, a new manifest
# field, a version bump) updates these pins in the same commit and says why.
PINNED_SHA256 = {
    "README.md": "9ce50a12c2420a89b207fb537ef626978e1f41feabf28151a6e92b33489179ad",
    "manifest.json": "4bf1e64d629c2b030a6db813828d2da945868d3e3b0501f095a9c43a991dd9d9",
    "test-000000.tar": "122aea08df29a64b07c1eb07b676b910d894cd4f74f3ef35efcdf16b75b10fff",
    "test-000001.tar": "caa420215930899c6b74a1efdeae201fb0498c9fff9cc0d8b9bc15b7ecefd4f1",
    "test-000002.tar": "143d1cd06b7f33aa7cb7a07bd86469cd9df158f04bf5ac43f46c152efe62c07c",
    "test-000003.tar": "6b05e3420d760bf6ccba098c0776567a5fbc2b5113012c76c633989e6992ac25",
    "test.wids.json": "33b424494aa7c6b7dcd347043a1eca12f453a4c47b32d205ff04f0baec22b0ac",
    "train-000000.tar": "8c7207bd5681eb9ce77f98b55486279ae3584c72778fdec610fd398d947892af",
    "train-000001.tar": "99925b889ee90fa38fda8fd7fb01c3be29334f13ef927ad0f84fe4d7fea1af98",
    "train-000002.tar": "9de16757c0cd55ed31f74703a3e360fa6524edb2ed4b9ce76506485e656ffb9d",
    "train-000003.tar": "911c0ef52836e0b81b3278707db7a793aeec589223426c3035358a222551f402",
    "train.wids.json": "7b0989b57db97e4b7d2b04adbf224507587682d5bda6a6bdcefd5181550eda52",
    "valid-000000.tar": "ed8f49a592d0bc13bb82914a2cab02c7f49a4367f9ca724a0f1f6ae53cbe2e32",
    "valid-000001.tar": "588fb90942cc86dde7ca052827ac81b5c55dc88cc663bebf98947cfc34662666",
    "valid-000002.tar": "1b5425630db8aab8428feeb53dbb82466b0789d780597b35412588330310b69b",
    "valid-000003.tar": "abbe9210084465b7f1b572dc4f75907480717f05708e0f588d69329479c24c52",
    "valid.wids.json": "1f5bda5bd633bec74365b751a91d00a0187aa922d8251cdeb3fa5d4868fb4217",
}
# 3 classes x 20 sketches a split, 32 px, shards of 16: four shards a split, the last one short.
OPTIONS = BuildOptions(render=RenderOptions(size=32), shard_size=16, seed=3)


@pytest.fixture(scope="module")
def pinned_src(tmp_path_factory):
    return sample_folder(tmp_path_factory, "identity-npz", categories=3, per_split=20, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("procs", [1, 2])
@pytest.mark.parametrize("chunk_size", [7, 256])
def test_fixed_build_writes_the_pinned_bytes(pinned_src, tmp_path, procs, chunk_size):
    """Every shard, wids index, the manifest and the card of the fixed build hash to the pinned sha256."""
    build(pinned_src, tmp_path, OPTIONS, procs=procs, chunk_size=chunk_size)
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir()) if p.is_file()}
    assert written == PINNED_SHA256
