"""A pruning run as one self-contained HTML file.

Everything is inline: the style sheet, and plots as base64 PNG data URIs; no script, font or
style sheet is fetched, so the file can be mailed or archived as it is. Every piece of text
from the run (layer names, the command, warnings) is escaped with :func:`html.escape`, so a
layer called ``<script>`` is shown, not run. Numbers use the formats of the text tables
(:mod:`prunekit.report.tables`).
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from prunekit.io.atomic import fsync_directory, fsync_file, staged
from prunekit.measure.format import format_change, format_count, format_fraction, format_value
from prunekit.measure.params import LayerStats
from prunekit.measure.summary import Row
from prunekit.report.plots import plot_layer_sparsity
from prunekit.report.run import LayerRow, Plot, RunReport, Verification

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 60em; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; white-space: pre-wrap;
      word-break: break-all; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e4e4e4; text-align: left; }
th { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fbfbfb; }
.passed { color: #17692b; font-weight: bold; }
.failed { color: #b00020; font-weight: bold; }
.skipped { color: #666; font-weight: bold; }
ul.warnings li { color: #8a5300; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption { font-weight: bold; margin-bottom: 0.3em; }
""".strip()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        cls = ' class="num"' if i in numeric else ""
        return f"<{tag}{cls}>{_e(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "\n".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _metrics(rows: Sequence[Row]) -> str:
    cells = [
        (r.name, format_value(r, r.before), format_value(r, r.after), format_change(r))
        for r in rows
    ]
    return _table(("quantity", "before", "after", "change"), cells, {1, 2, 3})


def _layers(rows: Sequence[LayerRow]) -> str:
    quantities = {r.quantity for r in rows}
    unit = f" ({quantities.pop()})" if len(quantities) == 1 else ""
    cells = [
        (
            r.name,
            format_count(r.before),
            format_count(r.after),
            format_fraction(r.kept),
            format_fraction(r.sparsity),
        )
        for r in rows
    ]
    headers = ("layer", f"before{unit}", f"after{unit}", "kept", "sparsity")
    return _table(headers, cells, {1, 2, 3, 4})


def _verification(v: Verification) -> str:
    cls = "skipped" if v.passed is None else "passed" if v.passed else "failed"
    return f'<p class="verification {cls}">Verification {_e(v.line())}</p>'


def _plot(p: Plot) -> str:
    data = base64.b64encode(p.png).decode("ascii")
    return (
        f"<figure><figcaption>{_e(p.title)}</figcaption>"
        f'<img alt="{_e(p.title)}" src="data:image/png;base64,{data}"></figure>'
    )


def render_html(data: RunReport) -> str:
    """The report as one HTML document (a string); sections without content are left out."""
    parts = [
        f"<h1>{_e(data.title)}</h1>",
        "<h2>Command</h2>",
        f"<pre><code>{_e(data.command)}</code></pre>",
    ]
    if data.verification is not None:
        parts += ["<h2>Verification</h2>", _verification(data.verification)]
    if data.warnings:
        items = "\n".join(f"<li>{_e(w)}</li>" for w in data.warnings)
        parts += ["<h2>Warnings</h2>", f'<ul class="warnings">\n{items}\n</ul>']
    if data.metrics or data.latencies:
        parts += ["<h2>Before and after</h2>", _metrics(data.metric_rows())]
    if data.layers:
        parts += ["<h2>Per layer</h2>", _layers(data.layers)]
    if data.plots:
        parts += ["<h2>Plots</h2>", *(_plot(p) for p in data.plots)]
    if data.versions:
        rows = [(name, version) for name, version in data.versions.items()]
        parts += ["<h2>Versions</h2>", _table(("package", "version"), rows, set())]
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(data.title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html_report(path: Path, data: RunReport) -> Path:
    """Write the report to ``path`` atomically (a temporary file beside it, then
    ``os.replace``): an interrupted write leaves the previous file or none, never half of one.
    Creates the parent folders; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(data)
    with staged(path) as temp:
        temp.write_text(text, encoding="utf-8")
        fsync_file(temp)
        os.replace(temp, path)
    fsync_directory(path.parent)
    return path


def plot_png(draw: Callable[[Path], Path]) -> bytes:
    """The PNG bytes of a figure drawn by one of :mod:`prunekit.report.plots`' functions, e.g.
    ``plot_png(lambda p: plot_metric_vs_sparsity(curves, p))`` (drawn in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="prunekit-plot-") as folder:
        written = draw(Path(folder) / "plot.png")
        return Path(written).read_bytes()


def layer_sparsity_plot(rows: Sequence[LayerRow], *, title: str = "Removed per layer") -> Plot:
    """A bar chart of each layer's sparsity (the fraction of its units removed)."""
    stats = {r.name: LayerStats(r.before, r.after, r.sparsity) for r in rows}
    return Plot(title, plot_png(lambda p: plot_layer_sparsity(stats, p, title=title)))
