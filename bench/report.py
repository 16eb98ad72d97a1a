"""The Markdown table: per scenario each tool's figure, its ratio to the best peer, the target's verdict."""

from __future__ import annotations

from bench.common import Row, Scenario

HEADER = "| Scenario | Tool | Result | vs best peer | Peak RSS | Target |\n|---|---|---|---|---|---|\n"


def _ratio(scenario: Scenario, row: Row) -> str:
    best = scenario.best_peer()
    if best is None:
        return "-"
    if row is best:
        return "1.00 (best peer)"
    ratio = scenario.ratio(row)
    return f"{ratio:.2f}x" if ratio is not None else "-"


def _tool(row: Row) -> str:
    return f"**{row.tool}**" if row.kind == "tributary" else row.tool


def table(scenarios: list[Scenario]) -> str:
    lines = [HEADER]
    for scenario in scenarios:
        title = scenario.title
        for row in scenario.rows:
            result = row.figure + (f" - {row.note}" if row.note else "")
            rss = f"{row.rss_mb:.0f} MB" if row.rss_mb else "-"
            lines.append(f"| {title} | {_tool(row)} | {result} | {_ratio(scenario, row)} | {rss} |  |\n")
            title = ""
        verdict = {True: "**PASS**", False: "**MISS**", None: "-"}[scenario.verdict]
        lines.append(f"| {title} | *target* | {scenario.target or 'no target in the issue'} |  |  | {verdict} |\n")
    lines.append(
        "\n*vs best peer*: how many times better than the fastest (or leanest) peer of the same scenario in this "
        "run, above 1 = better. The ceiling is a minimal Python client that only downloads (or only sends).\n"
    )
    return "".join(lines)
