"""Our PASETO wrapper against the official v4 test vectors, and its closed gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from valuetune.token.paseto import (
    MAX_TOKEN_LENGTH,
    TokenError,
    TokenProblem,
    b64url_decode_canonical,
    b64url_encode,
    local_key,
    open_token,
    public_signing_key,
    public_verify_key,
    seal,
    split_token,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "paseto_v4.json").read_text())["tests"]


def _key(vector: dict[str, Any]) -> Any:
    if vector["token"].startswith("v4.public.") and "public-key" in vector:
        return public_verify_key(bytes.fromhex(vector["public-key"]))
    if "key" in vector:
        return local_key(bytes.fromhex(vector["key"]))
    return public_verify_key(bytes.fromhex(vector["public-key"]))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_official_vectors_decode_or_fail_as_expected(vector: dict[str, Any]) -> None:
    implicit = vector["implicit-assertion"].encode()
    if vector["expect-fail"]:
        with pytest.raises(TokenError):
            open_token(_key(vector), vector["token"], implicit)
        return
    claims = open_token(_key(vector), vector["token"], implicit)
    assert claims == json.loads(vector["payload"])


ENCRYPTABLE = [
    v
    for v in VECTORS
    if not v["expect-fail"]
    and v["token"].startswith("v4.local.")
    and (v["footer"] == "" or v["footer"].startswith("{"))
]


@pytest.mark.parametrize("vector", ENCRYPTABLE, ids=[v["name"] for v in ENCRYPTABLE])
def test_official_local_vectors_encrypt_to_the_same_token(vector: dict[str, Any]) -> None:
    token = seal(
        local_key(bytes.fromhex(vector["key"])),
        json.loads(vector["payload"]),
        json.loads(vector["footer"]) if vector["footer"] else None,
        vector["implicit-assertion"].encode(),
        nonce=bytes.fromhex(vector["nonce"]),
    )
    assert token == vector["token"]


SIGNABLE = [
    v
    for v in VECTORS
    if not v["expect-fail"]
    and v["token"].startswith("v4.public.")
    and (v["footer"] == "" or v["footer"].startswith("{"))
]


@pytest.mark.parametrize("vector", SIGNABLE, ids=[v["name"] for v in SIGNABLE])
def test_official_public_vectors_sign_to_the_same_token(vector: dict[str, Any]) -> None:
    token = seal(
        public_signing_key(bytes.fromhex(vector["secret-key-seed"])),
        json.loads(vector["payload"]),
        json.loads(vector["footer"]) if vector["footer"] else None,
        vector["implicit-assertion"].encode(),
    )
    assert token == vector["token"]  # Ed25519 is deterministic


def test_non_canonical_last_character_is_refused_before_decryption() -> None:
    vector = next(v for v in VECTORS if v["name"] == "4-F-4")
    with pytest.raises(TokenError) as info:
        split_token(vector["token"])
    assert info.value.problem is TokenProblem.NON_CANONICAL


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\xff" * 7, bytes(range(64)), b"valuetune"])
def test_base64url_round_trips_and_refuses_variants(raw: bytes) -> None:
    text = b64url_encode(raw)
    assert b64url_decode_canonical(text) == raw
    for variant in (text + "=", text + "+", text.replace("-", "+") + "/" if text else "/"):
        if variant != text:
            with pytest.raises(TokenError):
                b64url_decode_canonical(variant)


@pytest.mark.parametrize(
    "token, problem",
    [
        ("v4.local." + "A" * (MAX_TOKEN_LENGTH), TokenProblem.OVERSIZED),
        ("v3.local.AAAA", TokenProblem.NOT_VALUETUNE),
        ("v4.secret.AAAA", TokenProblem.NOT_VALUETUNE),
        ("hello", TokenProblem.NOT_VALUETUNE),
        ("v4.local.AAAA.BBBB.CCCC", TokenProblem.NOT_VALUETUNE),
        ("v4.local.é", TokenProblem.NOT_VALUETUNE),
        ("v4.local.A A", TokenProblem.NON_CANONICAL),
        ("v4.local." + b64url_encode(b"x" * 20), TokenProblem.TAMPERED),
        ("v4.local." + b64url_encode(b"x" * 80) + ".", TokenProblem.NON_CANONICAL),
    ],
)
def test_malformed_tokens_are_refused_by_shape(token: str, problem: TokenProblem) -> None:
    with pytest.raises(TokenError) as info:
        split_token(token)
    assert info.value.problem is problem


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_keys_must_be_exactly_32_bytes(size: int) -> None:
    with pytest.raises(TokenError) as info:
        local_key(b"k" * size)
    assert info.value.problem is TokenProblem.WEAK_KEY
    with pytest.raises(TokenError):
        public_signing_key(b"k" * size)


def test_payload_must_be_json_with_exp() -> None:
    key = local_key(bytes(range(100, 132)))
    with pytest.raises(ValueError, match="exp"):
        seal(key, {"data": 1}, None, b"")
    import pyseto

    raw = pyseto.encode(key, b'{"data":1}').decode()
    with pytest.raises(TokenError, match="exp"):
        open_token(key, raw, b"")
    not_json = pyseto.encode(key, b"plain text").decode()
    with pytest.raises(TokenError, match="JSON"):
        open_token(key, not_json, b"")
