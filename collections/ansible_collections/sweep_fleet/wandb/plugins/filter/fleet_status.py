# Copyright: sweep-fleet developers
# Apache License 2.0
"""The fleet status report as a table: ``report | sweep_fleet.wandb.fleet_status_table``."""

from __future__ import annotations

COLUMNS = ("HOST", "AGENT", "STATE", "SINCE", "RUN", "PARAMETERS", "GPUS", "ENDED", "LAST ERROR")


def _gib(mib) -> str:
    mib = int(mib or 0)
    return f"{mib / 1024:.0f}" if mib >= 10 * 1024 or mib == 0 else f"{mib / 1024:.1f}"


def _gpus(gpus) -> str:
    """Each GPU as INDEX:UTIL% USED/TOTAL GiB."""
    return (
        ", ".join(
            f"{g.get('index')}:{g.get('util', 0)}% "
            f"{_gib(g.get('memory_used'))}/{_gib(g.get('memory_total'))} GiB"
            for g in gpus or []
        )
        or "-"
    )


def _params(params) -> str:
    return " ".join(f"{k}={v}" for k, v in (params or {}).items()) or "-"


def _since(text) -> str:
    # systemd prints "Mon 2026-11-23 14:02:11 UTC": the weekday only costs width.
    parts = str(text or "").split()
    return " ".join(parts[1:3]) if len(parts) >= 3 else (str(text) if text else "-")


def fleet_status_table(report: dict) -> str:
    """One line per agent, then the sweep's state, progress and URL."""
    rows = []
    for agent in report.get("agents") or []:
        runs = agent.get("runs") or [{}]
        for index, run in enumerate(runs):
            first = index == 0
            rows.append(
                (
                    agent.get("host", "?") if first else "",
                    agent.get("instance", "?") if first else "",
                    (
                        (
                            f"waiting: {agent['waiting']}"
                            if not run
                            else f"last run, then waiting: {agent['waiting']}"
                        )
                        if agent.get("waiting")
                        else f"{agent.get('active_state', '?')}/{agent.get('sub_state', '?')}"
                    )
                    if first
                    else "",
                    _since(agent.get("since")) if first else "",
                    run.get("id") or "-",
                    _params(run.get("params")) if run else "-",
                    _gpus(agent.get("gpus")) if first else "",
                    str(agent.get("runs_ended", 0)) if first else "",
                    (agent.get("last_error") or "-") if first else "",
                )
            )
    widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    widths[-1] = 0
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    if not rows:
        lines.append("(no agents)")
    for orphan in report.get("gpu_orphans") or []:
        lines.append(
            f"{orphan.get('host', '?')}: GPU {orphan.get('gpu')} memory held by pid {orphan.get('pid')} of "
            f"{orphan.get('user')} ({orphan.get('size') or str(orphan.get('memory')) + ' MiB'}), "
            f"no agent's and no logged-in user's: {orphan.get('command') or '?'}"
        )
    sweep = report.get("sweep") or {}
    if sweep.get("error"):  # W&B cannot be reached: the agents above are what is known
        lines += ["", f"sweep {sweep.get('path') or '?'}: UNREACHABLE ({sweep['error']})"]
    elif sweep:
        states = sweep.get("runs_by_state") or {}
        finished = states.get("finished", 0)
        expected = sweep.get("run_count_expected")
        progress = f"{finished}/{expected} runs finished" if expected else f"{finished} runs finished"
        others = ", ".join(f"{n} {s}" for s, n in sorted(states.items()) if s != "finished")
        lines += [
            "",
            f"sweep {sweep.get('path')}: {sweep.get('state')}, {progress}"
            + (f" ({others})" if others else ""),
            f"{sweep.get('url')}",
        ]
        before = sweep.get("predecessor") or {}
        if before.get("sweep_path"):
            running = before.get("running")
            lines.append(
                f"it follows sweep {before['sweep_path']}: {before.get('state') or 'not found'}"
                + (f", {running} run(s) still running (stopped once they end)" if running else "")
            )
    return "\n".join(lines)


class FilterModule:
    def filters(self):
        return {"fleet_status_table": fleet_status_table}
