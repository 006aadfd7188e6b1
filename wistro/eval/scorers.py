"""Scorers: ``f(sample, output) -> Score``. A score has a value (higher is better), passed, and a
rationale a person can read. Built-ins cover payloads, topics, order, latency and errors; a plain
function returning a ``Score``, a bool or a float is wrapped (a float passes at >= ``threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError

if TYPE_CHECKING:
    from wistro.eval.dataset import Sample
    from wistro.eval.results import SampleResult

__all__ = [
    "Score",
    "Scorer",
    "as_scorer",
    "emitted",
    "error_free",
    "event_count",
    "from_spec",
    "latency_budget",
    "not_emitted",
    "payload_equals",
    "scorer",
    "sequence",
    "step_latency",
    "step_not_ran",
    "step_output",
    "step_ran",
]


KINDS = ("outcome", "latency", "error", "custom")


@dataclass(frozen=True, slots=True)
class Score:
    """``value`` (higher is better) and ``passed``; both None when the scorer had nothing to
    judge (``Score.not_scored(reason)``), which is neither a pass nor a failure. A score of a
    quantity where lower is better (latency) also carries ``observed`` (e.g. ms) and
    ``rel_tolerance``: compare counts a pass that became a failure as a regression only when
    ``observed`` rose by more than that share."""

    value: float | None
    passed: bool | None
    rationale: str = ""
    observed: float | None = None
    rel_tolerance: float | None = None

    @classmethod
    def not_scored(cls, reason: str) -> Score:
        return cls(None, None, f"not scored: {reason}")

    @property
    def scored(self) -> bool:
        return self.value is not None or self.passed is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "value": self.value,
            "passed": self.passed,
            "rationale": self.rationale,
        }
        if self.observed is not None:
            d["observed"] = self.observed
            d["rel_tolerance"] = self.rel_tolerance
        return d


ScoreLike = Score | bool | float | int
ScoreFn = Callable[["Sample", "SampleResult"], ScoreLike]


def to_score(result: Any, threshold: float = 0.5) -> Score:
    if (
        result.__class__ is Score
        and result.value.__class__ is float
        and result.passed.__class__ is bool
    ):  # what the built-ins return: nothing to normalise
        return result
    if isinstance(result, Score):
        value = None if result.value is None else float(result.value)
        passed = None if result.passed is None else bool(result.passed)
        if value is not None and math.isnan(value):
            raise TypeError(f"a scorer returned a Score with value nan: {result!r}")
        if value is result.value and passed is result.passed:
            return result
        return Score(value, passed, str(result.rationale), result.observed, result.rel_tolerance)
    if isinstance(result, bool):
        return Score(1.0 if result else 0.0, result, "")
    if isinstance(result, int | float) and not math.isnan(float(result)):
        value = float(result)
        return Score(value, value >= threshold, "")
    raise TypeError(f"a scorer must return a Score, a bool or a number, not {result!r}")


def failed_run_reason(output: SampleResult) -> str:
    """Why a run failed, in one line: the sample's error, or its run's errors."""
    why = output.error or "; ".join(output.errors) or f"the run ended {output.status}"
    why = " ".join(why.split())
    return why if len(why) <= 300 else why[:297] + "..."


class Scorer:
    """A named scorer. ``scorer(sample, output)`` returns a ``Score``.

    ``kind``: ``outcome`` (judges the run's outputs), ``latency``, ``error`` or ``custom`` (a
    plain function). ``spec``: the command-line spec of a built-in (None for functions). A run
    that failed (``output.failed``: the sample did not run, or its run had errors) fails an
    ``outcome`` or ``custom`` scorer without calling it (value 0.0, the rationale says why),
    unless ``score_failed_runs=True``."""

    def __init__(
        self,
        name: str,
        fn: ScoreFn,
        threshold: float = 0.5,
        *,
        kind: str = "custom",
        spec: str | None = None,
        score_failed_runs: bool | None = None,
    ) -> None:
        if kind not in KINDS:
            raise WistroError(f"scorer {name!r}: unknown kind {kind!r}", hint=", ".join(KINDS))
        self.name = name
        self.fn = fn
        self.threshold = threshold
        self.kind = kind
        self.spec = spec
        self.score_failed_runs = (
            kind not in ("outcome", "custom") if score_failed_runs is None else score_failed_runs
        )

    def __call__(self, sample: Sample, output: SampleResult) -> Score:
        if not self.score_failed_runs and output.failed:
            return Score(0.0, False, f"the run failed: {failed_run_reason(output)}")
        return to_score(self.fn(sample, output), self.threshold)

    def renamed(self, name: str) -> Scorer:
        return Scorer(
            name,
            self.fn,
            self.threshold,
            kind=self.kind,
            spec=self.spec,
            score_failed_runs=self.score_failed_runs,
        )

    def info(self) -> dict[str, Any]:
        """What an eval's meta records of this scorer."""
        return {"name": self.name, "kind": self.kind, "spec": self.spec}

    def __repr__(self) -> str:
        return f"<Scorer {self.name} ({self.kind})>"


