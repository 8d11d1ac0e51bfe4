"""The profile inside a token: quantized to fixed point and packed into a few bytes.

Layout of the packed profile (base64url in claim "p"), for a schema with V value axes,
S style dimensions and B boundaries:
  V + S bytes   estimate per dimension, q = round((x + 4) / STEP), x = q * STEP - 4
  ceil(2(V+S)/8) uncertainty bucket per dimension, 2 bits each (see SE_BUCKETS)
  ceil(B/8)     boundary bitmask in schema order
With STEP = 8/255 the estimate error is at most STEP/2 ≈ 0.0157 on the latent scale, plus
0.0005 from the profile's own 3-decimal rounding: QUANTIZATION_BOUND ≈ 0.0162.
"""

from __future__ import annotations

from typing import Any

from valuetune.errors import SchemaError
from valuetune.token.paseto import TokenError, TokenProblem, b64url_decode_canonical, b64url_encode
from valuetune.values.axes import load_axes
from valuetune.values.profile import ESTIMATE_LIMIT, PRECISION, ValueProfile

STEP = 2 * ESTIMATE_LIMIT / 255
QUANTIZATION_BOUND = STEP / 2 + 0.5 * 10**-PRECISION
# (upper edge, representative) per bucket: an SE up to the edge is carried as the value.
SE_BUCKETS = ((0.25, 0.15), (0.5, 0.4), (0.8, 0.65), (float("inf"), 1.0))


def _q_estimate(x: float) -> int:
    return max(0, min(255, round((x + ESTIMATE_LIMIT) / STEP)))


def _dq_estimate(q: int) -> float:
    return q * STEP - ESTIMATE_LIMIT


def _q_se(se: float) -> int:
    return next(i for i, (edge, _) in enumerate(SE_BUCKETS) if se <= edge)


def quantize(profile: ValueProfile) -> ValueProfile:
    """The profile exactly as a token carries it."""
    return unpack(profile.schema, pack(profile))


def pack(profile: ValueProfile) -> bytes:
    axes = profile.axes
    estimates = profile.values + profile.style
    ses = profile.values_se + profile.style_se
    out = bytearray(_q_estimate(x) for x in estimates)
    bits = 0
    for i, se in enumerate(ses):
        bits |= _q_se(se) << (2 * i)
    out += bits.to_bytes((2 * len(ses) + 7) // 8, "little")
    mask = sum(1 << i for i, b in enumerate(axes.boundary_ids) if b in profile.boundaries)
    out += mask.to_bytes((len(axes.boundary_ids) + 7) // 8, "little")
    return bytes(out)


def unpack(schema: str, packed: bytes) -> ValueProfile:
    axes = load_axes(schema)
    n_v, n_s, n_b = len(axes.value_axes), len(axes.style), len(axes.boundary_ids)
    n = n_v + n_s
    se_len, b_len = (2 * n + 7) // 8, (n_b + 7) // 8
    if len(packed) != n + se_len + b_len:
        raise TokenError(TokenProblem.NOT_VALUETUNE, "packed profile has the wrong length")
    estimates = [_dq_estimate(q) for q in packed[:n]]
    bits = int.from_bytes(packed[n : n + se_len], "little")
    ses = [SE_BUCKETS[(bits >> (2 * i)) & 3][1] for i in range(n)]
    mask = int.from_bytes(packed[n + se_len :], "little")
    if mask >> n_b:
        raise TokenError(TokenProblem.NOT_VALUETUNE, "unknown boundary bits")
    boundaries = frozenset(b for i, b in enumerate(axes.boundary_ids) if mask >> i & 1)
    return ValueProfile(
        schema,
        tuple(estimates[:n_v]),
        tuple(ses[:n_v]),
        tuple(estimates[n_v:]),
        tuple(ses[n_v:]),
        boundaries,
    )


def profile_claims(profile: ValueProfile) -> dict[str, Any]:
    """The claims that carry a profile: schema version and the packed profile."""
    return {"v": profile.schema, "p": b64url_encode(pack(profile))}


def profile_from_claims(claims: dict[str, Any]) -> ValueProfile:
    schema, packed = claims.get("v"), claims.get("p")
    if not isinstance(schema, str) or not isinstance(packed, str):
        raise TokenError(TokenProblem.NOT_VALUETUNE, "no profile in the token")
    try:
        return unpack(schema, b64url_decode_canonical(packed))
    except SchemaError as exc:
        raise TokenError(TokenProblem.NOT_VALUETUNE, str(exc)) from None
