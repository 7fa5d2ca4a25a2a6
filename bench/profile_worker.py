"""Where the worker spends its time: py-spy on the real worker draining the bench backlog.

Why a separate pass: a sampler attached to the measured run would steal one of the
machine's two cores from it; here a fresh worker (new app id, so a new consumer group
re-reads the same input topics) is sampled for a fixed time while it works through the
backlog, and the throughput figures come from the unprofiled run.

Output: the raw collapsed stacks (var/bench/profile-<run>.txt, for flamegraph tools) and
three tables — self time by function, inclusive time of engage_stream functions, and self
time by package. Percentages are of samples in which the worker was running Python (py-spy
leaves idle samples out by default), so they add up to where the CPU went.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, say, wait_until
from bench.e2e import BenchWorker, applied_count, state_dir, with_app
from engage_stream.config import Settings


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


def _frame(raw: str) -> tuple[str, str]:
    """'func (pkg/mod.py:123)' → ('func (pkg/mod.py)', package); py-spy already writes
    paths relative to sys.path, so the first component is the package."""
    name, _, loc = raw.rpartition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    top = path.split("/", 1)[0].removesuffix(".py")
    if top == "engage_stream" or top == "bench":
        pkg = top
    elif top in sys.stdlib_module_names or top.startswith("<frozen"):
        pkg = "stdlib:" + top
    elif path.startswith("/"):
        pkg = "other"
    else:
        pkg = top
    return f"{name} ({path})", pkg


_ENTRY = ("(engage_stream/cli.py)", "(engage_stream/__main__.py)")  # always 100 %


def summarise(raw_path: Path, top: int = 20) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    incl_engage: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        leaf, pkg = frames[-1]
        self_time[leaf] += n
        by_package[pkg] += n
        for name in {f for f, p in frames if p == "engage_stream" and not f.endswith(_ENTRY)}:
            incl_engage[name] += n

    def table(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self": table(self_time),
        "engage_inclusive": table(incl_engage),
        "packages": table(by_package),
    }


def profile(settings: Settings, seconds: float, tag: str, rate: int = 200) -> dict[str, Any]:
    """Sample a fresh worker for `seconds` while it drains the input already in the topics."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy not installed (pip install py-spy)"}
    settings = with_app(settings, "prof")
    raw = BENCH_DIR / f"profile-{tag}.txt"
    with BenchWorker(settings, f"{settings.app_id}") as worker:
        worker.spawn()
        worker.wait_web(timeout=120)
        wait_until(lambda: applied_count(worker.metrics()) > 0, 120, "the worker to start applying")
        start = applied_count(worker.metrics())
        t0 = time.monotonic()
        say(f"profiling the worker with py-spy for {seconds:.0f}s")
        proc = subprocess.run(
            [
                exe,
                "record",
                "-p",
                str(worker.pid),
                "-d",
                str(int(seconds)),
                "-r",
                str(rate),
                "--nonblocking",
                "-f",
                "raw",
                "-o",
                str(raw),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        elapsed = time.monotonic() - t0
        applied = applied_count(worker.metrics()) - start
    with contextlib.suppress(OSError):
        shutil.rmtree(state_dir(settings).parent)
    if proc.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {proc.stderr.strip()[-500:]}"}
    out = summarise(raw)
    out["seconds"] = round(elapsed, 1)
    out["events_while_sampled"] = applied
    out["events_per_s_while_sampled"] = round(applied / elapsed) if elapsed else None
    out["busy_share"] = round(out["samples"] / (rate * seconds), 2)
    out["rate"] = rate
    out["raw_stacks"] = str(raw)
    return out


def format_profile(p: dict[str, Any]) -> str:
    if "skipped" in p:
        return f"profile skipped: {p['skipped']}"
    lines = [
        f"py-spy: {p['samples']:,} non-idle samples over {p['seconds']}s "
        f"({100 * p['busy_share']:.0f}% of the {p.get('rate', 200)} Hz ticks; "
        f"{p['events_per_s_while_sampled']:,} events/s while sampled); raw stacks: "
        f"{p['raw_stacks']}",
        "  self time by package:",
    ]
    lines += [f"    {pct:5.1f}%  {name}" for name, pct in p["packages"][:10]]
    lines.append("  self time, top functions:")
    lines += [f"    {pct:5.1f}%  {name}" for name, pct in p["self"]]
    lines.append("  inclusive time, engage_stream functions:")
    lines += [f"    {pct:5.1f}%  {name}" for name, pct in p["engage_inclusive"]]
    return "\n".join(lines)
