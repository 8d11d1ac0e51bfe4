"""Pictures for pages: a profile chart with its uncertainty, and QR codes, as SVG.

The chart is geometry only (positions on a fixed scale); the template draws it, so every
label passes through the template's escaping.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from valuetune.values.profile import ValueProfile

SCALE = 2.5
"""The chart shows -2.5..+2.5 standard deviations; estimates beyond sit at the edge."""
Z95 = 1.96


@dataclass(frozen=True)
class ChartRow:
    name: str
    low: str
    high: str
    mean: float
    se: float
    x: float
    """Where the estimate sits, 0..100 (percent of the track)."""
    lo: float
    hi: float
    """The 95% interval's ends, 0..100."""

    @property
    def leaning(self) -> str:
        """A plain-language reading of the estimate, for screen readers and the table."""
        if self.lo <= 50 <= self.hi:
            return "no clear lean"
        pole = self.high if self.mean > 0 else self.low
        strength = "strongly" if abs(self.mean) >= 1.0 else "somewhat"
        return f"{strength} toward {pole}"


def _position(value: float) -> float:
    clipped = max(-SCALE, min(SCALE, value))
    return round((clipped + SCALE) / (2 * SCALE) * 100, 2)


def profile_rows(profile: ValueProfile, *, style: bool = False) -> list[ChartRow]:
    """One row per value axis (or style dimension): estimate and 95% interval."""
    axes = profile.axes
    if style:
        dims = [(d.name, d.low, d.high) for d in axes.style]
        means, ses = profile.style, profile.style_se
    else:
        dims = [(a.name, a.low, a.high) for a in axes.value_axes]
        means, ses = profile.values, profile.values_se
    return [
        ChartRow(
            name,
            low,
            high,
            mean,
            se,
            _position(mean),
            _position(mean - Z95 * se),
            _position(mean + Z95 * se),
        )
        for (name, low, high), mean, se in zip(dims, means, ses, strict=True)
    ]


def qr_svg(text: str, title: str) -> Markup:
    """`text` as a QR code (error correction M), scalable SVG markup."""
    import segno

    code = segno.make(text, error="m")
    svg = code.svg_inline(
        scale=1, dark="#111111", light="#ffffff", omitsize=True, svgclass="qr", title=title
    )
    return Markup(svg)
