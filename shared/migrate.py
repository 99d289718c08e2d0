"""Migrate every service's schema to head: `python -m shared.migrate [DATABASE_URL]`."""

from __future__ import annotations

import os
import sys

from shared.migrations import upgrade_all


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("DATABASE_URL")
    if not url:
        print("usage: python -m shared.migrate DATABASE_URL (or set DATABASE_URL)", file=sys.stderr)
        return 2
    upgrade_all(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
