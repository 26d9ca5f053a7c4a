"""The Grafana dashboards of deploy/grafana/ drawn without Grafana: each panel's queries
run over a time range against a Prometheus's HTTP API (/api/v1/query_range), one PNG per
dashboard, its panels in a grid.

    python -m tests.observability.render_dashboards --prometheus http://127.0.0.1:9090 \\
        --minutes 30 --out bench/results/dashboards

tests/observability/test_prometheus_live.py renders them from its own Prometheus. Grafana's
variables are given fixed values: ``$datasource`` is the Prometheus queried,
``$__rate_interval`` the ``rate_interval`` given, ``$__range`` the rendered range.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.dates as mdates  # after the backend is chosen
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from tests.http import call

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
COLUMNS = 3
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class PrometheusError(Exception):
    """Prometheus answered a query with an error (a bad expression, a timeout)."""


@dataclass(frozen=True)
class Prometheus:
    """The few calls of Prometheus's HTTP API the tests and the renderer make."""

    url: str

    def get(self, path: str, **params: str) -> Any:
        reply = call(self.url, "GET", f"{path}?{urlencode(params)}" if params else path)
        body = reply.json()
        if reply.status != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {reply.status} {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.get("/api/v1/query", **params)
        if data["resultType"] in ("vector", "matrix"):
            result: list[dict[str, Any]] = data["result"]
            return result
        return [{"metric": {}, "value": data["result"]}]  # a scalar or a string

    def query_range(self, expr: str, *, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        result: list[dict[str, Any]] = data["result"]
        return result


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's panels in order, rows left out (a collapsed row's panels included)."""
    found: list[dict[str, Any]] = []
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(board) for target in panel.get("targets", [])]


def substitute(expr: str, *, rate_interval: str, range_seconds: float) -> str:
    """The expression with Grafana's built-in variables replaced as Grafana would for this range."""
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", f"{max(1, round(range_seconds))}s")


def legend(template: str, labels: dict[str, str]) -> str:
    if not template or template == "__auto":
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"
    return _LEGEND.sub(lambda match: labels.get(match.group(1), ""), template)


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]


@dataclass
class Panel:
    title: str
    kind: str
    unit: str
    series: list[Series] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(s.finite for s in self.series)


@dataclass(frozen=True)
class Rendered:
    path: Path
    panels: list[Panel]

    @property
    def with_data(self) -> list[str]:
        return [panel.title for panel in self.panels if panel.has_data]


def fetch(
    board: dict[str, Any], prometheus: Prometheus, *, start: float, end: float, step: float, rate_interval: str
) -> list[Panel]:
    fetched = []
    for spec in panels(board):
        unit = spec.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        panel = Panel(title=spec["title"], kind=spec["type"], unit=unit)
        for target in spec.get("targets", []):
            expr = substitute(target["expr"], rate_interval=rate_interval, range_seconds=end - start)
            for result in prometheus.query_range(expr, start=start, end=end, step=step):
                points = result["values"]
                panel.series.append(
                    Series(
                        name=legend(target.get("legendFormat", ""), result["metric"]),
                        times=[float(t) for t, _ in points],
                        values=[float(v) for _, v in points],
                    )
                )
        fetched.append(panel)
    return fetched


_SCALES = {"percentunit": (100.0, "%"), "s": (1.0, "s"), "reqps": (1.0, "req/s")}


def _draw_panel(axes: Axes, panel: Panel) -> None:
    axes.set_title(panel.title, fontsize=9, loc="left")
    axes.tick_params(labelsize=7)
    scale, suffix = _SCALES.get(panel.unit, (1.0, ""))
    if not panel.has_data:
        axes.text(0.5, 0.5, "No data", ha="center", va="center", color="grey", transform=axes.transAxes)
        axes.set_xticks([])
        axes.set_yticks([])
        return
    # The last value of each series, as Grafana's lastNotNull reduction shows it.
    lasts = [(s.name, s.finite[-1] * scale) for s in panel.series if s.finite]
    if panel.kind in ("stat", "table"):
        # A stat's one value big, as Grafana shows it; a table's rows, labels first.
        big = panel.kind == "stat" and len(lasts) == 1
        text = "\n".join(f"{value:.4g}{suffix}" if big else f"{name}: {value:.4g}{suffix}" for name, value in lasts)
        axes.axis("off")
        axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=28 if big else 9, transform=axes.transAxes)
        return
    if panel.kind in ("bargauge", "gauge"):
        bars = axes.barh([name for name, _ in lasts][::-1], [value for _, value in lasts][::-1], color="tab:blue")
        axes.bar_label(bars, labels=[f"{value:.4g}{suffix}" for _, value in lasts][::-1], fontsize=8)
        axes.tick_params(axis="y", labelsize=7)
        return
    for series in panel.series:
        times = mdates.date2num([datetime.fromtimestamp(t, tz=UTC) for t in series.times])
        style = "steps-post" if panel.kind == "state-timeline" else "default"
        axes.plot(times, [v * scale for v in series.values], label=series.name[:40], linewidth=1, drawstyle=style)
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    if suffix:
        axes.set_ylabel(suffix, fontsize=7)
    if len(panel.series) <= 8:
        axes.legend(fontsize=6, loc="upper left")


def draw(title: str, fetched: Sequence[Panel], path: Path) -> None:
    rows = max(1, math.ceil(len(fetched) / COLUMNS))
    figure, grid = plt.subplots(rows, COLUMNS, figsize=(6 * COLUMNS, 3.2 * rows), squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index < len(fetched):
            _draw_panel(axes, fetched[index])
        else:
            axes.axis("off")
    figure.suptitle(title, fontsize=13)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def render(
    prometheus: Prometheus,
    out: Path,
    *,
    start: float,
    end: float,
    dashboards: Iterable[Path] = DASHBOARDS,
    step: float | None = None,
    rate_interval: str = "1m",
) -> list[Rendered]:
    """One PNG per dashboard in ``out`` (named after its JSON file), and what each panel got."""
    step = step or max(1.0, (end - start) / 300)
    rendered = []
    for source in dashboards:
        board = json.loads(source.read_text())
        fetched = fetch(board, prometheus, start=start, end=end, step=step, rate_interval=rate_interval)
        path = out / f"{source.stem}.png"
        draw(board["title"], fetched, path)
        rendered.append(Rendered(path=path, panels=fetched))
    return rendered


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate-interval", default="1m")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboards")
    args = parser.parse_args(argv)
    end = time.time()
    for done in render(
        Prometheus(args.prometheus), args.out, start=end - args.minutes * 60, end=end, rate_interval=args.rate_interval
    ):
        print(f"{done.path}: {len(done.with_data)} of {len(done.panels)} panels with data")


if __name__ == "__main__":
    main()