def as_scorer(obj: Scorer | ScoreFn | str) -> Scorer:
    """A ``Scorer`` from a scorer, a plain function (named after it), or a built-in spec."""
    if isinstance(obj, Scorer):
        return obj
    if isinstance(obj, str):
        return from_spec(obj)
    if callable(obj):
        name = getattr(obj, "__name__", None) or type(obj).__name__
        return Scorer(name if name != "<lambda>" else "lambda", obj)
    raise TypeError(f"not a scorer: {obj!r}")


def scorer(
    name: str | None = None, threshold: float = 0.5, *, score_failed_runs: bool = False
) -> Callable[[ScoreFn], Scorer]:
    """Decorator: ``@scorer("total_ok")`` names a function scorer and sets its pass threshold.
    ``score_failed_runs=True``: also call it for runs that failed (by default they fail it)."""

    def wrap(fn: ScoreFn) -> Scorer:
        return Scorer(name or fn.__name__, fn, threshold, score_failed_runs=score_failed_runs)

    return wrap


# ---------------------------------------------------------------- payload comparison
def _matches(key: str, path: str, names: Iterable[str]) -> bool:
    return any(n in (path, key) for n in names)


def diff_payload(
    expected: Any,
    got: Any,
    tolerance: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
    path: str = "",
) -> list[str]:
    """Differences between two payloads, one line each (empty: equal). Fields are matched by
    dotted path (``items.0.price``) or by their own name (``price``)."""
    tolerance = tolerance or {}
    ignore = tuple(ignore)
    where = path or "(payload)"
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(got), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if _matches(str(key), sub, ignore):
                continue
            if key not in got:
                out.append(f"{sub}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{sub}: unexpected {got[key]!r}")
            else:
                out += diff_payload(expected[key], got[key], tolerance, ignore, sub)
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: expected {len(expected)} items, got {len(got)}"]
        out = []
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            out += diff_payload(e, g, tolerance, ignore, f"{path}.{i}" if path else str(i))
        return out
    numbers = (int, float)
    if (
        isinstance(expected, numbers)
        and isinstance(got, numbers)
        and not isinstance(expected, bool)
        and not isinstance(got, bool)
    ):
        key = path.rsplit(".", 1)[-1]
        tol = next((t for n, t in tolerance.items() if n in (path, key)), 0.0)
        if abs(float(expected) - float(got)) <= tol:
            return []
        return [
            f"{where}: expected {expected!r}, got {got!r}"
            + (f" (tolerance {tol:g})" if tol else "")
        ]
    if expected != got or type(expected) is not type(got):
        return [f"{where}: expected {expected!r}, got {got!r}"]
    return []


