"""The report's `index.html`: one self-contained page (no scripts, no server; the pictures
are PNG files beside it, linked by relative path) with the metrics table and every figure."""

from __future__ import annotations

import html
import math
from typing import Dict, Sequence, Tuple

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
.row { display: flex; flex-wrap: wrap; gap: 1em; } .row img { max-width: 48%; }
.note { color: #555; font-size: 0.9em; }
"""


def _number(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def metrics_table(metrics: Dict[str, object]) -> str:
    """The metrics as an HTML table: the COCO statistics, then per-class AP50."""
    rows = [(key, value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]
    body = "".join(f"<tr><td>{html.escape(key)}</td><td>{_number(value)}</td></tr>"
                   for key, value in rows)
    return f"<table><tr><th>metric</th><th>value</th></tr>{body}</table>"


def render(title: str, facts: Sequence[Tuple[str, str]], metrics: Dict[str, object],
           sections: Sequence[Tuple[str, Sequence[str], str]]) -> str:
    """The page: `title`, `facts` (label, text) as a list, the metrics table, then each
    section `(heading, [PNG file names], note)`."""
    items = "".join(f"<li><b>{html.escape(label)}</b>: {html.escape(text)}</li>"
                    for label, text in facts)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><ul>{items}</ul>",
             "<h2>Metrics</h2>", metrics_table(metrics)]
    for heading, images, note in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if note:
            parts.append(f"<p class=\"note\">{html.escape(note)}</p>")
        pictures = "".join(f"<img src=\"{html.escape(name)}\" alt=\"{html.escape(name)}\">"
                           for name in images)
        # side by side when a section has several pictures, full width when it has one
        parts.append(f"<div class=\"{'row' if len(images) > 1 else 'one'}\">{pictures}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
