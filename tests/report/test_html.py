"""The self-contained HTML report of a pruning run: content, escaping, images, atomic writes."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.measure.summary import ModelStats, Row, compare
from prunekit.report.html import layer_sparsity_plot, render_html, write_html_report
from prunekit.report.run import (
    PNG_SIGNATURE,
    LayerRow,
    Plot,
    RunReport,
    Verification,
    collect_versions,
    layer_rows_from_selection,
)

BEFORE = ModelStats(
    params=1_000_000,
    nonzeros=1_000_000,
    sparsity=0.0,
    macs=40_000_000,
    effective_macs=40_000_000,
    dense_bytes=4_000_000,
    sparse_bytes=4_200_000,
    latency_ms=2.0,
    metric={"accuracy (%)": 92.5},
)
AFTER = ModelStats(
    params=500_000,
    nonzeros=500_000,
    sparsity=0.0,
    macs=10_000_000,
    effective_macs=10_000_000,
    dense_bytes=2_000_000,
    sparse_bytes=2_100_000,
    latency_ms=1.0,
    metric={"accuracy (%)": 91.25},
)
LAYERS = (
    LayerRow("conv1", 64, 32, "channels"),
    LayerRow("layer1.0.conv1", 64, 48, "channels"),
    LayerRow("<script>alert(1)</script>", 10, 5, "channels"),
)


class _Collector(HTMLParser):
    """Tags, attributes and text of a document, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: str) -> _Collector:
    collector = _Collector()
    collector.feed(document)
    return collector


@pytest.fixture(scope="module")
def plot() -> Plot:
    return layer_sparsity_plot(LAYERS, title="Removed per layer")


@pytest.fixture(scope="module")
def report(plot: Plot) -> RunReport:
    return RunReport(
        title="Pruning small-resnet to half the MACs",
        command="prunekit prune small-resnet --sparsity 0.5 --out 'runs/a & b'",
        versions={"prunekit": "0.1.0", "torch": "2.13.0", "python": "3.11.7", "platform": "Linux"},
        metrics=tuple(compare(BEFORE, AFTER)),
        layers=LAYERS,
        verification=Verification(True, max_diff=3.1e-7, tolerance=1e-5, dtype="float64"),
        warnings=("BatchNorm statistics were not recalibrated: no data",),
        plots=(plot,),
    )


def test_title_command_and_versions(report: RunReport) -> None:
    page = render_html(report)
    text = "".join(parse(page).text)
    assert "<title>Pruning small-resnet to half the MACs</title>" in page
    assert "<h1>Pruning small-resnet to half the MACs</h1>" in page
    assert "prunekit prune small-resnet --sparsity 0.5 --out 'runs/a & b'" in text
    assert "--out &#x27;runs/a &amp; b&#x27;" in page  # escaped in the source
    for name, version in report.versions.items():
        assert f"<td>{name}</td><td>{version}</td>" in page


def test_every_metric_row_is_formatted(report: RunReport) -> None:
    page = render_html(report)
    expected = [
        ("params", "1,000,000", "500,000", "×0.50"),
        ("nonzeros", "1,000,000", "500,000", "×0.50"),
        ("sparsity", "0.0%", "0.0%", "+0.0 pp"),
        ("MACs", "40,000,000", "10,000,000", "×0.25"),
        ("effective MACs", "40,000,000", "10,000,000", "×0.25"),
        ("size (dense)", "3.8 MiB", "1.9 MiB", "×0.50"),
        ("size (sparse)", "4.0 MiB", "2.0 MiB", "×0.50"),
        ("latency", "2.000 ms", "1.000 ms", "×0.50"),
        ("accuracy (%)", "92.5", "91.25", "-1.25"),
    ]
    assert len(report.metrics) == len(expected)
    for name, before, after, change in expected:
        row = (
            f'<tr><td>{name}</td><td class="num">{before}</td>'
            f'<td class="num">{after}</td><td class="num">{change}</td></tr>'
        )
        assert row in page, name


def test_every_layer_row(report: RunReport) -> None:
    page = render_html(report)
    assert '<th class="num">before (channels)</th>' in page
    for name, before, after, kept, removed in [
        ("conv1", "64", "32", "50.0%", "50.0%"),
        ("layer1.0.conv1", "64", "48", "75.0%", "25.0%"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "10", "5", "50.0%", "50.0%"),
    ]:
        cells = [before, after, kept, removed]
        row = f"<tr><td>{name}</td>" + "".join(f'<td class="num">{c}</td>' for c in cells)
        assert row + "</tr>" in page, name


