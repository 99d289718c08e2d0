"""The project carries its own explanations, and they cannot fall behind the code.

- docs/policy.md names every clause `GET /v1/policy` lists (services/eligibility/clauses.py),
  each measure's rule module, and every parameter of services/eligibility/policy/parameters.yaml;
  it and docs/architecture.md name only files that exist;
- no file of the repository points outside it (to documents a reader of the repository does
  not have): the explanations are the project's own docs and tests;
- the README's Layout names only paths that exist, and names every top-level directory, every
  directory of a service, every package of `services/`, `shared/` and `devtools/`, and every
  migration tree.

How the Layout block is read: the first fenced block after `## Layout`. A line indented by fewer
than LAYOUT_DESCRIPTION_COLUMN spaces is an entry: its first word is a path, relative to the
entry two spaces less indented above it (a top-level path when not indented); a directory ends
with `/`. The rest of the line, and every line indented further, describes it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from services.eligibility.clauses import CLAUSES
from services.eligibility.rules import RULES

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


def _policy_sections() -> dict[str, str]:
    parts = re.split(r"^### (\S+) .*$", POLICY_DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_each_clause_names_the_rule_module_the_policy_endpoint_serves() -> None:
    sections = _policy_sections()
    wrong = [
        clause
        for clause, module in RULES.items()
        if module.__name__.replace(".", "/") + ".py" not in sections.get(clause, "")
    ]
    assert not wrong, f"docs/policy.md: these clauses' sections do not name their rule module: {wrong}"


#: paths the explanations name, and the part of a sentence that may follow one
_NAMED_PATH = re.compile(r"(?<![\w/.<-])((?:services|shared|devtools|migrations|tests|docs|bench|deploy)/[\w./-]*)")


def test_the_explanations_name_only_paths_that_exist() -> None:
    missing = [
        f"{doc}: {path}"
        for doc in ("docs/policy.md", "docs/architecture.md")
        for path in {m.rstrip(".") for m in _NAMED_PATH.findall((ROOT / doc).read_text(encoding="utf-8"))}
        if not (ROOT / path).exists()
    ]
    assert not missing, f"files moved or renamed: update these pages: {missing}"


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
        if not _NOT_THE_PROJECT & set(Path(name).parts)
        and not any(part.endswith(".egg-info") for part in Path(name).parts)
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


LAYOUT_DESCRIPTION_COLUMN = 19
#: the packages whose every directory holding Python is named in the Layout
PACKAGE_ROOTS = ("services", "shared", "devtools")


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split("\n## Layout\n", 1)[1]
    block = after.split("```", 2)[1]
    return block.splitlines()[1:]  # the fence's own line


def layout_paths() -> list[str]:
    """Every path the Layout names, relative to the repository (directories end with `/`)."""
    parents: list[str] = []
    paths = []
    for number, line in enumerate(_layout_block(), start=1):
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= LAYOUT_DESCRIPTION_COLUMN:
            continue
        assert indent % 2 == 0, f"README Layout line {number}: indented by an odd {indent} spaces"
        assert indent // 2 <= len(parents), f"README Layout line {number}: indented deeper than its parent's child"
        del parents[indent // 2 :]
        assert not parents or parents[-1].endswith("/"), f"README Layout line {number}: under a file"
        path = (parents[-1] if parents else "") + line.split()[0]
        paths.append(path)
        parents.append(path)
    return paths


def _directories_to_name() -> set[str]:
    files = [path.relative_to(ROOT) for path in _repository_files()]
    wanted = {f"{path.parts[0]}/" for path in files if len(path.parts) > 1 and not path.parts[0].startswith(".")}
    for path in files:
        directory = path.parent.parts
        if directory[:1] == ("services",) and len(directory) >= 3:
            wanted.add("/".join(directory[:3]) + "/")  # every directory of a service
        if directory[:1] == ("migrations",) and len(directory) >= 2:
            wanted.add("/".join(directory[:2]) + "/")  # every migration tree
        if directory[:1] in {(root,) for root in PACKAGE_ROOTS} and path.suffix == ".py":
            wanted.update("/".join(directory[:n]) + "/" for n in range(1, len(directory) + 1))
    return wanted


def test_the_readme_layout_names_only_paths_that_exist() -> None:
    missing = [
        path
        for path in layout_paths()
        if not ((ROOT / path).is_dir() if path.endswith("/") else (ROOT / path).is_file())
    ]
    assert not missing, f"README.md's Layout names paths that do not exist: {missing}"


def test_the_readme_layout_names_every_package_and_service_directory() -> None:
    named = set(layout_paths())
    unnamed = sorted(_directories_to_name() - named)
    assert not unnamed, f"README.md's Layout does not name these directories (add a line for each): {unnamed}"
