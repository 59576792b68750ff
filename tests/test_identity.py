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
    "manifest.json": "1e6043d40c23899069a6a8dd347b5fec4ea2d8692c51c77ee33befee94c585ac",
    "test-000000.tar": "1b7a413079cbdf5d32b01168530d09f82e54bdabec00123540b17b84765acd55",
    "test-000001.tar": "cdc6905c5b54d5bc0a6db1ecae4f57444c3469b607483ca94547616886561f0a",
    "test-000002.tar": "77bf80b19b3db7ed5be64e07e286aa707c4b95dc664b9f0b079d236bd0fa446a",
    "test-000003.tar": "df679deb629e1ffbc10899c1af1ab818fdc4cfc20417ae279dda6d6758dd7a3f",
    "test.wids.json": "33b424494aa7c6b7dcd347043a1eca12f453a4c47b32d205ff04f0baec22b0ac",
    "train-000000.tar": "a5f556ee897aa04e25ee772920211fbbaf8a843309dd37fed4a25eaebb63321b",
    "train-000001.tar": "778e8c533e2f26987218eb560bbeee8047375577bc892a793f4ed0e782e26ad3",
    "train-000002.tar": "949d45e4f87c86115bbf6881d42979618bc09308baa96c3c4ef405febe3bbc05",
    "train-000003.tar": "93a3754c35e6353d8d6440f0b1a24e38dff6cc6b6b54413e2a71863f50773697",
    "train.wids.json": "ea72752edbfae73391fc9b96ebfa8e2761879498fff995960520fc1d7cae51a0",
    "valid-000000.tar": "db8fdff02a86d937cbd67a8acbda44619a83159e82792147e7817267e192273a",
    "valid-000001.tar": "c6bed7c35c5d0b2e68202fc721fd0cc67ef33a7f8af86d19a93d6d34da7d8599",
    "valid-000002.tar": "51e5974a98774e6c98142dd7146abe8d9f019515998f3beb1bcaf2353422fb2a",
    "valid-000003.tar": "7297d60082868139792eeabb4e177e757566e99e399cf3043794d28f3cadb9c7",
    "valid.wids.json": "1d115b6994404f41be3522969bb1c91df2db8a8ddf5862d3b7f277e0e07404ed",
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
