"""The project carries its own explanations, and they cannot fall behind the code.

- docs/policy.md names every clause `GET /v1/policy` lists (services/eligibility/clauses.py)
  and every parameter of services/eligibility/policy/parameters.yaml;
- no file of the repository points outside it (to documents a reader of the repository does
  not have): the explanations are the project's own docs and tests.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from services.eligibility.clauses import CLAUSES

ROOT = Path(__file__).resolve().parent.parent
POLICY_DOC = ROOT / "docs" / "policy.md"
PARAMETERS = ROOT / "services" / "eligibility" / "policy" / "parameters.yaml"


def test_the_policy_page_has_a_section_for_every_clause() -> None:
    text = POLICY_DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (\S+) ", text, flags=re.MULTILINE))
    missing = [clause for clause in CLAUSES if clause not in headings]
    assert not missing, f"docs/policy.md has no '### <id> …' section for {missing}"
    unknown = sorted(headings - set(CLAUSES))
    assert not unknown, f"docs/policy.md has sections for clauses clauses.py does not list: {unknown}"


def test_the_policy_page_names_every_parameter() -> None:
    text = POLICY_DOC.read_text(encoding="utf-8")
    document = yaml.safe_load(PARAMETERS.read_text(encoding="utf-8"))
    missing = [pid for pid in document["parameters"] if f"`{pid}`" not in text]
    assert not missing, f"docs/policy.md does not name these parameters of parameters.yaml: {missing}"


# Written in pieces, so this file does not name them itself.
OUTSIDE_POINTERS = ("../" + "shared/", "POLICY" + ".md", "EXAMPLES" + ".md", "DESIGN" + "-NOTES", ".zh" + ".txt")
_NOT_THE_PROJECT = {".git", ".venv", ".data", "__pycache__", "node_modules", "test-artifacts", "backups"}


def _repository_files() -> list[Path]:
    """Tracked files, and new ones not ignored (the tree walked when git is not there)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if path.is_file() and not _NOT_THE_PROJECT & set(path.relative_to(ROOT).parts)
        ]
    return [
        ROOT / name
        for name in names
        if not _NOT_THE_PROJECT & set(Path(name).parts) and not name.endswith(".egg-info")
        if (ROOT / name).is_file()
    ]


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in _repository_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for pointer in OUTSIDE_POINTERS:
                if pointer in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {pointer}")
    advice = "pointers outside the repository (use docs/policy.md, docs/benchmarks.md, the tests):"
    assert not found, "\n".join([advice, *found])
