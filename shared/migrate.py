"""Migrate every service's schema to head: `python -m shared.migrate [DATABASE_URL]`.

The URL is the schema owner's (`MIGRATION_DATABASE_URL`, else `DATABASE_URL`). After the
migrations the services' logins exist (shared/dbroles.py), with the passwords of
`<SERVICE>_DB_PASSWORD` when those are set.
"""

from __future__ import annotations

import os
import sys

from shared.migrations import upgrade_all


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("MIGRATION_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        print(
            "usage: python -m shared.migrate DATABASE_URL (or set MIGRATION_DATABASE_URL or DATABASE_URL)",
            file=sys.stderr,
        )
        return 2
    upgrade_all(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
