"""MkDocs hook (mkdocs.yml ``hooks``): the docstrings are written for Sphinx-style readers
(``:func:`from_env```, a paragraph ending in ``::`` before a literal block); mkdocstrings
renders them as Markdown, which shows those marks as text. Drop the marks from the HTML."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|exc|obj):(?=<code>)")
_LITERAL = re.compile(r"::(?=</p>)")


def on_page_content(html: str, **_: Any) -> str:
    """``:func:<code>x</code>`` → ``<code>x</code>``; a paragraph's closing ``::`` → ``:``."""
    return _LITERAL.sub(":", _ROLE.sub("", html))