def test_verification_and_warnings(report: RunReport) -> None:
    page = render_html(report)
    assert (
        '<p class="verification passed">Verification passed: '
        "max |diff| 3.1e-07 &lt;= tolerance 1e-05 (float64)</p>"
    ) in page
    assert "<li>BatchNorm statistics were not recalibrated: no data</li>" in page


def test_verification_lines() -> None:
    assert Verification.skipped("masks are not verified").line() == (
        "skipped: masks are not verified"
    )
    failed = Verification(False, max_diff=0.5, tolerance=1e-5, dtype="float64")
    assert failed.line() == "FAILED: max |diff| 0.5 > tolerance 1e-05 (float64)"
    page = render_html(RunReport("t", "c", verification=failed))
    assert '<p class="verification failed">' in page


def test_embedded_image_is_a_valid_png(report: RunReport, plot: Plot) -> None:
    page = render_html(report)
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(found) == 1
    data = base64.b64decode(found[0], validate=True)
    assert data.startswith(PNG_SIGNATURE) and data == plot.png
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 50


def test_layer_named_script_cannot_inject(report: RunReport) -> None:
    page = render_html(report)
    parsed = parse(page)
    assert "script" not in parsed.tags
    assert "<script>alert(1)</script>" in "".join(parsed.text)  # shown as text
    assert "<script" not in page


def test_self_contained(report: RunReport) -> None:
    parsed = parse(render_html(report))
    assert {"link", "script", "iframe"}.isdisjoint(parsed.tags)
    sources = [v for k, v in parsed.attrs if k in ("src", "href") and v]
    assert sources and all(v.startswith("data:image/png;base64,") for v in sources)


def test_empty_sections_are_left_out() -> None:
    page = render_html(RunReport("Only a title", "prunekit prune x"))
    for heading in ("Verification", "Warnings", "Before and after", "Per layer", "Plots"):
        assert f"<h2>{heading}</h2>" not in page
    assert "<h2>Command</h2>" in page


def test_write_is_atomic(tmp_path: Path, report: RunReport) -> None:
    target = tmp_path / "reports" / "run.html"
    assert write_html_report(target, report) == target
    assert target.read_text(encoding="utf-8") == render_html(report)
    broken = RunReport("t", "c", metrics=(Row("x", "unknown-kind", 1.0, 2.0, 2.0, 1.0),))  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        write_html_report(target, broken)
    assert target.read_text(encoding="utf-8") == render_html(report)  # previous file intact
    assert [p.name for p in target.parent.iterdir()] == ["run.html"]  # no temporary left


def test_plot_refuses_non_png() -> None:
    with pytest.raises(ConfigError, match="'x': the image is not a PNG"):
        Plot("x", b"GIF89a...")


def test_layer_rows_from_selection_and_bounds() -> None:
    keep = {"conv1": torch.tensor([True, False, True, True]), "fc": torch.tensor([False, True])}
    rows = layer_rows_from_selection(keep)
    assert [(r.name, r.before, r.after, r.kept) for r in rows] == [
        ("conv1", 4, 3, 0.75),
        ("fc", 2, 1, 0.5),
    ]
    with pytest.raises(ConfigError, match="'a': need 0 <= after <= before"):
        LayerRow("a", 2, 3)


def test_collect_versions_names_the_essentials() -> None:
    versions = collect_versions()
    assert list(versions)[:4] == ["prunekit", "torch", "python", "platform"]
    assert versions["torch"].startswith(torch.__version__.split("+")[0][:4])


def test_verification_from_a_surgery_report() -> None:
    from prunekit.surgery.verify import VerificationReport

    report = VerificationReport(
        max_abs_diff=0.0,
        scale=0.5,
        tolerance=5e-7,
        dtype="torch.float64",
        verified=("conv1",),
        unverified=("attn.q_proj",),
    )
    v = Verification.from_report(report)
    assert v.passed is True and v.dtype == "float64"
    assert (
        v.line() == "passed: max |diff| 0 <= tolerance 5e-07 (float64); not verifiable: attn.q_proj"
    )