# ---------------------------------------------------------------- built-ins: outcomes
def payload_equals(
    topic: str | None = None,
    expected: Any = None,
    *,
    tolerance: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
) -> Scorer:
    """A payload emitted on ``topic`` equals ``expected`` (default: the sample's ``expected``
    for that topic), up to ``tolerance={field: abs_tol}`` and ``ignore=[fields]``. Without a
    topic, every topic of the sample's expectations is checked (value: the fraction that match).
    A sample that expects nothing is not scored."""
    ignore = tuple(ignore)
    tol = dict(tolerance or {})

    def score(sample: Sample, output: SampleResult) -> Score:
        if topic is not None:
            wanted = {topic: expected if expected is not None else sample.expected.get(topic)}
            if wanted[topic] is None:
                return Score.not_scored(f"nothing expected on {topic}")
        else:
            wanted = sample.expected
            if not wanted:
                return Score.not_scored("the sample expects nothing")
        ok = 0
        notes: list[str] = []
        for t, exp in sorted(wanted.items()):
            got = output.payloads(t)
            if not got:
                notes.append(f"{t}: not emitted")
                continue
            diffs = [diff_payload(exp, g, tol, ignore) for g in got]
            if any(not d for d in diffs):
                ok += 1
            else:
                closest = min(diffs, key=len)
                notes.append(
                    f"{t}: " + "; ".join(closest[:3]) + (" ..." if len(closest) > 3 else "")
                )
        value = ok / len(wanted)
        return Score(value, ok == len(wanted), " | ".join(notes) or "payloads match")

    return Scorer(
        f"payload_equals({topic})" if topic else "payload_equals",
        score,
        kind="outcome",
        spec=f"payload_equals:{topic}" if topic else "payload_equals",
    )


def emitted(topic: str) -> Scorer:
    """An event was emitted on ``topic``."""

    def score(sample: Sample, output: SampleResult) -> Score:
        n = output.count(topic)
        return Score(float(n > 0), n > 0, f"{topic} emitted {n}x" if n else f"{topic} not emitted")

    return Scorer(f"emitted({topic})", score, kind="outcome", spec=f"emitted:{topic}")


def not_emitted(topic: str) -> Scorer:
    """No event was emitted on ``topic``."""

    def score(sample: Sample, output: SampleResult) -> Score:
        n = output.count(topic)
        return Score(
            float(n == 0), n == 0, f"{topic} emitted {n}x" if n else f"{topic} not emitted"
        )

    return Scorer(f"not_emitted({topic})", score, kind="outcome", spec=f"not_emitted:{topic}")


def sequence(topics: Iterable[str]) -> Scorer:
    """Events on ``topics`` occur in this order (others may come in between)."""
    wanted = list(topics)
    if not wanted:
        raise ValueError("sequence needs at least one topic")

    def score(sample: Sample, output: SampleResult) -> Score:
        i = 0
        n = len(wanted)
        for e in output.events:
            if i < n and e["topic"] == wanted[i] and not e.get("error"):
                i += 1
        if i == n:
            return Score(1.0, True, "in order")
        return Score(0.0, False, f"missing {wanted[i]!r} after {' > '.join(wanted[:i]) or 'start'}")

    return Scorer(
        f"sequence({'>'.join(wanted)})", score, kind="outcome", spec=f"sequence:{','.join(wanted)}"
    )


def event_count(
    topic: str, n: int | None = None, *, min: int | None = None, max: int | None = None
) -> Scorer:
    """Exactly ``n`` events were emitted on ``topic`` (the input counts), or between ``min`` and
    ``max`` (inclusive; either may be left out)."""
    if n is not None and (min is not None or max is not None):
        raise ValueError("give n, or min= and/or max=, not both")
    if n is None and min is None and max is None:
        raise ValueError("needs a count: n, min= or max=")
    lo, hi = (n, n) if n is not None else (min, max)
    for bound in (lo, hi):
        if bound is not None and (isinstance(bound, bool) or int(bound) != bound or bound < 0):
            raise ValueError(f"a count must be a whole number >= 0, got {bound!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min {lo} is more than max {hi}")
    if n is not None:
        want, name = f"{n}", f"event_count({topic}={n})"
    else:
        want = f"{lo if lo is not None else 0}..{hi if hi is not None else ''}"
        name = f"event_count({topic}={want})"

    def score(sample: Sample, output: SampleResult) -> Score:
        got = output.count(topic)
        ok = (lo is None or got >= lo) and (hi is None or got <= hi)
        return Score(float(ok), ok, f"{topic} emitted {got}x ({'' if ok else 'not '}{want})")

    spec = f"event_count:{topic}:" + (
        f"{n}" if n is not None else f"{lo if lo is not None else 0}-{hi if hi is not None else ''}"
    )
    return Scorer(name, score, kind="outcome", spec=spec)


