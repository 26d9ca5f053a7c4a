"""From the records of a run to its verdict: figures, checks, a Markdown summary and a plot.

Latencies are measured from each request's planned send time (closed loop: its actual
send time) and given twice: as the client saw them, and as the part the gateway added,
the client's figure minus what the fake upstream was told to take for that request
(JSON: the whole answer; stream: the first token, and the last). The checks apply to
the added part, so they hold whatever upstream the run models; a request the gateway
retried carries its failed attempts and back-off in its added time, as it should.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import generator, probes, traffic

# The checklist of issue 15: at the target rate, p95 < 500 ms, p99 < 1 s, errors < 0.1 %.
P95_MS = 500.0
P99_MS = 1000.0
ERROR_SHARE = 0.001
ACHIEVED_SHARE = 0.99  # of the requests planned in the measured window, answered 200
SEND_LAG_P99_MS = 10.0  # the generator kept its timetable
DRAIN_LAG_MAX_S = 30.0  # the drain runs every 2 s; more than this is a backlog, not a tick
DRAIN_SETTLE_S = 60.0  # after the load, the stream must be empty within this
# Soak only. RSS is compared between the tenth after warming (20-30 % of the run) and the
# last tenth; the drain lag's slope is fitted from 20 % of the run to its end.
SOAK_RSS_GROWTH = 0.10
SOAK_DRAIN_SLOPE_S_PER_MIN = 0.1  # 6 s more lag over an hour
QUANTILES = (50, 95, 99)


@dataclass
class Run:
    """Everything a finished run left for the report."""

    profile: str
    target: str  # "gateway" or "direct"
    command: str
    started: str
    shape: traffic.Shape
    mix: traffic.Mix
    settings: dict[str, Any]
    plan: traffic.Plan
    records: dict[str, np.ndarray]
    closed: bool
    t0: float
    probe: probes.Probe
    upstream_stats: dict[str, int]
    generators: list[dict[str, Any]]
    events_stored: int | None = None
    drain_settled_s: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    threshold: str
    passed: bool


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    found = np.percentile(values, QUANTILES)
    out = {f"p{q}": float(v) for q, v in zip(QUANTILES, found, strict=True)}
    out["max"] = float(values.max())
    return out


@dataclass
class Figures:
    """The numbers of a run, computed once for the checks, the summary and the plot."""

    run: Run
    duration: float = 0.0
    planned_at: np.ndarray = field(default_factory=lambda: np.empty(0))
    measured: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    stream: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    added: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    send_lag: dict[str, float] = field(default_factory=dict)
    connect: dict[str, float] = field(default_factory=dict)
    usage: list[probes.Usage] = field(default_factory=list)
    drain: dict[str, float] = field(default_factory=dict)
    rss_growth: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def figures(run: Run) -> Figures:
    records, plan = run.records, run.plan
    index = records["index"]
    f = Figures(run, duration=run.shape.duration)
    f.planned_at = records["sent_at"] if run.closed else plan.send_at[index]
    f.measured = (f.planned_at >= 0) & (f.planned_at < f.duration)
    f.stream = plan.stream[index]
    status = records["status"]
    # A request that never finished counts as infinitely slow, not as absent.
    unfinished = np.isin(status, [generator.NO_ANSWER, generator.NOT_SENT])
    total = np.where(unfinished, np.inf, records["total"].astype(np.float64)) * 1000
    ttfb = np.where(np.isnan(records["ttfb"]), total, records["ttfb"].astype(np.float64) * 1000)
    first_ms = plan.first_ms[index].astype(np.float64)
    last_ms = plan.upstream_ms[index].astype(np.float64)
    m, s = f.measured, f.stream
    series = {
        "JSON total": (total, m & ~s, first_ms),
        "stream first token": (ttfb, m & s, first_ms),
        "stream total": (total, m & s, last_ms),
    }
    for name, (values, chosen, upstream) in series.items():
        f.latency[name] = _percentiles(values[chosen])
        f.added[name] = _percentiles(values[chosen] - upstream[chosen])
    ok = status == 200
    f.counts = {
        "planned": int(m.sum()),
        "json": int((m & ~s).sum()),
        "stream": int((m & s).sum()),
        "ok": int((m & ok).sum()),
        "warm-up": int((f.planned_at < 0).sum()),
        "answered (whole run)": int((status > 0).sum()),
        "ok (whole run)": int(ok.sum()),
        "sent (whole run)": int((status != generator.NOT_SENT).sum()),
    }
    failed = status[m & ~ok]
    for code, count in zip(*np.unique(failed, return_counts=True), strict=True):
        f.errors[generator.STATUS_NAMES.get(int(code), f"HTTP {int(code)}")] = int(count)
    lag = (records["sent_at"] - f.planned_at)[m & (status != generator.NOT_SENT)] * 1000
    f.send_lag = _percentiles(lag) if not run.closed else {}
    connect = records["connect"][m].astype(np.float64) * 1000
    f.connect = _percentiles(connect[~np.isnan(connect)]) | {"count": float((~np.isnan(connect)).sum())}
    end = run.t0 + f.duration
    f.usage = probes.usage(run.probe, run.t0, end)
    _drain_figures(f, end)
    if run.profile == "soak":
        _rss_growth(f)
    f.checks = _checks(f)
    return f


def _drain_figures(f: Figures, end: float) -> None:
    run = f.run
    lags = [(s.at - run.t0, s.drain_lag) for s in run.probe.samples if s.drain_lag is not None]
    if run.target != "gateway" or not lags:
        return
    during = [lag for at, lag in lags if 0 <= at <= f.duration]
    f.drain["max"] = max(during, default=0.0)
    f.drain["at end of load"] = next((lag for at, lag in reversed(lags) if at <= f.duration), 0.0)
    fitted = [(at, lag) for at, lag in lags if 0.2 * f.duration <= at <= f.duration]
    if run.profile == "soak" and len(fitted) >= 3:
        xs, ys = zip(*fitted, strict=True)
        f.drain["slope s/min"] = float(np.polyfit(np.array(xs) / 60, ys, 1)[0])


def _rss_growth(f: Figures) -> None:
    run = f.run
    early: dict[str, list[float]] = {}
    late: dict[str, list[float]] = {}
    for sample in run.probe.samples:
        share = (sample.at - run.t0) / f.duration
        bucket = early if 0.2 <= share < 0.3 else late if 0.9 <= share <= 1.0 else None
        if bucket is None:
            continue
        totals: dict[str, float] = {}
        for role, _, rss in sample.processes.values():
            totals[role] = totals.get(role, 0.0) + rss
        for role, total in totals.items():
            bucket.setdefault(role, []).append(total)
    for role in early.keys() & late.keys():
        if role in ("generator", "harness", "postgres backends", "redis-server"):
            continue  # the generator keeps its records; the others are shared or not ours
        before = float(np.median(early[role]))
        f.rss_growth[role] = float(np.median(late[role])) / before - 1 if before else 0.0


def _checks(f: Figures) -> list[Check]:
    run = f.run
    checks: list[Check] = []
    for name in ("JSON total", "stream first token"):
        added = f.added[name]
        if not added:
            continue
        checks.append(Check(f"{name}, added p95", _ms(added["p95"]), f"< {P95_MS:.0f} ms", added["p95"] < P95_MS))
        checks.append(Check(f"{name}, added p99", _ms(added["p99"]), f"< {P99_MS:.0f} ms", added["p99"] < P99_MS))
    planned = max(1, f.counts["planned"])
    failed = planned - f.counts["ok"]
    checks.append(
        Check("errors", f"{failed / planned:.3%} ({failed})", f"< {ERROR_SHARE:.1%}", failed / planned < ERROR_SHARE)
    )
    if not run.closed:
        share = f.counts["ok"] / planned
        checks.append(Check("achieved / planned", f"{share:.2%}", f">= {ACHIEVED_SHARE:.0%}", share >= ACHIEVED_SHARE))
        if f.send_lag:
            lag = f.send_lag["p99"]
            checks.append(
                Check("generator on time: send lag p99", _ms(lag), f"< {SEND_LAG_P99_MS:.0f} ms", lag < SEND_LAG_P99_MS)
            )
    if run.target == "gateway":
        stored, answered_ok, sent = run.events_stored, f.counts["ok (whole run)"], f.counts["sent (whole run)"]
        if stored is not None:
            checks.append(
                Check(
                    "usage events stored",
                    f"{stored} (answered 200: {answered_ok}, sent: {sent})",
                    "200s <= stored <= sent",
                    answered_ok <= stored <= sent,
                )
            )
        if f.drain:
            worst = f.drain["max"]
            checks.append(
                Check("drain lag max", f"{worst:.1f} s", f"< {DRAIN_LAG_MAX_S:.0f} s", worst < DRAIN_LAG_MAX_S)
            )
        settled = run.drain_settled_s
        checks.append(
            Check(
                "drain caught up after the load",
                "never" if settled is None else f"in {settled:.1f} s",
                f"<= {DRAIN_SETTLE_S:.0f} s",
                settled is not None and settled <= DRAIN_SETTLE_S,
            )
        )
    if run.profile == "soak":
        for role, growth in sorted(f.rss_growth.items()):
            checks.append(
                Check(f"RSS growth, {role}", f"{growth:+.1%}", f"<= {SOAK_RSS_GROWTH:.0%}", growth <= SOAK_RSS_GROWTH)
            )
        if "slope s/min" in f.drain:
            slope = f.drain["slope s/min"]
            checks.append(
                Check(
                    "drain lag slope",
                    f"{slope:+.3f} s/min",
                    f"<= {SOAK_DRAIN_SLOPE_S_PER_MIN} s/min",
                    slope <= SOAK_DRAIN_SLOPE_S_PER_MIN,
                )
            )
    return checks


def _ms(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.1f} ms"


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown(f: Figures, plot_name: str) -> str:
    run, mix = f.run, f.run.mix
    verdict = "PASS" if f.passed else "FAIL"
    lines = [f"# Load run: {run.profile}, {describe(run)} — {verdict}", ""]
    lines += [f"> {note}" for note in run.notes] + ([""] if run.notes else [])
    lines += [
        f"`{run.command}`",
        "",
        f"Started {run.started}; {run.settings['host']}.",
        "",
        "## Checks",
        "",
        _row(["check", "measured", "threshold", ""]),
        _row(["---", "---:", "---", "---"]),
    ]
    lines += [_row([c.name, c.measured, c.threshold, "PASS" if c.passed else "**FAIL**"]) for c in f.checks]
    duration = f.duration
    c = f.counts
    lines += ["", "## Load", ""]
    if run.closed:
        lines.append(
            f"- sent in the {traffic.seconds_to_text(duration)}, each connection waiting for its answer: "
            f"{c['planned']} requests ({c['json']} JSON, {c['stream']} streamed); answered 200: {c['ok']}, "
            f"{c['ok'] / duration:.1f} req/s; warm-up requests left out: {c['warm-up']}"
        )
    else:
        lines.append(
            f"- planned in the measured {traffic.seconds_to_text(duration)}: {c['planned']} requests "
            f"({c['json']} JSON, {c['stream']} streamed), {c['planned'] / duration:.1f} req/s "
            f"(target mean {run.shape.mean_rate():.1f} req/s); answered 200: {c['ok']}, "
            f"{c['ok'] / duration:.1f} req/s; warm-up requests left out: {c['warm-up']}"
        )
    if f.send_lag:
        lines.append(
            f"- generator send lag (actual minus planned send time): p50 {_ms(f.send_lag['p50'])}, "
            f"p99 {_ms(f.send_lag['p99'])}, max {_ms(f.send_lag['max'])}; "
            + ", ".join(
                f"process {g['worker']}: {g['cpu_s']:.1f} CPU s, up to {g['max_connections']} connections"
                for g in run.generators
            )
        )
    if f.connect.get("count"):
        lines.append(
            f"- new connections opened for measured requests: {f.connect['count']:.0f}; time to connect "
            f"p50 {_ms(f.connect['p50'])}, p99 {_ms(f.connect['p99'])}, max {_ms(f.connect['max'])} "
            "(seconds here mean a full accept queue: the kernel drops the SYN and the client retries after 1, 3, 7 s)"
        )
    up = run.upstream_stats
    if up:
        lines.append(
            f"- fake upstream: {up.get('chat', 0)} chat calls ({up.get('streams', 0)} streamed), "
            f"{up.get('errors_injected', 0)} answered 500/529 on purpose, "
            f"up to {up.get('max_open_connections', 0)} open connections, {up.get('aborted', 0)} cut by the caller"
        )
    lines += [
        "",
        "## Latency",
        "",
        "Milliseconds from the "
        + ("actual send time (closed loop)" if run.closed else "planned send time")
        + ". *Added*: minus the upstream's planned time for that request.",
        "",
        _row(["", "n", "p50", "p95", "p99", "max", "added p50", "added p95", "added p99", "added max"]),
        _row(["---", *["---:"] * 9]),
    ]
    counts = {"JSON total": c["json"], "stream first token": c["stream"], "stream total": c["stream"]}
    for name, values in f.latency.items():
        if not values:
            continue
        added = f.added[name]
        cells = [_num(values[k]) for k in ("p50", "p95", "p99", "max")]
        cells += [_num(added[k]) for k in ("p50", "p95", "p99", "max")]
        lines.append(_row([name, counts[name], *cells]))
    lines += _phase_lines(f)
    lines += ["", "## Errors", ""]
    if f.errors:
        lines += [_row(["outcome", "requests", "share"]), _row(["---", "---:", "---:"])]
        for name, count in sorted(f.errors.items(), key=lambda item: -item[1]):
            lines.append(_row([name, count, f"{count / max(1, c['planned']):.3%}"]))
    else:
        lines.append("None: every measured request was answered 200.")
    lines += _process_lines(f)
    if run.target == "gateway":
        lines += ["", "## Usage drain", ""]
        if f.drain:
            lines.append(
                f"- drain lag (age of the oldest event not yet in PostgreSQL): max {f.drain['max']:.1f} s, "
                f"at the end of the load {f.drain['at end of load']:.1f} s"
                + (f", slope {f.drain['slope s/min']:+.3f} s/min" if "slope s/min" in f.drain else "")
            )
        settled = run.drain_settled_s
        lines.append(
            "- stream empty after the load: " + ("no, within the wait" if settled is None else f"in {settled:.1f} s")
        )
        lines.append(
            f"- usage events in PostgreSQL: {run.events_stored}; requests answered 200 over the whole run "
            f"(warm-up included): {c['ok (whole run)']}, answered at all: {c['answered (whole run)']}, "
            f"sent: {c['sent (whole run)']}"
        )
    lines += [
        "",
        "## Configuration",
        "",
        f"- shape: {shape_text(run)}; arrivals {run.settings['arrivals']}; warm-up {run.settings['warmup']:g} s "
        f"at the first rate; seed {run.settings['seed']}",
        f"- mix: {mix.stream_share:.0%} streamed; prompts {mix.prompt_bytes[0]}-{mix.prompt_bytes[1]} bytes; "
        f"answers {mix.answer_tokens[0]}-{mix.answer_tokens[1]} tokens",
        f"- upstream: JSON in {mix.latency_ms:g} ms, first token in {mix.ttft_ms:g} ms (medians, lognormal "
        f"sigma {mix.sigma:g}), then {mix.token_rate:g} tokens/s in events of {mix.chunk_tokens} tokens; "
        f"{mix.error_share:.1%} of attempts answered 500 or 529",
        f"- system: {run.settings['system']}",
        "",
        f"![latency, throughput, drain lag and memory over time]({plot_name})",
        "",
    ]
    return "\n".join(lines)


def _phase_lines(f: Figures) -> list[str]:
    """For a shape of several parts (a spike): the figures of each part apart."""
    points = f.run.shape.points
    parts = [(a, b) for (a, _), (b, _) in itertools.pairwise(points) if b > a]
    if f.run.closed or len(parts) < 2:
        return []
    records, plan = f.run.records, f.run.plan
    index, status = records["index"], records["status"]
    added_json = records["total"].astype(np.float64) * 1000 - plan.first_ms[index]
    added_first = records["ttfb"].astype(np.float64) * 1000 - plan.first_ms[index]
    lines = [
        "",
        "By part of the run (added ms; requests by planned time):",
        "",
        _row(
            ["seconds", "planned req/s", "answered 200", "JSON p50", "JSON p99", "first token p50", "first token p99"]
        ),
        _row(["---", *["---:"] * 6]),
    ]
    for start, end in parts:
        chosen = f.measured & (f.planned_at >= start) & (f.planned_at < end)
        json, first = added_json[chosen & ~f.stream], added_first[chosen & f.stream]
        json, first = json[~np.isnan(json)], first[~np.isnan(first)]
        cells = [f"{round(start, 1):g}-{round(end, 1):g}", f"{chosen.sum() / (end - start):.0f}"]
        cells.append(f"{(status[chosen] == 200).mean():.2%}" if chosen.any() else "")
        for values in (json, first):
            cells += [f"{np.percentile(values, q):.1f}" if len(values) else "" for q in (50, 99)]
        lines.append(_row(cells))
    return lines


def _process_lines(f: Figures) -> list[str]:
    if not f.usage:
        return []
    answered = max(1, f.counts["ok"])
    lines = [
        "",
        "## Processes",
        "",
        "CPU over the measured window; per request: divided by the requests answered 200 in it. "
        "Peak RSS: the kernel's high-water mark of the largest process of the role (summed roles: "
        "the largest sampled sum). PostgreSQL backends and redis-server may serve others on this machine.",
        "",
        _row(["process", "processes", "CPU s", "CPU ms / request", "peak RSS MB"])
        if not f.rss_growth
        else _row(["process", "processes", "CPU s", "CPU ms / request", "peak RSS MB", "RSS growth"]),
        _row(["---", *["---:"] * (4 if not f.rss_growth else 5)]),
    ]
    for usage in f.usage:
        cells: list[object] = [
            usage.role,
            usage.processes,
            f"{usage.cpu_seconds:.1f}",
            f"{usage.cpu_seconds * 1000 / answered:.3f}",
            f"{usage.peak_rss_mb:.0f}",
        ]
        if f.rss_growth:
            growth = f.rss_growth.get(usage.role)
            cells.append("" if growth is None else f"{growth:+.1%}")
        lines.append(_row(cells))
    web = [u for u in f.usage if u.role.startswith("web")]
    if web:
        cpu = sum(u.cpu_seconds for u in web)
        lines.append("")
        lines.append(f"Web processes together: {cpu * 1000 / answered:.3f} CPU ms per request answered 200.")
    return lines


def _num(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.1f}"


def describe(run: Run) -> str:
    if run.closed:
        return f"{run.settings['connections']} connections, closed loop, {traffic.seconds_to_text(run.shape.duration)}"
    return shape_text(run)


def shape_text(run: Run) -> str:
    points = run.shape.points
    rates = sorted({rate for _, rate in points})
    span = traffic.seconds_to_text(run.shape.duration)
    if run.closed:
        return f"closed loop, {run.settings['connections']} connections for {span}"
    if len(rates) == 1:
        return f"{rates[0]:g} req/s for {span}"
    ramp = points[2][0] - points[1][0]
    return f"{rates[0]:g} → {rates[-1]:g} → {rates[0]:g} req/s over {span}, ramps of {ramp:.1f} s"


def plot(f: Figures, path: Path) -> None:
    """Added latency percentiles and throughput per second, drain lag and memory over time."""
    import matplotlib  # noqa: PLC0415 - a dev dependency, loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    run = f.run
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True, height_ratios=[3, 2, 1.5, 1.5])
    seconds = np.arange(-math.ceil(run.settings["warmup"]), math.ceil(f.duration))
    _plot_latency(axes[0], f, seconds)
    axes[0].set_title(f"{run.profile}: {describe(run)} — {'PASS' if f.passed else 'FAIL'}")
    _plot_rates(axes[1], f, seconds)
    samples = run.probe.samples
    xs = [s.at - run.t0 for s in samples]
    if run.target == "gateway":
        axes[2].plot(xs, [s.drain_lag or 0.0 for s in samples], color="tab:purple", label="drain lag s")
        backlog = axes[2].twinx()
        backlog.plot(xs, [s.backlog for s in samples], color="tab:gray", linewidth=0.8)
        backlog.set_ylabel("events in stream (grey)", fontsize=8)
        axes[2].legend(fontsize=7, loc="upper left")
    axes[2].set_ylabel("drain lag s")
    for role in sorted({role for s in samples for role, _, _ in s.processes.values()}):
        axes[3].plot(xs, [sum(r for name, _, r in s.processes.values() if name == role) for s in samples], label=role)
    axes[3].set_ylabel("RSS MB")
    axes[3].set_xlabel("seconds from the start of the measured part (negative: warm-up)")
    axes[3].legend(fontsize=6, ncol=4, loc="upper left")
    for ax in axes:
        ax.axvline(0, color="black", linewidth=0.6)
        ax.axvline(f.duration, color="black", linewidth=0.6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_latency(ax: Any, f: Figures, seconds: np.ndarray) -> None:
    """Per planned second: the added latency's percentiles, the figures the checks judge."""
    records, plan = f.run.records, f.run.plan
    index = records["index"]
    total = records["total"].astype(np.float64)
    ttfb = np.where(np.isnan(records["ttfb"]), total, records["ttfb"].astype(np.float64))
    first = plan.first_ms[index].astype(np.float64) / 1000
    second = np.floor(f.planned_at).astype(np.int64)
    for name, values, chosen, style in (
        ("JSON total", total - first, ~f.stream, "-"),
        ("stream first token", ttfb - first, f.stream, "--"),
    ):
        keep = chosen & ~np.isnan(values)
        if not keep.any():
            continue
        # Sorted by second once, then sliced: an hour's run has millions of records.
        order = np.argsort(second[keep], kind="stable")
        by_second, sorted_values = second[keep][order], values[keep][order]
        edges = np.searchsorted(by_second, np.append(seconds, seconds[-1] + 1))
        per: dict[int, list[float]] = {q: [] for q in QUANTILES}
        for low, high in itertools.pairwise(edges):
            window = sorted_values[low:high]
            for q in QUANTILES:
                per[q].append(max(0.01, float(np.percentile(window, q)) * 1000) if len(window) else np.nan)
        for q, color in zip(QUANTILES, ("tab:green", "tab:orange", "tab:red"), strict=True):
            ax.plot(seconds, per[q], style, color=color, label=f"{name} p{q}", linewidth=1)
    for threshold in (P95_MS, P99_MS):
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_ylabel("ms added by the gateway\n(dotted: p95, p99 limits)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")


