"""The README stays a newcomer's page: short, the two commands, and links into docs/ that lead somewhere."""

import re

from conftest import ROOT


def test_readme_is_short_has_the_two_commands_and_its_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) < 10_000
    assert "make run" in text and "make test" in text
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert any(link.startswith("docs/") for link in links)
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, missing
