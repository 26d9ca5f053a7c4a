"""What the load is: when each request is sent (the timetable) and what it asks for (the mix).

Everything is drawn up front from one seeded generator, so a run is reproducible and the
generator processes only look things up while they send. Each request carries its
instructions to the fake upstream inside its prompt (``[fake id=.. tokens=.. first_ms=..]``):
the gateway forwards the prompt untouched, so the upstream knows how long this request's
answer must be and when its first byte is due, and the report can subtract exactly that
from what the client measured (the latency the gateway added).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import orjson

MODEL = "gpt-4o-mini"  # the public model bench/seed.py routes to the fake upstream
CHARS_PER_TOKEN = 4  # the fake upstream's answers are plain ASCII, four characters a token
# Prompt filler: readable ASCII without quotes or backslashes, so no JSON escaping is needed.
FILLER = (
    "Summarise the following notes for the weekly report and keep every figure exact. "
    "The quarter closed with steady demand, two late shipments and one new supplier. "
) * 64

# The named mixes; --stream-share overrides the share they set.
MIXES = {"chat": 0.2, "json": 0.0, "stream": 1.0}


@dataclass(frozen=True)
class Mix:
    """The traffic: how many requests stream, how big prompts and answers are, how the
    upstream behaves. Times are in milliseconds, rates in tokens per second."""

    stream_share: float = MIXES["chat"]
    prompt_bytes: tuple[int, int] = (1000, 4000)  # uniform between the two
    answer_tokens: tuple[int, int] = (200, 800)  # uniform between the two
    latency_ms: float = 50.0  # a JSON answer's upstream time: lognormal around this median
    ttft_ms: float = 200.0  # a stream's time to first token: lognormal around this median
    sigma: float = 0.5  # the lognormals' shape (0: every request takes the median exactly)
    token_rate: float = 100.0  # a stream's tokens per second after the first
    chunk_tokens: int = 16  # tokens per SSE event (1 is what OpenAI sends; it costs the most)
    error_share: float = 0.02  # upstream attempts answered 500 or 529, drawn per attempt

    def stream_seconds(self, tokens: np.ndarray) -> np.ndarray:
        """Upstream time from the first event to the last, given each answer's tokens."""
        events = np.ceil(tokens / self.chunk_tokens)
        return (events - 1) * (self.chunk_tokens / self.token_rate)


@dataclass(frozen=True)
class Shape:
    """The offered rate over time: straight lines between (second, requests per second) points."""

    points: tuple[tuple[float, float], ...]

    @property
    def duration(self) -> float:
        return self.points[-1][0]

    def rate(self, t: np.ndarray) -> np.ndarray:
        xs, ys = zip(*self.points, strict=True)
        return np.interp(t, xs, ys)

    def mean_rate(self) -> float:
        xs, ys = zip(*self.points, strict=True)
        return float(np.trapezoid(ys, xs) / self.duration)


def steady(*, rate: float, duration: float) -> Shape:
    return Shape(((0.0, rate), (duration, rate)))


def spike(*, rate: float, duration: float, factor: float = 3.0, ramp: float = 10.0) -> Shape:
    """Baseline for a quarter of the run, up to ``factor`` times within ``ramp`` seconds (at
    most a sixth of the run), held, down as fast, baseline again for the last quarter."""
    ramp = min(ramp, duration / 6)
    up = duration / 4
    hold = max(0.0, duration / 2 - 2 * ramp)
    down = up + ramp + hold
    peak = rate * factor
    return Shape(((0.0, rate), (up, rate), (up + ramp, peak), (down, peak), (down + ramp, rate), (duration, rate)))


@dataclass
class Plan:
    """Every request of a run, in send order. ``send_at`` is seconds from the start of the
    measured part: requests of the warm-up have negative times and are left out of the figures."""

    send_at: np.ndarray  # float64 seconds
    stream: np.ndarray  # bool
    prompt_bytes: np.ndarray  # int32
    tokens: np.ndarray  # int32: the answer's length in tokens
    first_ms: np.ndarray  # float32: the upstream's time to its first byte (JSON: to the whole answer)
    upstream_ms: np.ndarray  # float32: the upstream's time to its last byte

    def __len__(self) -> int:
        return len(self.send_at)

    def save(self, path: Path) -> None:
        np.savez(path, **{name: getattr(self, name) for name in FIELDS})

    @classmethod
    def load(cls, path: Path) -> Plan:
        with np.load(path) as data:
            return cls(*(data[name] for name in FIELDS))


FIELDS = [f.name for f in fields(Plan)]


def arrivals(shape: Shape, *, warmup: float, poisson: bool, rng: np.random.Generator) -> np.ndarray:
    """Send times for the shape, preceded by ``warmup`` seconds at its first rate.

    The n-th request goes where the cumulative offered load reaches n (uniform), or a
    running sum of exponential gaps (Poisson), so the rate follows the shape either way.
    """
    step = 0.001 if shape.duration <= 900 else 0.005
    t = np.arange(-warmup, shape.duration + step, step)
    rate = shape.rate(np.clip(t, 0, None))
    cumulative = np.concatenate(([0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * step)))
    total = cumulative[-1]
    if poisson:
        marks = np.cumsum(rng.exponential(1.0, size=int(total * 1.1) + 100))
        marks = marks[marks < total]
    else:
        marks = np.arange(0.5, total, 1.0)
    return np.interp(marks, cumulative, t)


def plan_draw(shape: Shape, mix: Mix, *, warmup: float, poisson: bool, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    send_at = arrivals(shape, warmup=warmup, poisson=poisson, rng=rng)
    n = len(send_at)
    stream = rng.random(n) < mix.stream_share
    prompt = rng.integers(mix.prompt_bytes[0], mix.prompt_bytes[1], endpoint=True, size=n).astype(np.int32)
    tokens = rng.integers(mix.answer_tokens[0], mix.answer_tokens[1], endpoint=True, size=n).astype(np.int32)
    median = np.where(stream, mix.ttft_ms, mix.latency_ms)
    # Lognormal around the median, cut at ten times it: a fake upstream need not model outages.
    first = np.minimum(median * np.exp(mix.sigma * rng.standard_normal(n)), 10 * median).astype(np.float32)
    last = np.where(stream, first + 1000 * mix.stream_seconds(tokens.astype(np.float64)), first)
    return Plan(send_at, stream, prompt, tokens, first, last.astype(np.float32))


def directive(request_id: int, tokens: int, first_ms: float) -> str:
    return f"[fake id={request_id} tokens={tokens} first_ms={first_ms:.1f}]"


def body(plan: Plan, index: int, request_id: int) -> bytes:
    """The chat request for the plan's request ``index``: a short system prompt and a user
    message of the planned size, which starts with the upstream's instructions."""
    head = directive(request_id, int(plan.tokens[index]), float(plan.first_ms[index])) + " "
    size = max(0, int(plan.prompt_bytes[index]) - len(head))
    start = (index * 97) % (len(FILLER) // 2)
    request: dict[str, object] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a careful assistant."},
            {"role": "user", "content": head + FILLER[start : start + size]},
        ],
        "max_tokens": 1024,
        "temperature": 0.2,
    }
    if plan.stream[index]:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return orjson.dumps(request)


def seconds_to_text(seconds: float) -> str:
    if seconds >= 60 and math.isclose(seconds % 60, 0):
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"
