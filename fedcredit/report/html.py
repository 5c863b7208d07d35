"""Self-contained HTML for the run report: inline CSS, embedded images, every value escaped.

No scripts, fonts or stylesheets are fetched, so the file opens offline and cannot phone home.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:2px solid #3465a4;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:1em 0 .3em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#eef2f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:1em} img.plot{border:1px solid #ddd;max-width:100%}
.ok{color:#1a7f37;font-weight:bold} .bad{color:#c62828;font-weight:bold} .note{color:#555;font-size:.9em}
nav a{margin-right:1em} code{background:#f4f4f4;padding:0 .2em}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: bool = True) -> str:
    """A table; cells that are numbers are right-aligned and floats shown with 4 significant decimals."""

    def cell(v: object) -> str:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not numeric:
            return f"<td>{esc(v)}</td>"
        text = f"{v:.4f}" if isinstance(v, float) else f"{v:,}"
        return f'<td class="num">{text}</td>'

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def para(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>"


def gallery(images: Iterable[str]) -> str:
    return '<div class="plots">' + "".join(images) + "</div>"


@dataclass
class Section:
    """One report section; ``parts`` are HTML fragments built with the helpers above."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *fragments: str) -> Section:
        self.parts.extend(fragments)
        return self

    def render(self) -> str:
        return f'<section id="{esc(self.id)}" class="report-section"><h2>{esc(self.title)}</h2>{"".join(self.parts)}</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(s.render() for s in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p class='sub'>{esc(subtitle)}</p><nav>{nav}</nav>{body}</body></html>"
    )
