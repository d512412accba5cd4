"""JSON files other tools can parse: strict (no bare NaN), written atomically."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["strict_json", "write_json_file"]


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return strict_json(value.item())  # numpy scalars
    return value


def write_json_file(path: str | Path, data: Any) -> Path:
    """Write ``data`` as strict JSON; the old file stays whole until the new one is."""
    path = Path(path)
    text = json.dumps(strict_json(data), indent=1, allow_nan=False)
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
