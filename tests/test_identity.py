"""Byte identity: a small fixed build writes exactly the pinned bytes, whatever --procs and --chunk-size are."""

from __future__ import annotations

import hashlib

import pytest

from shardgen.pipeline import BuildOptions, build
from shardgen.render import RenderOptions
from shardgen.sample import write_samples

# sha256 of every file a build writes at DST's top level (shards, wids indexes, manifest, card), for the
# build below. A change that alters output bytes on purpose (an encoder change, a new manifest
# field, a version bump) updates these pins in the same commit and says why.
PINNED_SHA256 = {
    "README.md": "9ce50a12c2420a89b207fb537ef626978e1f41feabf28151a6e92b33489179ad",
    "manifest.json": "c048d89e84418f9ca62c3e3dd74ec6c9e92f2c285be7a35f3590cd9f893c5c7f",
    "test-000000.tar": "edad70d30391adcf043425b879f5dee360526e47181b091bbe8d489d5c815c1f",
    "test-000001.tar": "da1b0f4a9adf2e5f28cccec318fbd2cb21baec0aece4558c59440ad40a8c9d01",
    "test-000002.tar": "40be11f1f9bffcf2ab3931a19e632e144ee7270a055f3fc9b60f6381c75eb2ea",
    "test-000003.tar": "3c0131f9c2e0dafd7a87b1779bf0f27c68ced7b2402500121c0202d22a808447",
    "test.wids.json": "1dfa8bf40b419fbcbab7c85d746fc584643e83f54dcc03aa46cd0f8793aee7a2",
    "train-000000.tar": "652d1ae2aa89e5b7e49b7fd826a519ee8995ba6431d9a8133c33fd64d1465d57",
    "train-000001.tar": "256b2eadcb4c1e99d3efbfc33284856f8fd731ff8e0223e915fffed17171c801",
    "train-000002.tar": "f6166a882b9a20e5e754347a765a1b4ff964564d047b86546a6e09b230c8e387",
    "train-000003.tar": "80e4a872898e9bf2c18b193784682082cc9afa4f5837070d745c61517d3931f3",
    "train.wids.json": "9c94d9077401438e2affdd75871405d8dcde9f874f7f9c1630891d7221a781ef",
    "valid-000000.tar": "0224b82021fd41bb28470bbdf4b6befce2a012a7ec815e3bcbb831359453179a",
    "valid-000001.tar": "ff0aaca2d4a026e92523a74c28fa77cc82c23616fb56f668d959b72a01e9afb3",
    "valid-000002.tar": "785d0d5daa5530d53e2c70d2011929ebc0db16c042b21d21495cf54d82b3ccfc",
    "valid-000003.tar": "bc08e5318c63df8e27bc8b135e8e1639bc843a2962a551e596e71f446375437a",
    "valid.wids.json": "e0fa00c808015c52792f9cbe7e6f6687f2b602fba28488f2fff2ea98e4020477",
}
# 3 classes x 20 sketches a split, 32 px, shards of 16: four shards a split, the last one short.
OPTIONS = BuildOptions(render=RenderOptions(size=32), shard_size=16, seed=3)


@pytest.fixture(scope="module")
def pinned_src(tmp_path_factory):
    src = tmp_path_factory.mktemp("identity-npz")
    write_samples(src, categories=3, per_split=20, seed=7)
    return src


@pytest.mark.slow
@pytest.mark.parametrize("procs", [1, 2])
@pytest.mark.parametrize("chunk_size", [7, 256])
def test_fixed_build_writes_the_pinned_bytes(pinned_src, tmp_path, procs, chunk_size):
    """Every shard, wids index, the manifest and the card of the fixed build hash to the pinned sha256."""
    build(pinned_src, tmp_path, OPTIONS, procs=procs, chunk_size=chunk_size)
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir()) if p.is_file()}
    assert written == PINNED_SHA256
