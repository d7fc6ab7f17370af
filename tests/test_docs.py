"""The docs hold together: links between pages resolve, and code comments cite sections that exist.

Checked: every relative link in README.md and docs/*.md points to an existing file (and, into a Markdown page, to
an existing heading); every code comment that cites a page's section (`docs/architecture.md, "The loop"`) names a
page and a heading that exist; and no code comment cites the design brief that was never committed.
"""

from __future__ import annotations

import re
from pathlib import Path

from autonomy_controller.controller.config import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
CODE_FOLDERS = ("controller", "workflows", "actions", "bench", "tests")
UNCOMMITTED_DESIGN = "DESIGN" + ".md"
"""Spelled in two parts so that this file does not cite it itself."""

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
"""http:, https:, mailto: and the like: not checked (nothing at test time uses the network)."""
CITATION = re.compile(r"([A-Za-z0-9_./-]+\.md),\s+(?:#\s*)?\"([^\"]+)\"")
"""A code comment's citation of a page's section: `docs/architecture.md, "The loop"` (may wrap after the comma)."""


def prose(text: str) -> str:
    """The page without code: fenced blocks and inline code spans hold examples, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def headings(page: Path) -> list[str]:
    return [match.group(1) for match in HEADING.finditer(FENCE.sub("", page.read_text()))]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading).lower())
    return text.replace(" ", "-")


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page that points to no file, or to a heading its Markdown page lacks."""
    problems = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            problems.append(f"{page.name}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in {slug(h) for h in headings(resolved)}:
            problems.append(f"{page.name}: {target}: no heading with that anchor in {resolved.name}")
    return problems


def code_files() -> list[Path]:
    return sorted(path for folder in CODE_FOLDERS for path in (REPO_ROOT / folder).rglob("*.py"))


def test_every_relative_link_resolves() -> None:
    checked = [target for page in PAGES for target in links(page) if not EXTERNAL.match(target)]
    assert len(checked) >= 10, f"only {len(checked)} relative links found: is the link pattern still right?"
    assert [problem for page in PAGES for problem in broken_links(page)] == []


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## The loop\n\ntext\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md) [fine anchor](other.md#the-loop) [own heading](#page) [external](https://example.org/x)\n"
        "[missing file](nowhere.md) [missing anchor](other.md#no-such-part) ![missing image](img/none.png)\n\n"
        "`[inline code](ignored.md)`\n\n```\n[fenced](ignored-too.md)\n```\n"
    )
    assert broken_links(page) == [
        "page.md: nowhere.md: no such file",
        "page.md: other.md#no-such-part: no heading with that anchor in other.md",
        "page.md: img/none.png: no such file",
    ]


def test_no_code_comment_cites_the_uncommitted_design() -> None:
    citing = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in code_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if UNCOMMITTED_DESIGN in line
    ]
    assert citing == [], f"cite docs/architecture.md (or another docs page) instead of {UNCOMMITTED_DESIGN}"


def test_cited_sections_exist() -> None:
    citations = [
        (path, page, re.sub(r"\s*\n\s*#?\s*", " ", section))  # a citation may wrap, in a docstring or a comment
        for path in code_files()
        for page, section in CITATION.findall(path.read_text())
    ]
    assert any(page == "docs/architecture.md" for _, page, _ in citations), "no citation found: pattern broken?"
    missing = [
        f"{path.relative_to(REPO_ROOT)}: {page}, {section!r}"
        for path, page, section in citations
        if not (REPO_ROOT / page).is_file()
        or not any(heading.startswith(section) for heading in headings(REPO_ROOT / page))
    ]
    assert missing == []
