"""The page's first section: `serve` against `LongpollApp` on stock ASGI servers, and against
any other implementation the user gave (`--other`), figure by figure."""

from __future__ import annotations

from bench.targets import BASELINE, SUBJECT, TARGETS, Bodies, Figure, figure, ratio

STOCK = (BASELINE, "granian")


def title(others: tuple[str, ...]) -> str:
    """The section's heading."""
    return f"{SUBJECT} against " + ("the alternatives" if others else "stock ASGI servers")


def times(value: float | None) -> str:
    """A ratio as shown, or "-"."""
    return "-" if value is None else f"{value:.2f}x"


def _figure(seen: Figure | None) -> str:
    if seen is None:
        return "-"
    return f"{seen.value:,.0f}" if seen.value >= 100 else f"{seen.value:.1f}"


def versus(bodies: Bodies, given: tuple[str, ...]) -> list[str]:
    """The section's text and table: a column per server, then `serve`'s figure over each
    one's; `given`: the labels of the servers given with `--other`."""
    others = (*STOCK, *given)
    lines = [
        f"| figure | {SUBJECT} | {' | '.join(others)} | "
        + " | ".join(f"{SUBJECT} / {other}" for other in others)
        + " |",
        "| --- |" + " ---: |" * (1 + 2 * len(others)),
    ]
    better = dict.fromkeys(others, 0)
    compared = dict.fromkeys(others, 0)
    for target in TARGETS:
        mine = figure(target, bodies, SUBJECT)
        seen = {other: figure(target, bodies, other) for other in others}
        ratios = {other: ratio(mine, seen[other]) for other in others}
        for other, value in ratios.items():
            if value is not None:
                compared[other] += 1
                better[other] += value != 1.0 and (value > 1.0) == target.more_is_better
        cells = [_figure(mine), *map(_figure, seen.values()), *map(times, ratios.values())]
        lines.append(f"| {target.figure} | " + " | ".join(cells) + " |")
    counted = [f"{o} on {better[o]} of {compared[o]} figures" for o in others if compared[o]]
    also = ", ".join(f"`{label}`" for label in given)
    return [
        f"`{SUBJECT}` (`longpoll serve`) against `LongpollApp` (`bench/apps.py`: memory "
        "backend, default options, the garbage-collector settings of `longpoll serve`) "
        f"mounted on stock uvicorn (`{BASELINE}`) and on granian's ASGI interface "
        "(`granian`)"
        + (
            f", and against other implementations of the protocol, given with `--other`: "
            f"{also}. The suite did not start, stop or pin those: each was measured as found, "
            "on whatever cores it may use and after whatever it had served (see Variants)"
            if given
            else ""
        )
        + ". The servers ran side by side, idle while another was measured, scenario by "
        "scenario, so that each row was measured close together in time. "
        + (
            f"In this run `{SUBJECT}` did better than " + " and than ".join(counted) + ":"
            if counted
            else "In this run no figure could be compared:"
        ),
        "",
        *lines,
    ]