# ---------------------------------------------------------------- built-ins: steps
_UNSET: Any = object()


def _field(payload: Any, path: str) -> Any:
    """The value at dotted ``path`` (``total``, ``items.0.price``) of a payload, or ``_UNSET``."""
    cur = payload
    for part in path.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                return _UNSET
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            i = int(part)
            if not -len(cur) <= i < len(cur):
                return _UNSET
            cur = cur[i]
        else:
            return _UNSET
    return cur


def step_output(
    step: str,
    field: str,
    expected: Any = None,
    *,
    equals: Any = _UNSET,
    tolerance: float = 0.0,
) -> Scorer:
    """A payload ``step`` emitted has ``field`` (a dotted path: ``total``, ``items.0.price``)
    equal to the expected value, numbers within ``tolerance`` (absolute). The expected value is
    ``equals=`` (any value, None included), else ``expected`` when not None, else what the step
    emitted in the sample's recorded run (``sample.events`` from that step), else the field in
    the sample's ``expected`` payload of a topic the step emitted. Nothing expected: not scored.
    """
    if not step or not field:
        raise ValueError("needs a step and a field: step_output(STEP, FIELD)")
    if equals is _UNSET and expected is not None:
        equals = expected
    tol = {field.rsplit(".", 1)[-1]: float(tolerance)} if tolerance else None

    def wanted(sample: Sample, output: SampleResult) -> Any:
        if equals is not _UNSET:
            return equals
        found = _UNSET
        for e in sample.events:
            if e.get("source") == step and not e.get("error"):
                v = _field(e.get("data"), field)
                if v is not _UNSET:
                    found = v
        if found is not _UNSET:
            return found
        for t in dict.fromkeys(output.step_topics(step)):
            if t in sample.expected:
                v = _field(sample.expected[t], field)
                if v is not _UNSET:
                    found = v
        return found

    def score(sample: Sample, output: SampleResult) -> Score:
        exp = wanted(sample, output)
        if exp is _UNSET:
            return Score.not_scored(f"nothing expected of {step}.{field}")
        if not output.step_spans(step):
            return Score(0.0, False, f"{step} did not run (expected {step}.{field} = {exp!r})")
        got = [v for v in (_field(p, field) for p in output.step_payloads(step)) if v is not _UNSET]
        if not got:
            return Score(0.0, False, f"{step} emitted no payload with {field}")
        diffs = [diff_payload(exp, g, tol, (), field) for g in got]
        if any(not d for d in diffs):
            return Score(1.0, True, f"{step}.{field} = {exp!r}")
        closest = min(diffs, key=len)
        return Score(0.0, False, f"{step}: " + "; ".join(closest[:3]))

    name = f"step_output({step}.{field})"
    if equals is not _UNSET:
        name = f"step_output({step}.{field}={equals!r})"
    spec = f"step_output:{step}.{field}" + ("" if equals is _UNSET else f"={_spec_value(equals)}")
    return Scorer(name, score, kind="outcome", spec=spec)


