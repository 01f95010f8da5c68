"""Where the files shipped with the project live: the default classifier, the ONNX encoder, and
the static first stage with its encoder.

In a source checkout they are the repository's `data/` folder. `pip install` copies the same
files to `<prefix>/share/difficulty-router/` (pyproject's data-files), since `data/` is no package.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent / "data"
_INSTALLED = Path(sys.prefix) / "share" / "difficulty-router"

SHIPPED_ENCODER = "encoders/minilm-l6-layer1-ffn64-int8"
SHIPPED_STATIC_ENCODER = "encoders/minilm-l6-static"
SHIPPED_FIRST_STAGE = "classifier-static"


def shipped_path(relative: str) -> Path:
    """`relative` under the checkout's data/ if there, else under the installed copy (which may not exist)."""
    checkout = _CHECKOUT / relative
    return checkout if checkout.exists() else _INSTALLED / relative
