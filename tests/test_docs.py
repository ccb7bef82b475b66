"""The README is a front door and the docs hold together (issue 22): the README stays short, names no
commit, and every relative link in it and in docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 250

# [text](target) and ![alt](target); the target ends at whitespace or ")" (an optional "title" is dropped)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# a short or full commit hash: 7 or 40 hex digits, at least one a digit (not a word like "defaced")
_HASH = re.compile(r"(?<![\w-])(?=[a-f]*[0-9])[0-9a-f]{7}(?:[0-9a-f]{33})?(?![\w-])")


def _relative_links(text: str) -> list[str]:
    """Link targets that are paths in the repository: not URLs, mail addresses or bare anchors."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are not links
    targets = [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    return [t.split("#")[0] for t in targets]


def test_every_relative_link_in_readme_and_docs_resolves():
    broken = {}
    for page in PAGES:
        for target in _relative_links(page.read_text()):
            if not (page.parent / target).resolve().exists():
                broken.setdefault(str(page.relative_to(ROOT)), []).append(target)
    assert broken == {}


def test_the_link_check_sees_links_and_skips_the_rest():
    text = "[a](docs/x.md#part) ![f](results/y.png) [u](https://hydra.cc) [s](#here)\n```\n[c](nowhere.md)\n```\n"
    assert _relative_links(text) == ["docs/x.md", "results/y.png"]


def test_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def test_readme_names_no_commit():
    assert _HASH.findall(README.read_text()) == []


def test_the_hash_check_finds_hashes_and_not_run_keys_or_words():
    found = _HASH.findall("at ff4a0b2, then f87f85d; key a0ae03a57414; defaced; 1234567")
    assert found == ["ff4a0b2", "f87f85d", "1234567"]
