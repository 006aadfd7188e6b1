"""The traffic split (``wistro.versions.split.Split``, weighted rendezvous hashing): how exact,
how sticky, and what ``choose()`` costs, each figure next to a baseline of the same run.

    .venv/bin/python bench/bench_traffic_split.py              # 100,000 keys, 5 timing runs
    .venv/bin/python bench/bench_traffic_split.py --keys 20000 --runs 3   # quicker

1. **Accuracy**: ``--keys`` sticky keys (``customer-0`` ..) through splits of 2, 3 and 10
   versions with uneven weights; the largest gap between a version's observed share and its
   weight, in percentage points. Baselines: a fresh random draw per key (the sampling noise
   floor; not sticky at all) and *range buckets* (the key's 64-bit BLAKE2b as a point in [0, 1),
   the versions' weights laid end to end over it in version order: the usual percent bucketing).
2. **Stickiness**: the share of keys that change version when the weights change, next to the
   theoretical minimum (the total variation distance of the two splits: half the sum of the
   changes in share), and when one version loses its live workers (minimum: its own share); as
   ratios to the minimum. The split also checks that a version going away moves no other key.
3. **Cost**: ``choose(key)`` per call (distinct 32-hex trace ids, as at trace roots) for 2, 3 and
   10 versions, with and without ``live``, and ``key_of`` + ``choose`` on a payload with the
   sticky field; next to ``hashlib.blake2b(key.encode()).digest()`` of the same keys timed in the
   same run (median of ``--runs``; the ratio is the median of the per-run ratios).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from wistro.versions.split import Split  # noqa: E402

Weights = dict[str, float]
TEN = {f"v{i:02}": float(i) for i in range(1, 11)}
# name, weights, the weights after a change, the version that goes away
CASES: list[tuple[str, Weights, Weights, str]] = [
    ("2 versions", {"v1": 50, "v2": 50}, {"v1": 25, "v2": 75}, "v1"),
    ("3 versions", {"v1": 10, "v2": 25, "v3": 65}, {"v1": 20, "v2": 30, "v3": 50}, "v2"),
    ("10 versions", TEN, {**TEN, "v01": 6.0, "v10": 5.0}, "v05"),
]


def norm(weights: Weights) -> Weights:
    total = sum(weights.values())
    return {v: w / total for v, w in weights.items()}


def split_router(weights: Weights, live: set[str] | None = None) -> Callable[[str], str | None]:
    split = Split.parse(weights)
    return lambda key: split.choose(key, live)


def range_router(weights: Weights, live: set[str] | None = None) -> Callable[[str], str | None]:
    alive = {v: w for v, w in sorted(weights.items()) if live is None or v in live}
    ends, acc = [], 0.0
    for version, share in norm(alive).items():
        acc += share
        ends.append((acc, version))

    def route(key: str) -> str | None:
        point = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) / 2.0**64
        return next((v for end, v in ends if point < end), ends[-1][1])

    return route


def random_router(weights: Weights, live: set[str] | None = None) -> Callable[[str], str | None]:
    alive = sorted(v for v in weights if live is None or v in live)
    rng, shares = random.Random(), [weights[v] for v in alive]
    return lambda key: rng.choices(alive, shares)[0]


ROUTERS = {"split": split_router, "range buckets": range_router, "random draw": random_router}


def max_deviation(choices: Sequence[str | None], weights: Weights) -> float:
    counts = Counter(choices)
    return max(abs(100 * counts[v] / len(choices) - 100 * p) for v, p in norm(weights).items())


def moved(a: Sequence[str | None], b: Sequence[str | None]) -> float:
    return 100 * sum(x != y for x, y in zip(a, b, strict=True)) / len(a)


def quality(keys: list[str]) -> None:
    acc, change, down = [], [], []
    for name, before, after, gone in CASES:
        live = set(before) - {gone}
        p, q = norm(before), norm(after)
        minimum = 50 * sum(abs(p[v] - q[v]) for v in before)
        got: dict[str, tuple[float, float, float]] = {}
        for label, make in ROUTERS.items():
            first, second, third = (
                list(map(route, keys)) for route in (make(before), make(after), make(before, live))
            )
            got[label] = (max_deviation(first, before), moved(first, second), moved(first, third))
            if label == "split":  # a version going away moves its own keys and no other
                assert all(a == b for a, b in zip(first, third, strict=True) if a != gone)
        acc.append((name, *(got[r][0] for r in ROUTERS)))
        change.append((name, minimum, *(got[r][1] for r in ROUTERS)))
        down.append((name, gone, 100 * p[gone], got["split"][2], got["range buckets"][2]))

    n = f"{len(keys):,}"
    print(f"\n1. accuracy over {n} keys: max |observed share - weight|, percentage points")
    print(f"{'case':<13}{'split':>8}{'random draw':>13}{'range buckets':>15}")
    for name, s, r, b in acc:
        print(f"{name:<13}{s:>8.2f}{r:>13.2f}{b:>15.2f}")

    print(f"\n2a. weight change, % of {n} keys moved (x the minimum)")
    print(f"{'case':<13}{'minimum':>9}{'split':>15}{'range buckets':>17}{'random draw':>17}")
    for name, minimum, s, b, r in change:
        cells = "".join(f"{f'{x:.2f} ({x / minimum:.2f}x)':>{w}}" for x, w in [(s, 15), (b, 17)])
        print(f"{name:<13}{minimum:>9.2f}{cells}{f'{r:.2f} ({r / minimum:.2f}x)':>17}")
    print("    2 versions: 50/50 -> 25/75; 3: 10/25/65 -> 20/30/50; 10: 1..10 with v01 6, v10 5")

    print(f"\n2b. one version goes away (live without it), % of {n} keys moved (x the minimum)")
    print(f"{'case':<13}{'gone':>6}{'minimum':>9}{'split':>15}{'range buckets':>17}")
    for name, gone, minimum, s, b in down:
        cells = "".join(f"{f'{x:.2f} ({x / minimum:.2f}x)':>{w}}" for x, w in [(s, 15), (b, 17)])
        print(f"{name:<13}{gone:>6}{minimum:>9.2f}{cells}")


def per_call(fn: Callable[[str], object], keys: list[str]) -> float:
    t0 = time.perf_counter()
    for key in keys:
        fn(key)
    return (time.perf_counter() - t0) / len(keys) * 1e9


def cost(calls: int, runs: int) -> None:
    keys = [os.urandom(16).hex() for _ in range(calls)]
    blake2b = hashlib.blake2b

    def baseline(key: str) -> bytes:
        return blake2b(key.encode()).digest()

    cases: list[tuple[str, Callable[[str], object]]] = []
    for name, weights, _, gone in CASES:
        split = Split.parse(weights)
        live = frozenset(weights) - {gone}
        cases.append((name, split.choose))
        cases.append((f"{name}, live", lambda k, s=split, lv=live: s.choose(k, lv)))
    sticky = Split.parse({**CASES[1][1], "sticky": "customer_id"})
    payloads = {k: {"customer_id": k, "amount_cents": 1200} for k in keys}
    cases.append(
        ("3 versions, key_of+choose", lambda k: sticky.choose(sticky.key_of(payloads[k], k)))
    )

    rows = []
    for name, fn in cases:
        per_call(fn, keys[:2000])  # warm-up
        mine, base, ratios = [], [], []
        for r in range(runs):
            pair = [(fn, mine), (baseline, base)]
            for f, out in pair if r % 2 == 0 else pair[::-1]:  # alternate which goes first
                out.append(per_call(f, keys))
            ratios.append(mine[-1] / base[-1])
        rows.append(
            (name, statistics.median(mine), statistics.median(base), statistics.median(ratios))
        )

    print(
        f"\n3. cost per call, ns, {calls:,} distinct trace ids, median of {runs} runs, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'case':<28}{'choose':>9}{'blake2b':>9}{'ratio':>8}")
    for name, mine_ns, base_ns, ratio in rows:
        print(f"{name:<28}{mine_ns:>9.0f}{base_ns:>9.0f}{ratio:>8.2f}")
    print(
        "    blake2b = hashlib.blake2b(key.encode()).digest() of the same keys, same run; "
        "live = every version but the one of 2b"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--keys", type=int, default=100_000, help="keys for accuracy and stickiness")
    ap.add_argument("--calls", type=int, default=20_000, help="calls per timing run")
    ap.add_argument("--runs", type=int, default=5, help="timing runs; median")
    args = ap.parse_args()
    t0 = time.perf_counter()
    quality([f"customer-{i}" for i in range(args.keys)])
    cost(args.calls, args.runs)
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
