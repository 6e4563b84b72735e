"""Large values for the object-size tests (issue 16): a JavaScript expression whose result is incompressible.

xorshift32 from a fixed seed, four base-90 characters per number: deterministic, cheap for QuickJS (about a
second of CPU for 2.5 MB, inside INLINE's time limit), and xz cannot shrink it much (the status codec's
compression does not save a workflow that carries it).
"""

from __future__ import annotations

from typing import Any

INCOMPRESSIBLE_TEXT = (
    "(function(){ var x = 2463534242, chunks = []; for (var c = 0; c < SIZE / 1000; c++) { var part = []; "
    "for (var i = 0; i < 250; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; var y = x; "
    "for (var k = 0; k < 4; k++) { part.push(String.fromCharCode(35 + y % 90)); y = Math.floor(y / 90); } } "
    "chunks.push(part.join('')); } return chunks.join(''); })()"
)


def incompressible_inline(ref: str, size: int) -> dict[str, Any]:
    """An INLINE task whose ``result`` is ``size`` characters (a multiple of 1000) of incompressible text."""
    return {"name": ref, "taskReferenceName": ref, "type": "INLINE",
            "inputParameters": {"evaluatorType": "javascript", "expression": INCOMPRESSIBLE_TEXT.replace("SIZE",
                                                                                                       str(size))}}
