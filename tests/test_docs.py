"""The repository carries its own documentation: nothing points outside it, links resolve.

- No product file (code, docstrings, comments, tests, config, READMEs) sends the reader to
  a design page or a reference page kept outside the repository: explanations live in
  `docs/`, and sections there are named, never numbered (a `§N` points elsewhere).
- Every relative link of the Markdown pages resolves to a file of the repository (and,
  with `#anchor`, to a heading of that page).
- Every repository path quoted in README.md and docs/*.md exists, and so does every module
  the map of docs/design.md names: the maps match the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What is the product: the package and everything shipped or read beside it.
PRODUCT = ("badged", "config", "tests", "ansible", "systemd", "monitoring", "bench",
           "scripts", "demo", "docs", ".ci", "README.md", "CHANGELOG.md",
           ".pre-commit-hooks.yaml", "pyproject.toml")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

# Pointers to documents outside the repository: the design brief, its reference pages,
# the folder they live in, and numbered sections (the repository's docs number none).
OUTSIDE = re.compile(
    r"\.\./shared|/work/shared|shared/(?:DESIGN|reference|tools)"
    r"|(?:^|[^/A-Za-z_])DESIGN\.md"
    r"|(?:^|[^/A-Za-z_])reference/(?:crous|desfire|pcsc|access)"
    r"|§\s?\d"
)

MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]+`")
TOP_LEVEL = ("badged", "config", "tests", "ansible", "systemd", "monitoring", "bench",
             "scripts", "demo", "docs")
REPO_PATH = re.compile(r"`((?:" + "|".join(TOP_LEVEL) + r")/[^`\s]*)`")
PLACEHOLDER = re.compile(r"[<>*…{}]|YYYY|NNNN")


def product_files() -> Iterator[Path]:
    for name in PRODUCT:
        path = REPO / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and not SKIP_DIRS & set(found.relative_to(REPO).parts):
                    yield found


def markdown_pages() -> list[Path]:
    return [p for p in product_files() if p.suffix == ".md"]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary fixtures, or files in another encoding (test data)


def outside_pointers() -> list[str]:
    found = []
    for path in product_files():
        if path == Path(__file__).resolve():
            continue  # this file spells the forbidden forms out, to test the pattern
        text = text_of(path) if path.stat().st_size < 2_000_000 else None
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return found


def test_no_product_file_points_outside_the_repository() -> None:
    found = outside_pointers()
    assert not found, (
        "these lines point at documents outside the repository; explain it in docs/ "
        "and point there (e.g. docs/contracts.md, CLI):\n" + "\n".join(found))


# The samples are spelt in pieces, so that no product file (this one included) holds a
# pointer outside the repository for a plain grep to find.
@pytest.mark.parametrize("line", [
    "Exit codes (DESIGN" ".md §4): 0 ok",
    "# The CROUS card CSV (reference" "/crous.md §1)",
    "see ../" "shared/" "refer" "ence/pcsc-harness.md",
    '"""Metrics: the §6 contract."""',
    "the API CROUS `reason`, reference §4",
])
def test_outside_pointer_pattern_catches_the_known_forms(line: str) -> None:
    assert OUTSIDE.search(line)


@pytest.mark.parametrize("line", [
    "Exit codes (docs/contracts.md, CLI): 0 ok",
    "badged/config/model/card_profile.py holds the card profiles",
    "see docs/desfire.md#known-answer-vectors",
])
def test_outside_pointer_pattern_lets_repository_references_through(line: str) -> None:
    assert not OUTSIDE.search(line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = INLINE_CODE.sub(lambda m: m[0][1:-1], heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in prose_lines(page):
        m = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if m:
            found.add(slug(m[1]))
    return found


def prose_lines(page: Path) -> Iterator[str]:
    """The page's lines outside fenced code blocks."""
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def relative_links(page: Path) -> Iterator[str]:
    for line in prose_lines(page):
        for m in MARKDOWN_LINK.finditer(INLINE_CODE.sub("", line)):
            target = m[1]
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            yield target


def test_relative_links_resolve() -> None:
    broken = []
    pages = markdown_pages()
    assert REPO / "README.md" in pages and (REPO / "docs" / "README.md") in pages
    for page in pages:
        for target in relative_links(page):
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(REPO)}: ({target})"
            if not dest.exists() or REPO not in (dest, *dest.parents):
                broken.append(f"{where}: no such file in the repository")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_repository_paths_in_readme_and_docs_exist() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for m in REPO_PATH.finditer(line):
                path = m[1].rstrip(".,:;")
                if PLACEHOLDER.search(path):
                    continue
                if not (REPO / path).exists():
                    missing.append(f"{page.relative_to(REPO)}:{number}: `{path}`")
    assert not missing, "paths that are not in the tree:\n" + "\n".join(missing)


def design_map_rows() -> Iterator[tuple[int, Path, list[str]]]:
    """(line, folder, names) for each row of the package map in docs/design.md."""
    in_map = False
    for number, line in enumerate((REPO / "docs" / "design.md").read_text().splitlines(), 1):
        if line.startswith("## "):
            in_map = line.strip() == "## The map"
            continue
        if not in_map or not re.match(r"\| \d\. ", line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        where, what = cells[1], cells[2]
        folder = REPO / "badged" if where == "package root" else REPO / where.strip("`")
        names = re.findall(r"`([a-z_]+(?:\.py|/))`", what)
        yield number, folder, names


def test_design_map_matches_the_package() -> None:
    rows = list(design_map_rows())
    assert len(rows) == 7, "docs/design.md: the map should have one row per layer"
    missing = []
    for number, folder, names in rows:
        if not folder.is_dir():
            missing.append(f"docs/design.md:{number}: no folder {folder.relative_to(REPO)}")
            continue
        for name in names:
            here = folder / name
            nested = [p for p in folder.rglob(name.rstrip("/")) if "__pycache__" not in p.parts]
            if not here.exists() and not nested:
                missing.append(f"docs/design.md:{number}: no {name} under "
                               f"{folder.relative_to(REPO)}")
    assert not missing, "the map names modules that are not in the tree:\n" + "\n".join(missing)
