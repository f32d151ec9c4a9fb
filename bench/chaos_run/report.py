"""The chaos run's table: both runs side by side, then what was not right."""
from __future__ import annotations

from bench.chaos_run.batch import VENDORS, Batch
from bench.chaos_run.verdict import Report


def print_reports(batch: Batch, reports: list[Report]) -> None:
    width = 48
    print(f"\nchaos run ({batch.name} batch): " + "; ".join(o.label for o in reports[0].outcomes))
    for report in reports:
        for line in report.chaos:
            print(f"  {report.title}: {line}")
    print("\n" + "".ljust(width) + "".join(r.title.rjust(12) for r in reports))
    total = len(reports[0].outcomes)
    rows = [("jobs right", [f"{r.count('right')}/{total}" for r in reports])]
    rows += [(verdict, [str(r.count(verdict)) for r in reports]) for verdict in ("failed", "unfinished", "lost")]
    rows.append(("duplicate vendor side effects", [str(r.duplicate_total) for r in reports]))
    for vendor in VENDORS:
        for kind in reports[0].duplicates[vendor]:
            rows.append((f"  {vendor}: {kind}"[:width], [str(r.duplicates[vendor][kind]) for r in reports]))
    rows.append(("held after the end", [str(sum(r.left_held.values())) for r in reports]))
    rows.append(("processes exited unasked", [str(sum(r.exited.values())) for r in reports]))
    rows.append(("event streams not followed to the end", [str(len(r.streams_cut)) for r in reports]))
    rows.append(("time to finish (s)", [f"{r.seconds:.0f}" for r in reports]))
    if len(reports) == 2:
        rows.append(("ratio chaos/baseline", ["", f"{reports[1].seconds / reports[0].seconds:.2f}"]))
    for name, values in rows:
        print(name.ljust(width) + "".join(v.rjust(12) for v in values))
    for report in reports:
        for what, n in report.left_held.items():
            print(f"  {report.title}: held after the end: {n} {what}")
        for name, n in report.exited.items():
            print(f"  {report.title}: {name} exited unasked {n} time(s) (the stack started it again)")
        for label, problem in report.streams_cut.items():
            print(f"  {report.title}: {label}: {problem}")
        for outcome in report.outcomes:
            if outcome.verdict != "right":
                print(f"  {report.title}: {outcome.label}: {outcome.verdict}: {outcome.detail}")
