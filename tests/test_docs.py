"""Every section the code cites in the repository's docs exists, and nothing cites notes outside the repository.

A citation is a docs path followed by one or more section numbers, e.g. ``docs/<name>.md §1.5, §14.7`` or a
range ``§8–§12``; a section is a Markdown heading that starts with its number, e.g. ``### §1.4 Title``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED = ["wsol", "tests", "benchmarks", "experiments", "datasets", "docs", "README.md"]
THIS_FILE = Path(__file__).resolve()  # its hand-written cases are examples, not citations
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".sh"}

_NUMBER = r"\d+(?:\.\d+)*"
HEADING = re.compile(rf"^#{{1,6}} §({_NUMBER})(?=\s|$)", re.MULTILINE)
CITATION = re.compile(rf"docs/(?P<file>[\w-]+\.md)(?P<refs>(?:\s*(?:,|–|-|and)?\s*§{_NUMBER})*)")
REF = re.compile(rf"§({_NUMBER})(?:\s*[–-]\s*§({_NUMBER}))?")
# A section sign after a bare "protocol" or "spec" cites a document without saying which file.
UNRESOLVED = re.compile(r"\b(?:protocol|spec)\s+\(?§", re.IGNORECASE)


def headings(path: Path) -> list[str]:
    """Section numbers of a docs file, in order of appearance."""
    return HEADING.findall(path.read_text(encoding="utf-8"))


def section_numbers(refs: str) -> list[str]:
    """Section numbers of a run of references such as ``§1.5, §14.7``; a range ``§a–§b`` of top-level sections
    yields every section from ``a`` to ``b``."""
    numbers: list[str] = []
    for start, stop in REF.findall(refs):
        if stop and "." not in start and "." not in stop:
            numbers += [str(n) for n in range(int(start), int(stop) + 1)]
        else:
            numbers += [start] + ([stop] if stop else [])
    return numbers


def citations(text: str) -> list[tuple[str, list[str], int]]:
    """``(docs file, section numbers, line number)`` of every citation in ``text`` (it may span lines)."""
    return [
        (m["file"], section_numbers(m["refs"]), text.count("\n", 0, m.start()) + 1) for m in CITATION.finditer(text)
    ]


def scanned_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [
            p
            for p in candidates
            if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts and p != THIS_FILE
        ]
    return files


def test_citation_parser_on_hand_written_cases() -> None:
    text = (
        "After infer_SEAM.py (docs/methods.md §1.5, §14.7): ...\n"
        "docs/protocol.md §1: a CAM; see docs/methods.md §8–§12 and docs/protocol.md alone.\n"
        "the float64 grid (docs/protocol.md §2.4)."
    )
    assert citations(text) == [
        ("methods.md", ["1.5", "14.7"], 1),
        ("protocol.md", ["1"], 2),
        ("methods.md", ["8", "9", "10", "11", "12"], 2),
        ("protocol.md", [], 2),
        ("protocol.md", ["2.4"], 3),
    ]
    assert citations("see docs/protocol.md\n    §2.5, §2.6") == [("protocol.md", ["2.5", "2.6"], 1)]
    assert HEADING.findall("## §1 Title\n### §1.4 NaN maps\n#### §12\n§2 not a heading\n## 3. other style\n") == [
        "1",
        "1.4",
        "12",
    ]
    assert UNRESOLVED.search("(protocol §1.4)") and UNRESOLVED.search("methods spec\n(§2)")
    assert not UNRESOLVED.search("(docs/protocol.md §1.4)")


@pytest.mark.parametrize("name", ["protocol.md", "methods.md"])
def test_docs_sections_are_unique(name: str) -> None:
    numbers = headings(DOCS / name)
    assert len(numbers) >= 10, f"docs/{name} has too few numbered sections: {numbers}"
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not duplicates, f"docs/{name} numbers these sections twice: {duplicates}"


def test_every_cited_section_exists() -> None:
    sections: dict[str, set[str]] = {}
    missing, cited = [], 0
    for path in scanned_files():
        for name, numbers, line_no in citations(path.read_text(encoding="utf-8", errors="replace")):
            where = f"{path.relative_to(ROOT)}:{line_no}"
            if not (DOCS / name).is_file():
                missing.append(f"{where}: docs/{name} does not exist")
                continue
            if name not in sections:
                sections[name] = set(headings(DOCS / name))
            cited += len(numbers)
            missing += [f"{where}: docs/{name} has no §{n}" for n in numbers if n not in sections[name]]
    assert not missing, "\n".join(missing)
    # The code cites both documents in about thirty places; far fewer means the scan found nothing.
    assert cited >= 25, f"only {cited} section citations found"
    assert {"protocol.md", "methods.md"} <= set(sections)


@pytest.mark.parametrize("name", ["protocol.md", "methods.md"])
def test_cross_references_inside_a_docs_file_exist(name: str) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    own = set(headings(DOCS / name))
    # References to the other file are checked above; what remains refers to this file's own sections.
    local = CITATION.sub("", text)
    missing = sorted({n for n in section_numbers(local) if n not in own}, key=lambda n: [int(p) for p in n.split(".")])
    assert not missing, f"docs/{name} refers to sections it does not have: {missing}"


def test_no_citation_of_notes_outside_the_repository() -> None:
    offending = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT)
        for match in UNRESOLVED.finditer(text):
            line_no = text.count("\n", 0, match.start()) + 1
            offending.append(f"{rel}:{line_no}: section cited without its docs file: {match.group(0)!r}")
        if rel.parts[0] == "wsol" or rel == Path("README.md"):
            for line_no, line in enumerate(text.splitlines(), 1):
                offending += [
                    f"{rel}:{line_no}: mentions {phrase!r}: {line.strip()}"
                    for phrase in ("shared/specs", "spec §", "../shared")
                    if phrase in line
                ]
    assert not offending, "\n".join(offending)
