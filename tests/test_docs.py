"""The settings the docs describe are the settings the code reads (plain text; no Sphinx needed)."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from flask_clustershazbot.config import Settings, config_key
from flask_clustershazbot.settings_values import PARSERS

ROOT = Path(__file__).resolve().parent.parent
KEYS = {config_key(name) for name in PARSERS}


def config_entries() -> dict[str, str]:
    """``.. data::`` name -> its indented body, from docs/config.rst."""
    text = (ROOT / "docs" / "config.rst").read_text(encoding="utf-8")
    entries: dict[str, str] = {}
    for match in re.finditer(r"^\.\. data:: (\S+)\n((?:[ \t]+.*\n|\n)*)", text, re.M):
        assert match[1] not in entries, f"{match[1]} is documented twice in docs/config.rst"
        entries[match[1]] = match[2]
    return entries


def glance_table_keys() -> set[str]:
    """The keys in the first column of docs/config.rst's table "At a glance", each once."""
    text = (ROOT / "docs" / "config.rst").read_text(encoding="utf-8")
    section = text.split("\nAt a glance\n-----------\n", 1)[1].split("\n.. data:: ", 1)[0]
    keys = re.findall(r"^    \* - :data:`(SHAZBOT_[A-Z0-9_]+)`$", section, re.M)
    assert len(keys) == len(set(keys)), "the table at a glance lists a key twice"
    return set(keys)


def test_every_setting_has_a_data_entry_and_no_entry_is_unknown() -> None:
    documented = set(config_entries())
    assert KEYS - documented == set(), "settings missing from docs/config.rst"
    assert documented - KEYS == set(), "docs/config.rst documents keys the code does not read"


def test_every_setting_has_a_row_at_a_glance_and_no_row_is_unknown() -> None:
    """The settings table (the README's until 0.2) is at the top of docs/config.rst."""
    rows = glance_table_keys()
    assert KEYS - rows == set(), "settings missing from docs/config.rst's table at a glance"
    assert rows - KEYS == set(), "docs/config.rst's table lists keys the code does not read"


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


def test_readme_links_are_relative_and_absolute_in_the_long_description() -> None:
    """The README's links are relative (they work in a checkout and on the repository's
    page) and lead to files of the checkout; the long description that setup.py gives
    the index has each of them absolute under the project's Homepage URL."""
    import runpy

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(targets) >= 10, "the README links to the docs"
    for target in targets:
        assert not re.match(r"[a-z]+:", target), f"{target}: relative links only"
        assert (ROOT / target.split("#")[0]).is_file(), f"{target}: no such file"
    homepage = re.search(r'^Homepage = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert homepage is not None, "pyproject.toml defines no Homepage URL"
    described = runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["long_description"]()
    assert re.findall(r"\]\(([^)\s]+)\)", described) == [
        f"{homepage[1]}/blob/main/{target}" for target in targets
    ]


# -- every code block of the docs runs ------------------------------------------------

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs").glob("*.rst")])
_MD_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
_RST_BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:[ \t]+.*\n|\n)+)", re.M)
#: ``# not run: <why>`` as a block's first line: compiled only (it needs what the docs
#: cannot have: your database, a login system, a bucket); the reason is required.
_NOT_RUN = re.compile(r"# not run: (\S.{10,})")
#: ``# name.py`` as a block's first line: the block is that file of the reader's project.
_FILE = re.compile(r"# ([a-z_]+\.py)\b")


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of each Python block of ``page`` (Markdown fences, rst directives)."""
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".md":
        found = [(m.start(1), m[1]) for m in _MD_BLOCK.finditer(text)]
    else:
        found = [(m.start(1), textwrap.dedent(m[1])) for m in _RST_BLOCK.finditer(text)]
    return [(text.count("\n", 0, start) + 1, code) for start, code in found]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A reader's setting for the blocks: an empty working directory on sys.path, the
    settings of a laptop node in the environment (loopback, a master list in tmp) and
    ``SHAZBOT_AUTOSTART=false``, so a block that creates an app starts no node."""
    for key in [k for k in os.environ if k.startswith(("SHAZBOT_", "FLASK_"))]:
        monkeypatch.delenv(key)
    for key, value in {
        "SHAZBOT_SECRET": "docs-gossip-secret-0123456789",
        "SHAZBOT_CONTROL_SECRET": "docs-control-secret-0123456789",
        "SHAZBOT_BASE_URL": "http://127.0.0.1:5001/",
        "SHAZBOT_MASTER_LIST": str(tmp_path / "master-list.json"),
        "SHAZBOT_AUTOSTART": "false",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before, root = set(sys.modules), logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield tmp_path
    root.setLevel(level)  # a block's logging.basicConfig
    root.handlers[:] = handlers
    for name in set(sys.modules) - before:  # the reader's modules (myapp, app) of this page
        if str(tmp_path) in (getattr(sys.modules[name], "__file__", None) or ""):
            del sys.modules[name]


def test_the_docs_have_python_blocks_and_pages_are_found() -> None:
    counts = {page.name: len(python_blocks(page)) for page in PAGES}
    assert counts["README.md"] >= 1 and counts["quickstart.md"] >= 1 and counts["index.rst"] >= 1
    assert sum(counts.values()) >= 20, counts


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_of_the_page_runs(page: Path, sandbox: Path) -> None:
    """A page's blocks run in order in one namespace, as a reader's session would, which
    starts with ``app`` and ``shazbot`` (a configured app, its node not started) for the
    fragments that use them; a ``# name.py`` block is also written as that file. If the
    blocks define tests (a testing guide), pytest runs them as the page's reader would."""
    from flask import Flask

    from flask_clustershazbot import ClusterShazbot

    app = Flask("docs")
    namespace: dict[str, Any] = {"__name__": "docs", "app": app, "shazbot": ClusterShazbot(app)}
    runs: list[str] = []
    for line, code in python_blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        first = code.split("\n", 1)[0]
        if first.startswith("# not run"):
            assert _NOT_RUN.fullmatch(first), f"{where}: '# not run: <why>' needs its reason"
            compile(code, where, "exec")
            continue
        named = _FILE.match(first)
        if named:
            (sandbox / named[1]).write_text(code, encoding="utf-8")
        else:
            runs.append(code)
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the block at {where} fails: {exc!r}") from exc
    if any(name.startswith("test_") and callable(v) for name, v in namespace.items()):
        (sandbox / f"test_{page.stem}.py").write_text("\n\n".join(runs), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(sandbox)],
            cwd=sandbox,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"the tests of {page.name} fail:\n{result.stdout}"
        assert " passed" in result.stdout, result.stdout
