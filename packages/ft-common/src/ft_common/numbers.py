"""Numeric final answers, `#### N`: read, normalised and compared the same way by every task whose
answer is a number (GSM8K, MathQA's value form), so that no task module has to name another."""

from __future__ import annotations

import math
import re

# `#### 1,234.50` -> "1234.50"; the strict form fine-tuned models are trained to write.
_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def normalize_number(text: str) -> str | None:
    """'1,234' -> '1234', '3.50' -> '3.5', '-0' -> '0'; None when it is not a number."""
    cleaned = text.replace(",", "").replace("$", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def final_answer(solution: str) -> str | None:
    """The normalised number after the last `####`, or None."""
    matches = _FINAL.findall(solution)
    return normalize_number(matches[-1]) if matches else None


def same_number(a: str | None, b: str | None) -> bool:
    """Whether two normalised answers are the same number (float noise allowed); never for None."""
    if a is None or b is None:
        return False
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    except ValueError:
        return False