def _plot_rates(ax: Any, f: Figures, seconds: np.ndarray) -> None:
    """Per second: requests planned, answered 200 (by the second they finished) and failed."""
    run, records = f.run, f.run.records
    status = records["status"]
    start, size = int(seconds[0]), len(seconds)

    def per_second(at: np.ndarray) -> np.ndarray:
        at = np.floor(at).astype(np.int64) - start
        return np.bincount(at[(at >= 0) & (at < size)], minlength=size)

    finished = f.planned_at + np.nan_to_num(records["total"].astype(np.float64), nan=1e9)
    ax.step(seconds, per_second(f.planned_at), where="post", label="planned /s", color="tab:blue", linewidth=1)
    ax.step(seconds, per_second(finished[status == 200]), where="post", label="answered 200 /s", color="tab:green")
    ax.step(seconds, per_second(f.planned_at[status != 200]), where="post", label="failed /s", color="tab:red")
    if not run.closed:
        ax.plot(seconds, run.shape.rate(np.clip(seconds, 0, None)), ":", color="grey", label="target")
    ax.set_ylabel("requests / s")
    ax.legend(fontsize=7, loc="upper left")


def summary(f: Figures) -> dict[str, Any]:
    """The figures as JSON, for comparing runs with a script."""
    run = f.run
    return {
        "profile": run.profile,
        "target": run.target,
        "command": run.command,
        "started": run.started,
        "passed": f.passed,
        "duration_s": f.duration,
        "checks": [check.__dict__ for check in f.checks],
        "counts": f.counts,
        "latency_ms": f.latency,
        "added_ms": f.added,
        "errors": f.errors,
        "send_lag_ms": f.send_lag,
        "processes": [usage.__dict__ for usage in f.usage],
        "drain": f.drain,
        "rss_growth": f.rss_growth,
        "events_stored": run.events_stored,
        "upstream": run.upstream_stats,
        "generators": run.generators,
        "settings": run.settings,
    }
