"""`python -m bench.chaos`: a chaos run on a broker of its own, printed as a table.

python -m bench.chaos --events 20000 --kills 6 --seed 1 [--broker-bounce 0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson

from bench.chaos.run import ChaosConfig, ChaosResult, run
from bench.common import BENCH_DIR, bench_broker, quiet_kafka_logs, run_id
from engage_stream.config import Settings

BROKER_PORT = 28592
WEB_PORT = 28600


def table(result: ChaosResult) -> str:
    c = result.counts
    head = (
        "against",
        "events",
        "kills",
        "recoveries",
        "lost",
        "divergent",
        "duplicates",
        "resends",
        "records differing",
        "of them same-instant reversals",
    )
    rows = [head]
    against = [("uninterrupted run", result.vs_reference), ("replay", result.vs_replay)]
    for name, cmp in against:
        rows.append(
            (
                name,
                f"{result.events:,}",
                str(c.kills),
                str(c.recoveries),
                f"{cmp.lost:,}",
                f"{cmp.divergent:,}",
                f"{cmp.duplicates:,}",
                f"{cmp.resends:,}",
                f"{cmp.records_differing:,}",
                f"{cmp.same_instant:,}",
            )
        )
    if result.control is not None:
        k = result.control
        rows.append(
            (
                "(control: uninterrupted vs uninterrupted)",
                f"{result.events:,}",
                "0",
                "0",
                f"{k.lost:,}",
                f"{k.divergent:,}",
                f"{k.duplicates:,}",
                f"{k.resends:,}",
                f"{k.records_differing:,}",
                f"{k.same_instant:,}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def details(result: ChaosResult) -> str:
    c = result.counts
    out = [
        f"seed {result.config.seed}, {result.config.profiles:,} profiles, "
        f"{len(result.steps)} steps",
        f"kills {c.kills} (in startup {c.startup_kills}, in recovery {c.recovery_kills}, "
        f"of those seen recovering {c.recovering_seen}; inside a checkpoint "
        f"{c.checkpoint_kills}), local state deleted {c.wipes}, "
        f"second worker joined {c.joins} / left {c.leaves}, broker bounces {c.broker_bounces}",
        f"change records: uninterrupted {result.reference_changes:,}, "
        f"chaos {result.chaos_changes:,}",
        "seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()),
    ]
    for name, cmp in (("uninterrupted", result.vs_reference), ("replay", result.vs_replay)):
        out.append(
            f"vs {name}: change records only there {cmp.only_in_baseline:,}, only in the chaos "
            f"run {cmp.only_in_run:,}, with another body {cmp.other_body:,}"
        )
        out.extend(f"  {e}" for e in cmp.examples)
    out.append("fault log:")
    out.extend(f"  {line}" for line in c.log)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=ChaosConfig.events)
    p.add_argument("--profiles", type=int, default=ChaosConfig.profiles)
    p.add_argument(
        "--kills", type=int, default=ChaosConfig.kills, help="at least this many SIGKILLs"
    )
    p.add_argument("--seed", type=int, default=ChaosConfig.seed)
    p.add_argument("--pause-min", type=float, default=ChaosConfig.pause_s[0])
    p.add_argument("--pause-max", type=float, default=ChaosConfig.pause_s[1])
    p.add_argument("--second-worker", type=float, default=ChaosConfig.second_worker)
    p.add_argument("--broker-bounce", type=float, default=0.2, help="chance after each crash")
    p.add_argument(
        "--control", action="store_true", help="a second uninterrupted run, compared with the first"
    )
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--broker-port", type=int, default=BROKER_PORT)
    p.add_argument("--web-port", type=int, default=WEB_PORT, help="and the next two")
    args = p.parse_args(argv)
    cfg = ChaosConfig(
        events=args.events,
        profiles=args.profiles,
        seed=args.seed,
        kills=args.kills,
        pause_s=(args.pause_min, args.pause_max),
        second_worker=args.second_worker,
        broker_bounce=args.broker_bounce,
        control=args.control,
    )
    quiet_kafka_logs()
    tag = run_id()
    work = BENCH_DIR / f"chaos-{tag}"
    with bench_broker(port=args.broker_port) as broker_cfg:
        base = Settings(
            broker=broker_cfg.bootstrap,
            app_id=f"chaos-{tag}",
            partitions=args.partitions,
            web_port=args.web_port,
        )
        result = run(base, cfg, Path(work), broker_cfg)
    (work / "result.json").write_bytes(
        orjson.dumps(dataclasses.asdict(result), option=orjson.OPT_INDENT_2)
    )
    print(table(result))
    print(details(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
