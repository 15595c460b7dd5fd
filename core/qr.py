"""QR codes drawn on the server as inline SVG (no script or image from elsewhere)."""

from __future__ import annotations

import io

import segno


def qr_svg(payload: str, *, scale: int = 6) -> str:
    buffer = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(
        buffer, kind="svg", scale=scale, xmldecl=False, svgns=True, border=2
    )
    return buffer.getvalue().decode()
