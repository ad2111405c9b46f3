"""argparse types that turn a bad value into a usage error naming the flag, not a traceback."""
from __future__ import annotations

import argparse
import math


def at_least(low: float, kind: type = int):
    """A type for ``add_argument``: a number of ``kind`` (int or float) that is finite and >= ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value
    return parse


def port(text: str) -> int:
    value = at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value