def _spec_value(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def step_ran(step: str) -> Scorer:
    """``step`` ran and (at least once) succeeded."""
    if not step:
        raise ValueError("needs a step name")

    def score(sample: Sample, output: SampleResult) -> Score:
        spans = output.step_spans(step)
        if any(s["status"] == "ok" for s in spans):
            return Score(1.0, True, f"{step} ran")
        if spans:
            return Score(0.0, False, f"{step} ran {len(spans)}x, never successfully")
        return Score(0.0, False, f"{step} did not run")

    return Scorer(f"step_ran({step})", score, kind="outcome", spec=f"step_ran:{step}")


def step_not_ran(step: str) -> Scorer:
    """``step`` was never invoked (not even an attempt that failed)."""
    if not step:
        raise ValueError("needs a step name")

    def score(sample: Sample, output: SampleResult) -> Score:
        n = len(output.step_spans(step))
        return Score(float(n == 0), n == 0, f"{step} ran {n}x" if n else f"{step} did not run")

    return Scorer(f"step_not_ran({step})", score, kind="outcome", spec=f"step_not_ran:{step}")


def _budget(ms: float, rel_tolerance: float) -> tuple[float, float]:
    ms, rel = float(ms), float(rel_tolerance)
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"a latency budget must be a positive number of ms, got {ms:g}")
    if not math.isfinite(rel) or rel < 0:
        raise ValueError(f"rel_tolerance must be >= 0, got {rel:g}")
    return ms, rel


def step_latency(step: str, budget_ms: float, rel_tolerance: float = 0.2) -> Scorer:
    """The time spent in ``step`` (its spans, every attempt, summed) is at most ``budget_ms``.
    A sample in which the step did not run is not scored. Records ``observed`` (ms) and
    ``rel_tolerance`` for compare."""
    if not step:
        raise ValueError("needs a step name")
    ms, rel = _budget(budget_ms, rel_tolerance)

    def score(sample: Sample, output: SampleResult) -> Score:
        spans = output.step_spans(step)
        if not spans:
            return Score.not_scored(f"{step} did not run")
        took = sum(s["end_ms"] - s["start_ms"] for s in spans)
        ok = took <= ms
        return Score(
            float(ok), ok, f"{step} {took:.1f} ms {'<=' if ok else '>'} {ms:g} ms", took, rel
        )

    return Scorer(
        f"step_latency({step},{ms:g}ms)", score, kind="latency", spec=f"step_latency:{step}:{ms:g}"
    )


# ---------------------------------------------------------------- built-ins: latency, errors
def latency_budget(ms: float, rel_tolerance: float = 0.2) -> Scorer:
    """The whole run took at most ``ms`` milliseconds. Records ``observed`` (ms) and
    ``rel_tolerance`` for compare. A sample that did not run is not scored; one that timed out
    fails."""
    ms, rel = _budget(ms, rel_tolerance)

    def score(sample: Sample, output: SampleResult) -> Score:
        took = output.latency_ms
        if took is None:
            if output.status == "not_run":
                return Score.not_scored("the sample did not run")
            return Score(0.0, False, f"no latency recorded: {failed_run_reason(output)}")
        ok = took <= ms
        return Score(float(ok), ok, f"{took:.1f} ms {'<=' if ok else '>'} {ms:g} ms", took, rel)

    return Scorer(f"latency_budget({ms:g}ms)", score, kind="latency", spec=f"latency_budget:{ms:g}")


def error_free() -> Scorer:
    """The run had no failed step, refused emit or dead letter, and the sample ran."""

    def score(sample: Sample, output: SampleResult) -> Score:
        if output.error or output.errors:
            return Score(0.0, False, failed_run_reason(output))
        return Score(1.0, True, "no errors")

    return Scorer("error_free", score, kind="error", spec="error_free")


BUILTINS: dict[str, Callable[..., Scorer]] = {
    "payload_equals": payload_equals,
    "emitted": emitted,
    "not_emitted": not_emitted,
    "sequence": sequence,
    "event_count": event_count,
    "latency_budget": latency_budget,
    "error_free": error_free,
    "step_output": step_output,
    "step_ran": step_ran,
    "step_not_ran": step_not_ran,
    "step_latency": step_latency,
}

