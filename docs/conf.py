"""Sphinx configuration: the Pallets "flask" theme, autodoc, and myst-parser for the .md pages."""

from sphinx.pycode import ModuleAnalyzer

import flask_clustershazbot

project = "flask-clustershazbot"
copyright = "the flask-clustershazbot authors"
release = flask_clustershazbot.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "pallets_sphinx_themes",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# Anchors for the .md pages' headings, so that links such as security.md#slow-clients resolve.
myst_heading_anchors = 3


exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
html_title = f"flask-clustershazbot {release}"
html_show_sourcelink = False


def _signal_docs(app, what, name, obj, options, lines):
    """Each signal's doc is its ``#:`` comment in signals.py; autodoc, documenting the
    name re-exported from ``flask_clustershazbot``, would show blinker's class docstring."""
    module, _, attr = name.rpartition(".")
    if what == "data" and module == "flask_clustershazbot" and attr.startswith("peer_"):
        docs = ModuleAnalyzer.for_module("flask_clustershazbot.signals").find_attr_docs()
        lines[:] = list(docs[("", attr)])


def setup(app):
    app.connect("autodoc-process-docstring", _signal_docs)
