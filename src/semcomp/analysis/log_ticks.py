"""Log-axis tick labels as plain text (``10⁻²``, ``2×10⁻¹``) rather than mathtext.

matplotlib labels a log axis with mathtext (``$\\mathdefault{10^{-2}}$``), which every draw
of every figure parses and lays out again: about a sixth of the time the report's figure
worker spends on a 1,000-original study. The same ticks get the same labels here, written
with superscript digits (DejaVu Sans, matplotlib's default font, has them). Imported only
where a figure is drawn (it imports matplotlib).
"""

from __future__ import annotations

import re

from matplotlib.ticker import LogFormatterSciNotation

#: superscript digits and minus signs
SUPERSCRIPTS = str.maketrans("-−0123456789", "⁻⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_POWER = re.compile(r"\$\\mathdefault\{(-?)(?:([^{}]+?)\\times)?(\d+)\^\{(-?\d+)\}\}\$")
_PLAIN = re.compile(r"\$\\mathdefault\{([^{}$\\]*)\}\$")


def plain_label(label: str) -> str:
    """A log-axis mathtext label as plain text: ``$\\mathdefault{2\\times10^{-1}}$`` →
    ``2×10⁻¹``, ``$\\mathdefault{0.5}$`` → ``0.5``; any other label unchanged."""
    power = _POWER.fullmatch(label)
    if power is not None:
        sign, factor, base, exponent = power.groups()
        return f"{sign}{factor + '×' if factor else ''}{base}{exponent.translate(SUPERSCRIPTS)}"
    plain = _PLAIN.fullmatch(label)
    return plain.group(1) if plain is not None else label


class PlainLogFormatter(LogFormatterSciNotation):
    """matplotlib's log-axis formatter (same ticks labelled) with :func:`plain_label` text."""

    def __call__(self, x, pos=None):
        return plain_label(super().__call__(x, pos))


def log_scale(axes, which: str = "x") -> None:
    """Put the ``which`` (``"x"`` or ``"y"``) axis of ``axes`` on a log scale, labelled by
    :class:`PlainLogFormatter` (major ticks at powers of ten; minor ones where matplotlib
    labels them, on axes spanning little more than a decade)."""
    getattr(axes, f"set_{which}scale")("log")
    axis = getattr(axes, f"{which}axis")
    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=True))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
