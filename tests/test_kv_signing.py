"""Signed pickles on shared cache directories (issue 13, part 3; python-diskcache #357).

A cache directory others can write must never make a reader unpickle what they put there.
With a signing key, pickled keys and values carry an HMAC-SHA256 signature, checked before
anything is unpickled. ``Boom`` is the proof: unpickling it creates a marker file, so a test
that finds no marker knows the pickle was never loaded.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zlib
from pathlib import Path

import pytest

import candlecache
from candlecache import Cache, FanoutCache, Index, Deque, JSONDisk, SignatureWarning, SigningKeyError

KEY = "correct horse battery staple 9f2c"
ENV = "CANDLECACHE_SIGNING_KEY"


def _pwned(path: str, padding: str = "") -> str:
    """What unpickling a ``Boom`` calls: creates the marker file."""
    with open(path, "w") as f:
        f.write("unpickled")
    return "pwned"


class Boom:
    """A pickle that runs code when loaded (the attack of python-diskcache #357)."""

    def __init__(self, marker: Path, padding: int = 0) -> None:
        self.marker = str(marker)
        self.padding = "x" * padding  # large enough: stored in a value file, not inline

    def __reduce__(self):
        return (_pwned, (self.marker, self.padding))


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    yield path


def signature_warnings(found):
    return [w for w in found if issubclass(w.category, SignatureWarning)]


def _patch_crc(data: bytearray, pos: int, target: int) -> None:
    """Change bits of ``data[pos:pos + 4]`` so that ``zlib.crc32(data) == target``.

    CRC-32 is affine over GF(2): a forger keeps the checksum a value file's name carries
    while changing its contents. What stops the forgery is the signature.
    """
    n = len(data)
    zero = zlib.crc32(bytes(n))
    pivots: dict[int, tuple[int, int]] = {}
    for k in range(32):
        e = bytearray(n)
        e[pos + k // 8] = 1 << (k % 8)
        v, m = zlib.crc32(e) ^ zero, 1 << k
        while v:
            h = v.bit_length() - 1
            if h not in pivots:
                pivots[h] = (v, m)
                break
            pv, pm = pivots[h]
            v, m = v ^ pv, m ^ pm
    want, mask = target ^ zlib.crc32(data), 0
    while want:
        pv, pm = pivots[want.bit_length() - 1]
        want, mask = want ^ pv, mask ^ pm
    for k in range(32):
        if mask >> k & 1:
            data[pos + k // 8] ^= 1 << (k % 8)
    assert zlib.crc32(data) == target


def value_files(directory) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*.val"))


# (f) the default is unchanged -----------------------------------------------------------


def test_unsigned_cache_unpickles_the_payload_so_the_proof_works(tmp_path, marker):
    with Cache(tmp_path / "c") as cache:
        assert cache.disk.signed_pickles is False
        assert cache.signed_pickles == 0
        cache["inline"] = Boom(marker)
        assert not marker.exists()  # storing does not run it
        assert cache["inline"] == "pwned"
        assert marker.exists()  # loading does: this is what signing prevents
        marker.unlink()
        cache["file"] = Boom(marker, padding=100_000)
        assert len(value_files(cache.directory)) == 1
        assert cache["file"] == "pwned" and marker.exists()
        assert cache.check() == []


def test_unsigned_key_bytes_are_plain_pickles(tmp_path):
    with Cache(tmp_path / "c") as cache:
        db_key, raw = cache.disk.put((1, "a"))
        assert not raw and pickle.loads(db_key) == (1, "a") and not db_key.endswith(b"ccs1")


# signed round trips ---------------------------------------------------------------------


def test_signed_cache_round_trips_every_kind_of_key_and_value(tmp_path):
    values = {
        (1, "a"): [1, 2, 3],  # pickled key, inline pickled value
        "big": {"k": "v" * 100_000},  # value file
        b"raw": b"bytes",
        7: 7.5,
        "text": "t" * 100_000,  # text file: never unpickled, not signed
        "blob": b"b" * 100_000,
        frozenset({1}): None,
    }
    with Cache(tmp_path / "c", signing_key=KEY) as cache:
        assert cache.disk.signed_pickles is True
        assert cache.signed_pickles == 1
        for k, v in values.items():
            cache[k] = v
        for k, v in values.items():
            assert cache[k] == v
        assert sorted(map(repr, cache)) == sorted(map(repr, values))
        assert cache.check() == []
        assert cache.pop((1, "a")) == [1, 2, 3]
        assert cache.incr("n") == 1
        assert cache.add((2,), {"x": 1}) and cache.get((2,)) == {"x": 1}
        assert cache.push(["queued"], prefix="q") == "q-500000000000000"
        assert cache.pull(prefix="q") == ("q-500000000000000", ["queued"])
    with Cache(tmp_path / "c", signing_key=KEY.encode()) as again:  # bytes: the same key
        assert again["big"] == values["big"]
        assert again[frozenset({1})] is None


def test_pickled_keys_are_signed_and_deterministic(tmp_path):
    with Cache(tmp_path / "c", signing_key=KEY) as cache:
        db_key, raw = cache.disk.put((1, "a"))
        assert not raw and db_key.endswith(b"ccs1")
        assert cache.disk.put((1, "a")) == (db_key, raw)  # the index compares bytes
        assert db_key[: -36] == Cache(tmp_path / "u").disk.put((1, "a"))[0]
        assert cache.disk.put("s") == ("s", True)  # raw keys: never pickled, not signed


def test_the_key_is_never_written_into_the_directory_nor_pickled(tmp_path):
    secret = "only-in-memory-5d1e7a"
    cache = Cache(tmp_path / "c", signing_key=secret)
    cache[(1,)] = ["value"] * 10_000
    cache.close()
    for path in Path(cache.directory).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    state = pickle.dumps(cache)
    assert secret.encode() not in state
    with pytest.raises(SigningKeyError):
        pickle.loads(state)  # a copy without the key cannot open the directory


# (e) opening a signed directory -------------------------------------------------------


def test_opening_a_signed_directory_without_a_key_is_a_clear_error(tmp_path):
    Cache(tmp_path / "c", signing_key=KEY).close()
    with pytest.raises(SigningKeyError, match="signing_key=.*CANDLECACHE_SIGNING_KEY") as info:
        Cache(tmp_path / "c")
    assert isinstance(info.value, candlecache.CandlecacheError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(SigningKeyError):
        Cache(tmp_path / "c", signed_pickles=False)
    with pytest.raises(SigningKeyError):
        Index(str(tmp_path / "c"))
    with pytest.raises(SigningKeyError):
        Cache(tmp_path / "new", signed_pickles=True)  # asked for, with no key


def test_key_from_the_environment(tmp_path, monkeypatch):
    with Cache(tmp_path / "c", signing_key=KEY) as cache:
        cache[(1,)] = "one"
    monkeypatch.setenv(ENV, KEY)
    with Cache(tmp_path / "c") as cache:
        assert cache.disk.signed_pickles
        assert cache[(1,)] == "one"
    with Cache(tmp_path / "fresh") as fresh:  # a key turns signing on, and marks the directory
        fresh[(2,)] = "two"
        assert fresh.signed_pickles == 1
    monkeypatch.delenv(ENV)
    with pytest.raises(SigningKeyError):
        Cache(tmp_path / "fresh")
    monkeypatch.setenv(ENV, "")  # empty: not set
    with pytest.raises(SigningKeyError):
        Cache(tmp_path / "fresh")


def test_the_environment_key_can_be_declined_for_an_unsigned_directory_only(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    with Cache(tmp_path / "plain", signed_pickles=False) as plain:
        assert not plain.disk.signed_pickles and plain.signed_pickles == 0
    Cache(tmp_path / "signed").close()  # signed with the environment's key
    with pytest.raises(SigningKeyError, match="cannot be turned off"):
        Cache(tmp_path / "signed", signed_pickles=False)


def test_bad_keys_and_turning_signing_off_are_refused(tmp_path):
    with pytest.raises(SigningKeyError, match="empty"):
        Cache(tmp_path / "a", signing_key="")
    with pytest.raises(SigningKeyError, match="str or bytes"):
        Cache(tmp_path / "b", signing_key=1234)  # type: ignore[arg-type]
    with pytest.raises(SigningKeyError, match="contradicts"):
        Cache(tmp_path / "c", signing_key=KEY, signed_pickles=False)
    with Cache(tmp_path / "d", signing_key=KEY) as cache:
        with pytest.raises(SigningKeyError, match="cannot be turned off"):
            cache.reset("signed_pickles", 0)
        assert cache.disk.signed_pickles
    with Cache(tmp_path / "e") as cache:
        with pytest.raises(SigningKeyError, match="signing_key="):
            cache.reset("signed_pickles", 1)
        assert cache.signed_pickles == 0


def test_a_wrong_key_reads_nothing_and_check_fix_keeps_the_entries(tmp_path, marker):
    with Cache(tmp_path / "c", signing_key=KEY) as cache:
        cache[(1,)] = Boom(marker)
        cache["file"] = Boom(marker, padding=100_000)
        cache["plain"] = "raw values need no signature"
    with Cache(tmp_path / "c", signing_key="not the key") as wrong:
        assert wrong.get((1,), "absent") == "absent"
        assert wrong.get("file", "absent") == "absent"
        assert wrong["plain"] == "raw values need no signature"
        assert list(wrong) == ["file", "plain"]  # the pickled key is skipped
        found = wrong.check(fix=True)
        messages = [str(w.message) for w in signature_warnings(found)]
        assert any("is it the key its writers use" in m for m in messages)
        assert len(wrong) == 3  # kept: the key is the likelier culprit
    assert not marker.exists()
    with Cache(tmp_path / "c", signing_key=KEY) as right:
        assert right.check() == []
        assert right["file"] == "pwned"  # ours: signed with the key, so it is trusted
        assert marker.exists()


# (a) a foreign unsigned pickle ----------------------------------------------------------


def test_a_foreign_unsigned_pickle_is_never_unpickled(tmp_path, marker):
    directory = tmp_path / "shared"
    # A writer without the key: here a handle opened before the directory asked for
    # signatures (an older candlecache, or python-diskcache's format copied in, is the same).
    foreign = Cache(directory)
    cache = Cache(directory, signing_key=KEY)
    cache["mine"] = ["signed"]
    cache["big mine"] = ["signed"] * 20_000
    foreign["inline"] = Boom(marker)
    foreign["file"] = Boom(marker, padding=100_000)
    foreign[Boom(marker)] = "a pickled key"
    foreign.close()

    assert cache.get("inline", "default") == "default"
    assert cache.get("file", "default") == "default"
    with pytest.raises(KeyError):
        cache["inline"]
    assert cache.get("inline", "d", expire_time=True, tag=True) == ("d", None, None)
    assert sorted(map(repr, cache)) == sorted(map(repr, ["mine", "big mine", "inline", "file"]))
    assert list(cache.iterkeys()) == sorted(["mine", "big mine", "inline", "file"])
    assert cache["mine"] == ["signed"]
    assert not marker.exists()

    found = cache.check()
    bad = signature_warnings(found)
    assert len(bad) == 3, [str(w.message) for w in found]
    assert all("no signature" in str(w.message) for w in bad)
    assert any(".val" in str(w.message) for w in bad)  # the value file is named

    ours = set(value_files(directory))
    cache.check(fix=True)
    assert not marker.exists()
    assert cache.check() == []
    assert sorted(map(repr, cache)) == sorted(map(repr, ["mine", "big mine"]))
    assert len(set(value_files(directory))) == 1  # the foreign file went, ours stayed
    assert set(value_files(directory)) < ours
    assert cache["big mine"] == ["signed"] * 20_000
    cache.close()


def test_clearing_the_flag_in_the_directory_does_not_turn_signing_off(tmp_path, marker):
    directory = tmp_path / "shared"
    with Cache(directory, signing_key=KEY) as cache:
        cache._store.set_setting("signed_pickles", 0)  # a hostile writer edits the settings
    with Cache(directory) as foreign:  # now opens without a key, and writes plain pickles
        foreign["k"] = Boom(marker)
    with Cache(directory, signing_key=KEY) as cache:  # whoever has the key still checks
        assert cache.signed_pickles == 1
        assert cache.get("k", "default") == "default"
    assert not marker.exists()


def test_memoize_pop_and_pull_treat_a_foreign_pickle_as_absent(tmp_path, marker):
    directory = tmp_path / "shared"
    foreign = Cache(directory)
    cache = Cache(directory, signing_key=KEY)
    calls = []

    @cache.memoize()
    def square(x):
        calls.append(x)
        return x * x

    foreign.set(square.__cache_key__(3), Boom(marker))
    assert square(3) == 9 and calls == [3]  # computed again, and replaced by a signed value
    assert square(3) == 9 and calls == [3]

    foreign["popped"] = Boom(marker)
    assert cache.pop("popped", "default") == "default"
    assert "popped" not in cache

    foreign.push(Boom(marker), prefix="q")
    cache.push("second", prefix="q")
    assert cache.pull(prefix="q")[1] == "second"  # the unsigned front was pulled and skipped
    foreign.close()
    cache.close()
    assert not marker.exists()


# (b) a tampered signed value ------------------------------------------------------------


def test_a_tampered_value_file_is_never_unpickled(tmp_path, marker):
    with Cache(tmp_path / "c", signing_key=KEY) as cache:
        cache["k"] = ["signed value"] * 20_000
        cache["good"] = ["kept"]
        (path,) = value_files(cache.directory)
        original = path.read_bytes()
        crc = int(path.name.split(".")[1], 16)

        # A forged body that keeps the checksum in the file's name: the old signature no
        # longer matches it.
        forged = bytearray(pickle.dumps(Boom(marker, padding=100_000)) + original[-36:])
        _patch_crc(forged, len(forged) - 36, crc)  # the four bytes changed are in the signature
        path.write_bytes(bytes(forged))
        assert cache.get("k", "default") == "default"
        bad = signature_warnings(cache.check())
        assert len(bad) == 1 and "wrong signature" in str(bad[0].message)

        # One flipped byte, checksum kept.
        flipped = bytearray(original)
        flipped[10] ^= 0x01
        _patch_crc(flipped, len(flipped) - 36, crc)
        path.write_bytes(bytes(flipped))
        assert cache.get("k", "default") == "default"

        # One flipped byte, checksum not kept: the checksum catches it first.
        flipped = bytearray(original)
        flipped[10] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(candlecache.CorruptionError):
            cache.get("k")

        path.write_bytes(bytes(forged))
        cache.check(fix=True)
        assert not path.exists() and "k" not in cache and cache["good"] == ["kept"]
    assert not marker.exists()


def test_values_signed_with_another_key_are_never_unpickled(tmp_path, marker):
    directory = tmp_path / "shared"
    with Cache(directory, signing_key=KEY) as cache:
        cache["good"] = ["signed"]
    with Cache(directory, signing_key="the attacker's own key") as attacker:
        attacker["inline"] = Boom(marker)
        attacker["file"] = Boom(marker, padding=100_000)
        attacker[(Boom(marker),)] = 1
    with Cache(directory, signing_key=KEY) as cache:
        assert cache.get("inline", "default") == "default"
        assert cache.get("file", "default") == "default"
        assert sorted(map(repr, cache)) == sorted(map(repr, ["good", "inline", "file"]))
        bad = signature_warnings(cache.check())
        assert len(bad) == 3 and all("wrong signature" in str(w.message) for w in bad)
        cache.check(fix=True)  # a good entry checks, so these are forgeries: removed
        assert cache.check() == []
        assert list(cache) == ["good"]
        assert value_files(directory) == []
    assert not marker.exists()


def test_a_tampered_inline_value_is_never_unpickled(tmp_path, marker):
    directory = tmp_path / "shared"
    with Cache(directory, signing_key=KEY) as cache:
        cache["k"] = ["signed"]
        cache["other"] = ["signed too"]
        db_key, raw = cache.disk.put("k")
        row = cache._store.row(db_key, raw)
        signed = row[11]
        # The attacker's pickle with the old signature and marker appended.
        forged = pickle.dumps(Boom(marker)) + signed[-36:]
        cache._store.put(db_key, raw, row[3], None, row[5], 0, None, 0, row[9], None, forged,
                         10, 2**30, "least-recently-stored")
        assert cache.get("k", "default") == "default"
        assert len(signature_warnings(cache.check())) == 1
    assert not marker.exists()


# (c), (d) iteration, FanoutCache, Index, Deque -------------------------------------------


def test_fanout_cache_signs_its_shards_and_what_it_opens(tmp_path, marker):
    directory = tmp_path / "fanout"
    with FanoutCache(directory, shards=3, signing_key=KEY) as fanout:
        assert fanout.signed_pickles == 1
        for i in range(20):
            fanout[(i,)] = [i]
        assert sorted(fanout) == [(i,) for i in range(20)]
        assert all(fanout[(i,)] == [i] for i in range(20))
        sub = fanout.cache("sub")
        index = fanout.index("idx")
        deque = fanout.deque("dq")
        assert sub.disk.signed_pickles and index.cache.disk.signed_pickles
        assert deque.cache.disk.signed_pickles
        index[(1,)] = {"a": 1}
        deque.append({"b": 2})
        assert index[(1,)] == {"a": 1} and deque.popleft() == {"b": 2}
        assert fanout.check() == []
    with pytest.raises(SigningKeyError):
        FanoutCache(directory, shards=3)
    with pytest.raises(SigningKeyError):
        Cache(directory / "index" / "idx")

    # A foreign pickle in one shard.
    with FanoutCache(directory, shards=3, signing_key=KEY) as fanout:
        key = ("target",)
        shard = fanout._hash(key) % 3
        shard_dir = directory / ("%03d" % shard)
        with Cache(shard_dir, signing_key="another key") as attacker:
            attacker[key] = Boom(marker)
        assert fanout.get(key, "default") == "default"
        assert key not in list(fanout)
        assert len(signature_warnings(fanout.check())) == 1
    assert not marker.exists()


def test_index_and_deque_with_signing(tmp_path, monkeypatch, marker):
    index = Index.fromcache(Cache(tmp_path / "index", signing_key=KEY))
    index[(1, 2)] = [3]
    index["s"] = {"x": 1}
    assert dict(index.items()) == {(1, 2): [3], "s": {"x": 1}}
    with pytest.raises(SigningKeyError):
        Index(str(tmp_path / "index"))
    monkeypatch.setenv(ENV, KEY)
    again = Index(str(tmp_path / "index"))
    assert again.cache.disk.signed_pickles and again[(1, 2)] == [3]

    # Opened before the directory is signed, declining the environment's key.
    foreign_cache = Cache(tmp_path / "deque", signed_pickles=False)
    deque = Deque(directory=str(tmp_path / "deque"))  # the key from the environment
    assert deque.cache.disk.signed_pickles
    Deque.fromcache(foreign_cache).append(Boom(marker))
    deque.append(["mine"])
    assert deque.popleft() == ["mine"]  # the foreign front was pulled and skipped
    assert len(deque) == 0
    foreign_cache.close()
    assert not marker.exists()


def test_iteration_skips_foreign_pickled_keys(tmp_path, marker):
    directory = tmp_path / "c"
    foreign = Cache(directory)
    cache = Cache(directory, signing_key=KEY)
    cache[(1,)] = 1
    cache["raw"] = 2
    foreign[Boom(marker)] = 3
    foreign[(2,)] = 4  # a harmless unsigned key: skipped all the same
    assert list(cache) == [(1,), "raw"]
    assert list(reversed(cache)) == ["raw", (1,)]
    assert sorted(map(repr, cache.iterkeys())) == sorted(map(repr, [(1,), "raw"]))
    assert sorted(map(repr, cache.iterkeys(reverse=True))) == sorted(map(repr, [(1,), "raw"]))
    assert len(cache) == 4  # counted, not read
    assert cache.get((2,), "default") == "default"  # its key bytes differ: no such entry
    foreign.close()
    cache.close()
    assert not marker.exists()


# JSONDisk: no pickles at all --------------------------------------------------------------


def test_json_disk_never_unpickles_even_without_a_key(tmp_path, marker):
    directory = tmp_path / "json"
    with Cache(directory, disk=JSONDisk) as cache:
        cache["k"] = {"a": [1, 2]}
        db_key, raw = cache.disk.put("k")
        assert raw and isinstance(db_key, bytes)
        with Cache(directory) as foreign:  # writes a pickle under the same raw key
            foreign[db_key] = Boom(marker)
            foreign[Boom(marker)] = "a pickled key"
        assert cache.get("k", "default") == "default"
        assert list(cache) == ["k"]
        bad = signature_warnings(cache.check())
        assert len(bad) == 2 and all("JSONDisk reads none" in str(w.message) for w in bad)
        cache.check(fix=True)
        assert cache.check() == [] and len(cache) == 0
    assert not marker.exists()


def test_frames_are_arrow_files_not_pickles(tmp_path):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"time": [1, 2], "close": [1.5, 2.5]})
    with Cache(tmp_path / "c", signing_key=KEY) as cache:
        cache["df"] = df
        assert cache["df"].equals(df)
        assert list(Path(cache.directory).rglob("*.arrow"))
        assert cache.check() == []
