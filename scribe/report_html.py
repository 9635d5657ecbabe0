"""HTML building blocks of the fit report: a figure as an embedded PNG, tables, the page.

Everything is inline (base64 PNG images, one ``<style>``): the file opens offline, and
nothing in it runs scripts.
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; }
.warning { background: #fff4e0; border-left: 4px solid #e69500; padding: 0.4em 0.8em;
           margin: 0.4em 0; }
.ok { background: #eef8ee; border-left: 4px solid #3a3; padding: 0.4em 0.8em; }
.note { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
"""


def figure_png(figure, dpi: int = 100) -> str:
    """A matplotlib Figure as an ``<img>`` element with a base64 PNG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{encoded}">'


def table(frame: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A DataFrame as an escaped HTML table."""
    return frame.to_html(escape=True, border=0, float_format=float_format.format)


def warnings_block(messages: list[str]) -> str:
    if not messages:
        return '<div class="ok">No warnings.</div>'
    return "\n".join(f'<div class="warning">{html.escape(m)}</div>' for m in messages)


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n" + "\n".join(parts) + "\n</section>"


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def page(title: str, body: list[str]) -> str:
    """The whole document."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body>\n</html>\n")
