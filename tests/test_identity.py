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
    "manifest.json": "1dfbde3a109da48d050ab763e68fe2467e4aa878b3b26825d87a141b7a2962f1",
    "test-000000.tar": "19e514bf6bf0938ff35b70fcb2b3bbee77b6fd75063f2b30a9448eafef1be030",
    "test-000001.tar": "e19de53ad7562983840a7560282df23866c6ab7deb9f1c98f0b9bf0d9d11d5a8",
    "test-000002.tar": "fca912589667b9d880da34ce94e517e5d7ecbca4f1014f20470c9490f6ae7692",
    "test-000003.tar": "f4600dc9b958fd5063aab69537c3221b085e1fb99d7af2535b9c634727616224",
    "test.wids.json": "826fbed13048adf7083be6f272f843599876fcefd3839e8ba47ff38efa1521e4",
    "train-000000.tar": "c6329c837a663446c855e9e65b2ec4b876c7e9cc8af3f850a7aec719f9b91853",
    "train-000001.tar": "44eff716b11b262df4e44fc2e942110ef735d1e4c08c2b993d6cebd1a3befceb",
    "train-000002.tar": "304d013abc0229bfde95ed46a395026d44f370fbc2918114326b783a69b2ddcb",
    "train-000003.tar": "3df4ce07a9822b52f9295a8a4c77684419851a2d6651bbcb478569f7763ded2b",
    "train.wids.json": "15527e9a8278ceda645504a3fff65288d3494f250246f0f62c22404559b97651",
    "valid-000000.tar": "7dd7aa602a81b40ce6ae11df6e773b465740afc4f56c3ff4a2709c1f0750f09a",
    "valid-000001.tar": "0f34441c4048f9b3ba9db5ac65db22cc6c4a457357411c01649b5d649629c73f",
    "valid-000002.tar": "2b592c7192e70e435dc7da989923c83113b1a97055ea966c2652da12fceb20ea",
    "valid-000003.tar": "e713460b7c7a91bec984185a4823e5c62b312d610c981482413334ae8e0dc4f4",
    "valid.wids.json": "e0b930922511dd8fe34f67eb112a937b5cd7ba52c2903e03fcf5eecb9240fbc1",
}
# 3 classes x 20 sketches a split, 32 px, shards of 16: four shards a split, the last one short.
OPTIONS = BuildOptions(render=RenderOptions(size=32), shard_size=16, seed=3)


@pytest.fixture(scope="module")
def pinned_src(tmp_path_factory):
    return sample_folder(tmp_path_factory, "identity-npz", categories=3, per_split=20, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("procs", [1, 2])
@pytest.mark.parametrize("chunk_size", [7, 256, None], ids=["chunks-7", "chunks-256", "whole-shards"])
def test_fixed_build_writes_the_pinned_bytes(pinned_src, tmp_path, procs, chunk_size):
    """Every shard, wids index, the manifest and the card of the fixed build hash to the pinned sha256.

    With the default chunk size (None) all but the last two rounds of shards are rendered whole.
    """
    build(pinned_src, tmp_path, OPTIONS, procs=procs, chunk_size=chunk_size)
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir()) if p.is_file()}
    assert written == PINNED_SHA256
