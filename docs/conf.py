"""Sphinx configuration for kerbauth's documentation.

The configuration reference (reference.md) is generated from the traits in
the code by autodoc-traits, so option help is written once, in the code.
"""

import kerbauth

project = "kerbauth"
author = "kerbauth developers"
copyright = "2026, kerbauth developers"  # noqa: A001 - Sphinx's name
version = release = kerbauth.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "autodoc_traits",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
html_theme = "alabaster"
