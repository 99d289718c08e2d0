"""shared.migrations.sql_functions: today's definition of a ledger function, and its earlier versions from diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.migrations import ROOT, apply_diff, sql_functions

FUNCTIONS = ROOT / "migrations" / "vouchers" / "functions"


def test_every_version_of_every_function_loads() -> None:
    for path in sorted(FUNCTIONS.glob("*.sql")):
        first = sql_functions(FUNCTIONS, path.stem, 1)
        assert first
        assert all("CREATE OR REPLACE FUNCTION vouchers." in statement for statement in first)
    # the diffs in history/ are the only copies of earlier versions: each is used by a version
    for diff in sorted((FUNCTIONS / "history").glob("*.diff")):
        name, version = diff.stem.rsplit(".", 1)
        assert sql_functions(FUNCTIONS, name, int(version)) != sql_functions(FUNCTIONS, name, int(version) + 1)


def test_a_version_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="version 9 unknown"):
        sql_functions(FUNCTIONS, "redeem", 9)


def test_a_diff_applies_only_to_the_text_it_was_made_from(tmp_path: Path) -> None:
    text = "a\nb\nc\nd\n"
    diff = "--- x (version 2)\n+++ x (version 1)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    assert apply_diff(text, diff) == "a\nB\nc\nd\n"
    assert apply_diff(text, "--- x\n+++ x\n@@ -2,0 +3,1 @@\n+new\n") == "a\nb\nnew\nc\nd\n"
    with pytest.raises(ValueError, match="does not apply at line 2"):
        apply_diff("a\nX\nc\n", diff)
