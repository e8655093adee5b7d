"""One HTML page that ties a run's results together: tables, plots, ranked lists.

The page links its images by paths relative to itself, so the report folder can be zipped,
moved or served as it is. No scripts, no external assets.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; margin: 4px 0; }
.note { color: #555; font-size: 0.9em; }
.legend span { padding: 0 6px; color: white; border-radius: 3px; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return html.escape(str(v))


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows (floats shown with one decimal; missing cells empty)."""
    if not rows:
        return "<p class='note'>(none)</p>"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r[c]) if c in r else ''}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html_report(out_dir: str | Path, *, title: str, results: Sequence[Mapping[str, Any]],
                      figures: Sequence[tuple[str, str | Path]] = (), ranked_lists: Sequence[str | Path] = (),
                      tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
                      notes: Sequence[str] = (), filename: str = "index.html") -> Path:
    """Write ``out_dir/index.html``.

    ``results``: rows like ``{"model": "ViT-ICS", "mAP": 61.2, "R1": ...}`` (percent);
    ``figures``: ``(caption, png path)``; ``ranked_lists``: png paths; ``tables``: extra
    ``(heading, rows)``; ``notes``: plain-text lines shown under the title. Image paths must lie
    inside ``out_dir`` (they are linked relatively).
    """
    from reidkit.utils.io import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def rel(p: str | Path) -> str:
        p = Path(p)
        r = os.path.relpath(p.resolve(), out_dir.resolve())
        if r.startswith(".."):
            raise ValueError(f"{p}: report images must be inside the report folder {out_dir}")
        return html.escape(Path(r).as_posix(), quote=True)

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    parts.append("<h2>Results</h2>" + html_table(results))
    for heading, rows in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + html_table(rows))
    for caption, path in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2><img src='{rel(path)}' alt='{html.escape(caption)}'>")
    if ranked_lists:
        parts.append("<h2>Ranked lists</h2><p class='legend note'>query (<span style='background:#285ac8'>"
                     "blue</span>), then the top matches: <span style='background:#1eaa3c'>right id</span> "
                     "<span style='background:#d22828'>wrong id</span>; camera under each image. Same-camera "
                     "matches of the query's id and junk are left out, as in the evaluation protocol.</p>")
        parts += [f"<div><img src='{rel(p)}' alt='ranked list'></div>" for p in ranked_lists]
    parts.append("</body></html>\n")
    return atomic_write_text(out_dir / filename, "\n".join(parts))
