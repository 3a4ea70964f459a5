"""Says hello: a stand-in domain command for the command-table tests."""
from __future__ import annotations

CALLS: list[list[str] | None] = []


def main(argv: list[str] | None = None) -> int:
    CALLS.append(argv)
    print("hello", *(argv or []))
    return 7
