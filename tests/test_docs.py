"""The settings the docs describe are the settings the code reads (plain text; no Sphinx needed)."""

from __future__ import annotations

import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from flask_clustershazbot.config import _PARSERS, Settings, config_key

ROOT = Path(__file__).resolve().parent.parent
KEYS = {config_key(name) for name in _PARSERS}


def config_entries() -> dict[str, str]:
    """``.. data::`` name -> its indented body, from docs/config.rst."""
    text = (ROOT / "docs" / "config.rst").read_text(encoding="utf-8")
    entries: dict[str, str] = {}
    for match in re.finditer(r"^\.\. data:: (\S+)\n((?:[ \t]+.*\n|\n)*)", text, re.M):
        assert match[1] not in entries, f"{match[1]} is documented twice in docs/config.rst"
        entries[match[1]] = match[2]
    return entries


def readme_table_keys() -> set[str]:
    """The keys in the first column of the README's configuration table, each once."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `(SHAZBOT_[A-Z0-9_]+)` \|", section, re.M)
    assert len(keys) == len(set(keys)), "the README's table lists a key twice"
    return set(keys)


def test_every_setting_has_a_data_entry_and_no_entry_is_unknown() -> None:
    documented = set(config_entries())
    assert KEYS - documented == set(), "settings missing from docs/config.rst"
    assert documented - KEYS == set(), "docs/config.rst documents keys the code does not read"


def test_every_setting_has_a_readme_row_and_no_row_is_unknown() -> None:
    rows = readme_table_keys()
    assert KEYS - rows == set(), "settings missing from the README's configuration table"
    assert rows - KEYS == set(), "the README's table lists keys the code does not read"


def test_documented_defaults_match_the_code() -> None:
    """``Default: ``value``'' must equal the Settings default; ``Required'' means there is none."""
    defaults: dict[str, Any] = {
        config_key(f.name): f.default for f in fields(Settings) if f.default is not MISSING
    }
    for key, body in config_entries().items():
        default = re.search(r"^\s*Default: (.*)$", body, re.M)
        if re.search(r"^\s*Required\b", body, re.M):
            assert default is None and key not in defaults, f"{key}: documented as required"
            continue
        assert default is not None, f"{key}: neither a default nor 'Required' in docs/config.rst"
        assert key in defaults, f"{key}: documented with a default, but the code requires it"
        literal = re.search(r"``(.+?)``", default[1])
        if literal:
            assert ast.literal_eval(literal[1]) == defaults[key], f"{key}: documented default"
        else:  # "derived", "none", "empty": said in words, the code's value is empty
            assert defaults[key] in (None, ()), f"{key}: documented default {default[1]!r}"


def test_readme_links_are_absolute_urls_under_the_project_homepage() -> None:
    """The README is the package's long description: relative links break on an index page."""
    homepage = re.search(r'^Homepage = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert homepage is not None, "pyproject.toml defines no Homepage URL"
    repo = homepage[1].removeprefix("https://github.com/")
    targets = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert targets, "the README has no links"
    for target in targets:
        assert target.startswith(("https://github.com/", "https://raw.githubusercontent.com/")), (
            target
        )
        assert f"/{repo}/" in target, f"{target} is not under {homepage[1]}"