SPEC_FORMS = {
    "error_free": "error_free",
    "payload_equals": "payload_equals[:TOPIC]",
    "emitted": "emitted:TOPIC",
    "not_emitted": "not_emitted:TOPIC",
    "sequence": "sequence:A,B,C",
    "event_count": "event_count:TOPIC:N (or :MIN-MAX, :MIN-, :-MAX)",
    "latency_budget": "latency_budget:MS",
    "step_output": "step_output:STEP.FIELD[=JSON]",
    "step_ran": "step_ran:STEP",
    "step_not_ran": "step_not_ran:STEP",
    "step_latency": "step_latency:STEP:MS",
}


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"a count must be a whole number >= 0, got {text!r}")
    return int(text)


def _from_spec(name: str, arg: str) -> Scorer:
    if name == "error_free":
        if arg:
            raise ValueError("takes no argument")
        return error_free()
    if name == "payload_equals":
        return payload_equals(arg or None)
    if not arg:
        raise ValueError("needs an argument")
    if name == "sequence":
        topics = [t.strip() for t in arg.split(",")]
        if not all(topics):
            raise ValueError("needs topics separated by commas, none empty")
        return sequence(topics)
    if name == "latency_budget":
        return latency_budget(_number(arg, "the budget (ms)"))
    if name == "step_latency":
        step, sep, ms = arg.rpartition(":")
        if not sep or not step:
            raise ValueError("needs a step and a budget in ms")
        return step_latency(step, _number(ms, "the budget (ms)"))
    if name == "event_count":
        topic, sep, count = arg.rpartition(":")
        if not sep or not topic or not count:
            raise ValueError("needs a topic and a count")
        if "-" in count:
            lo, _, hi = count.partition("-")
            if not lo and not hi:
                raise ValueError("needs at least one bound: MIN-MAX, MIN- or -MAX")
            return event_count(
                topic, min=_count(lo) if lo else None, max=_count(hi) if hi else None
            )
        return event_count(topic, _count(count))
    if name == "step_output":
        target, eq, raw = arg.partition("=")
        step, dot, field = target.partition(".")
        if not dot or not step or not field:
            raise ValueError("needs a step and a field: STEP.FIELD")
        if not eq:
            return step_output(step, field)
        import json

        try:
            value = json.loads(raw)
        except ValueError:
            value = raw  # a bare word: a string
        return step_output(step, field, equals=value)
    return BUILTINS[name](arg)


def from_spec(spec: str) -> Scorer:
    """A built-in from a command-line spec: ``error_free``, ``payload_equals[:TOPIC]``,
    ``emitted:TOPIC``, ``not_emitted:TOPIC``, ``sequence:A,B,C``, ``event_count:TOPIC:N``
    (``:MIN-MAX``, ``:MIN-``, ``:-MAX``), ``latency_budget:MS``, ``step_output:STEP.FIELD``
    (``=JSON``: an explicit value), ``step_ran:STEP``, ``step_not_ran:STEP``,
    ``step_latency:STEP:MS``. A bad spec raises a ``WistroError`` naming it."""
    name, _, arg = str(spec).partition(":")
    name, arg = name.strip(), arg.strip()
    if name not in BUILTINS:
        raise WistroError(
            f"unknown scorer {name!r} in spec {spec!r}",
            hint=f"built-ins: {', '.join(SPEC_FORMS.values())}",
        )
    try:
        return _from_spec(name, arg)
    except ValueError as e:
        raise WistroError(f"scorer spec {spec!r}: {e}", hint=f"{SPEC_FORMS[name]}") from None


def default_scorers() -> list[Scorer]:
    """What an eval scores when no scorer is given: expectations met, and no errors."""
    return [payload_equals(), error_free()]


def kind_of(name: str) -> str:
    """The kind of a scorer known only by name (evals stored before kinds were recorded)."""
    base = name.split("#", 1)[0].split("(", 1)[0]
    if base in ("latency_budget", "step_latency", "latency_ms"):
        return "latency"
    if base == "error_free":
        return "error"
    if base in BUILTINS:
        return "outcome"
    return "custom"
