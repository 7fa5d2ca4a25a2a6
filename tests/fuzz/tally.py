"""What became of a fuzz run's records, by category: the table the README shows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.fuzz.generate import CATEGORIES, DUPLICATE, PROCESSED, VALID, Case

LOST = "lost"  # neither dead-lettered, processed nor dropped as a duplicate


@dataclass
class Row:
    records: int = 0
    bad: int = 0
    dead_lettered: int = 0  # bad ones dead-lettered with the expected reason
    valid: int = 0  # expected processed (the first of a duplicate pair included)
    processed: int = 0
    duplicates: int = 0  # expected dropped as duplicate
    dropped: int = 0  # ... and so dropped
    wrong: int = 0  # anything else: another reason, lost, processed when bad


@dataclass
class Tally:
    rows: dict[str, Row] = field(default_factory=lambda: {c: Row() for c in (*CATEGORIES, VALID)})
    reasons: Counter[str] = field(default_factory=Counter)
    wrong: list[tuple[Case, str]] = field(default_factory=list)

    def add(self, case: Case, result: str) -> None:
        row = self.rows[case.category]
        row.records += 1
        ok = result == case.expect
        if case.expect == PROCESSED:
            row.valid += 1
            row.processed += ok
        elif case.expect == DUPLICATE:
            row.duplicates += 1
            row.dropped += ok
        else:
            row.bad += 1
            row.dead_lettered += ok
            if ok:
                self.reasons[result] += 1
        if not ok:
            row.wrong += 1
            self.wrong.append((case, result))

    @property
    def total(self) -> Row:
        out = Row()
        for row in self.rows.values():
            for name in vars(out):
                setattr(out, name, getattr(out, name) + getattr(row, name))
        return out

    def markdown(self, restarts: int | None = None) -> str:
        lines = [
            "| category | records | bad | dead-lettered with its reason | valid | processed "
            "| duplicates dropped | lost or wrong |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in [*self.rows.items(), ("total", self.total)]:
            dup = f"{r.dropped:,} of {r.duplicates:,}" if r.duplicates else "—"
            label = f"**{name}**" if name == "total" else name.replace("_", " ")
            lines.append(
                f"| {label} | {r.records:,} | {r.bad:,} | {r.dead_lettered:,} | {r.valid:,} "
                f"| {r.processed:,} | {dup} | {r.wrong:,} |"
            )
        reasons = ", ".join(f"`{k}` {v:,}" for k, v in sorted(self.reasons.items()))
        lines.append("")
        lines.append(f"Dead-letter reasons: {reasons}.")
        if restarts is not None:
            lines.append(f"Worker restarts: {restarts}.")
        return "\n".join(lines)
