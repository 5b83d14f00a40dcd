"""Text on the HTML report's page: what came from a model or a dataset, made safe to show.

    ... -> trajectory -> answer -> score -> run folder -> report (pr_eval.report.page) -> [escaped here]

Everything that came from a model or a dataset is escaped on the server side (`esc`), so a model
answer that contains markup shows as text. The report's modules (pr_eval.report.page, charts,
pictures, viewer) all write their text through this one.
"""

from __future__ import annotations

import html
import json
import re

DOT = " \u00b7 "

_SURROGATES = re.compile("[\ud800-\udfff]")


def html_text(value) -> str:
    """The text as an HTML parser will hand it to the DOM: line breaks as "\\n" (the parser turns
    CR and CRLF into LF), NUL and unpaired surrogates (which UTF-8 cannot carry) as U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return _SURROGATES.sub("\ufffd", text)


def esc(value) -> str:
    """Any value as HTML text or attribute content: what the page shows is exactly `html_text`."""
    return html.escape(html_text(value), quote=True)


def shown(value) -> str:
    """A target or answer as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
