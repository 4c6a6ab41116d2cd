"""Corpus strings (class names, cluster names, texts) as plain text: one function per output kind.

A corpus's labels are data. Each renderer reads them as markup of its own:
matplotlib as mathtext (``$...$``) and hides legend labels that start with
``_``, Markdown and HTML as tags and table syntax, a terminal as control codes,
plotly as its pseudo-HTML. Every place that shows a corpus string passes it
through the function of its output kind here, so the string is shown as
written (control characters as their escapes, where a renderer would obey them).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

# C0 and C1 controls (ESC, BEL, CR, ...), and the bidirectional overrides that reorder what a terminal shows.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# ASCII punctuation Markdown may read as syntax within a line (a backslash before it is always a literal in
# CommonMark); & < > are written as HTML entities instead, after this step.
MARKDOWN_SYNTAX = re.compile(r"[\\`*_{}\[\]()#!|~^$]")


def console_text(value: object) -> str:
    r"""``value`` for a terminal: control characters shown as their Python escapes.

    >>> console_text("\x1b]0;title\x07 ok")
    '\\x1b]0;title\\x07 ok'
    """
    return CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(value))


def matplotlib_text(value: object) -> str:
    r"""``value`` for a matplotlib Text: every ``$`` escaped, so no part of it is read as mathtext.

    matplotlib shows ``\$`` as ``$``. Control characters, which it cannot draw, are shown escaped.

    >>> matplotlib_text("costs $5 to $10")
    'costs \\$5 to \\$10'
    """
    return console_text(value).replace("$", r"\$")


def markdown_text(value: object) -> str:
    r"""``value`` for Markdown (a table cell included): syntax escaped, then ``&``, ``<``, ``>`` as entities.

    A ``|`` cannot end a cell, a tag cannot reach the HTML, a line break cannot end a row.

    >>> markdown_text("<b>a|b</b>")
    '&lt;b&gt;a\\|b&lt;/b&gt;'
    """
    escaped = MARKDOWN_SYNTAX.sub(lambda match: "\\" + match.group(), console_text(value))
    return html.escape(escaped, quote=False)


def markdown_code(value: object) -> str:
    """``value`` as a Markdown code span, shown exactly (a fence longer than any run of backticks inside).

    >>> markdown_code("a`b")
    '``a`b``'
    """
    text = console_text(value)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plotly_text(value: object) -> str:
    """``value`` for plotly's labels (legend, hover): ``&``, ``<`` and ``>`` as the entities plotly decodes.

    Plotly reads ``<b>``, ``<br>`` and a few entities but not ``&quot;``, so quotes stay as they are.

    >>> plotly_text('say "hi" <b>')
    'say "hi" &lt;b&gt;'
    """
    return html.escape(str(value), quote=False)


def console_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> list[str]:
    """A plain-text table for the terminal: a header, a rule, and a line per row.

    Each column is ``(title, key, spec)``: the row's ``key`` is formatted with
    the format ``spec`` (``"<17"``, ``">8.2f"``); a spec without a type shows
    any value (None too) as ``str`` does. Titles take the spec's alignment and width.
    """

    def cell(value: Any, spec: str) -> str:
        return format(value if spec[-1:].isalpha() else str(value), spec)

    header = " ".join(cell(title, re.match(r"[<>^]?\d*", spec).group()) for title, _, spec in columns)
    return [
        header,
        "-" * len(header),
        *(" ".join(cell(row[key], spec) for _, key, spec in columns) for row in rows),
    ]
