#!/usr/bin/env python3
"""One table for `make bench`: every figure of this run next to its baseline from the same run (or its target),
with the count of answers that were not what the row claims (non-200s, refused reservations).

The benchmark scripts append rows to $BENCH_ROWS (one JSON object a line) when it is set:
  {"measure": ..., "value": ..., "unit": ..., "baseline": ..., "baseline_value": ..., "better": "higher"|"lower",
   "target": ..., "non200": ...}
`python3 bench/summary.py ROWS_FILE [OUT.md]` prints the table (and writes it to OUT.md). It exits 1 when a row
that claims throughput saw any non-200, so a run that measured refusals cannot pass for a result."""

import json
import sys


def number(value):
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        if abs(value) < 1:
            return f"{value:.3f}"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{int(value):,}"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    lines = ["| measure | value | baseline (same run) | ratio | target | met | non-200 |",
             "|---|---:|---|---:|---|---|---:|"]
    invalid = []
    for row in rows:
        unit = row.get("unit", "")
        value = row.get("value")
        base = row.get("baseline_value")
        ratio = "-"
        if value is not None and base and base > 0:
            ratio = f"{value / base:.2f}"
        target = row.get("target")
        met = "-"
        if target is not None and value is not None:
            met = "yes" if (value >= target if row.get("better", "higher") == "higher" else value <= target) else "no"
        baseline = f"{row['baseline']}: {number(base)} {unit}" if row.get("baseline") else "-"
        target_text = f"{'≥' if row.get('better', 'higher') == 'higher' else '≤'} {number(target)} {unit}" \
            if target is not None else "-"
        non200 = row.get("non200")
        if non200:
            invalid.append(row["measure"])
        lines.append(f"| {row['measure']} | {number(value)} {unit} | {baseline} | {ratio} | {target_text} | {met} | "
                     f"{'-' if non200 is None else non200} |")
    if invalid:
        lines += ["", "**Not valid (answers other than 200 in a throughput row): " + ", ".join(invalid) + ".**"]
    text = "\n".join(lines) + "\n"
    print(text)
    if len(sys.argv) > 2:
        open(sys.argv[2], "w").write(text)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
