"""A shim for tools that still call ``setup.py``. The metadata is in pyproject.toml,
except the long description: the README with its relative links (which work in a
checkout and on the repository's page) made absolute under the Homepage URL, so that
they work on the package index too."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def long_description() -> str:
    """README.md with each relative link ``](path)`` made ``](<Homepage>/blob/main/path)``
    (``raw/main`` for an image, which the index shows inline)."""
    pyproject = (HERE / "pyproject.toml").read_text(encoding="utf-8")
    homepage = re.search(r'^Homepage = "(.+)"$', pyproject, re.M)[1]

    def absolute(match: re.Match) -> str:
        target = match[1]
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # a URL or an anchor already
            return match[0]
        kind = "raw" if target.endswith((".png", ".svg", ".jpg")) else "blob"
        return f"]({homepage}/{kind}/main/{target})"

    readme = (HERE / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(([^)\s]+)\)", absolute, readme)


if __name__ == "__main__":
    setup(long_description=long_description(), long_description_content_type="text/markdown")
