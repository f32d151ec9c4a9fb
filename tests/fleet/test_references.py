"""The project carries its own references: code, scripts and documents cite docs/ of this
repository, never notes kept beside it, and every citation of docs/ leads to a file and a section
that exist."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Research notes and vendor documents kept outside the repository, which a newcomer with the
# repository alone cannot open: by their folders (facts/, shared/, vendor-docs/), by "facts §..."
# and by the vendor documents' file names.
OUTSIDE = re.compile(
    r"(?<![\w.-])(?:facts|shared|vendor-docs)/"
    r"|\bfacts §"
    r"|\b(?:dronemapper-cloud-api|immersal-rest-api-python-examples|immersity-ai-api-getting-started"
    r"|mapillary-api-v4-toolset-readme|mapillary-legacy-upload)\.(?:txt|md)\b")
# Where the rule does not apply: the notes themselves, and tests that exercise the rule.
OUTSIDE_ALLOWED_IN = ("docs/", "tests/")

# docs/<file>.md, optionally with #anchor, or followed by , "Heading" (the heading's own words).
DOC_CITATION = re.compile(r'(?<![\w/.-])docs/((?:[\w-]+/)*[\w.-]+?\.md)(?:#([\w-]+)|, "([^"\n]+)")?')
# Relative Markdown links between the notes: [text](vendors/immersal.md#errors).
DOC_LINK = re.compile(r"\]\((?!https?://)([^)#\s]+\.md)(?:#([\w-]+))?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def project_files() -> list[str]:
    """Tracked files, and new ones not ignored, relative to the root."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return sorted({line for line in out.splitlines() if line and (ROOT / line).is_file()})


def text_of(path: str) -> str:
    return (ROOT / path).read_bytes().decode("utf-8", errors="ignore")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(doc: Path) -> list[str]:
    found, fenced = [], False
    for line in doc.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append(match.group(2))
    return found


def anchors(doc: Path) -> set[str]:
    """Every anchor of a document, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(doc):
        base = anchor(heading)
        result.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return result


def broken(doc: Path, section_anchor: str | None, section_title: str | None) -> str | None:
    """Why a citation of `doc` (and of one of its sections) leads nowhere, or None."""
    if not doc.is_file():
        return "no such file"
    if section_anchor and section_anchor not in anchors(doc):
        return f"no heading with anchor #{section_anchor}"
    if section_title and section_title not in headings(doc):
        return f'no heading "{section_title}"'
    return None


def test_the_anchor_rule_is_githubs():
    assert anchor("Why 403, not 401") == "why-403-not-401"
    assert anchor("The toolset's four steps") == "the-toolsets-four-steps"
    assert anchor("`task_acks_late` and worker loss") == "task_acks_late-and-worker-loss"


def test_nothing_outside_docs_and_tests_cites_notes_kept_outside_the_project():
    offenders = [f"{path}:{number}: {line.strip()}"
                 for path in project_files() if not path.startswith(OUTSIDE_ALLOWED_IN)
                 for number, line in enumerate(text_of(path).splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, ("cite docs/ of the project instead (write the fact down there, with its "
                           "source):\n" + "\n".join(offenders))


def test_every_citation_of_docs_leads_to_a_file_and_a_section():
    problems = []
    for path in project_files():
        for number, line in enumerate(text_of(path).splitlines(), 1):
            for match in DOC_CITATION.finditer(line):
                if why := broken(ROOT / "docs" / match.group(1), match.group(2), match.group(3)):
                    problems.append(f"{path}:{number}: {match.group(0)}: {why}")
            if path.startswith("docs/") and path.endswith(".md"):
                for match in DOC_LINK.finditer(line):
                    target = (ROOT / path).parent / match.group(1)
                    if why := broken(target, match.group(2), None):
                        problems.append(f"{path}:{number}: {match.group(0)}: {why}")
    assert not problems, "\n".join(problems)
