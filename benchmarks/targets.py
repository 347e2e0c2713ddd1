"""What the benchmarks share: the lab data they read by default, timing (wall and process CPU
seconds side by side, over alternating rounds), and the targets they check, each judged on the
median of its rounds and shown with their spread (min-max), PASS or FAIL.

Wall time moves with whatever else the machine runs; process CPU time (every thread of this
process, and the child processes it waited for) much less. So a target on CPU-bound work is a
ratio of CPU times, taken round by round (each round runs both sides one after the other)."""

import argparse
import dataclasses
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

LAB_VISITS = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "lab-visits" / "*.jsonl")
MIN_ROUNDS = 5  # fewer give no spread worth reading


@dataclasses.dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # seconds of CPU: this process's threads and its waited-for children


def cpu_seconds() -> float:
    """CPU seconds so far of this process (every thread) and of the children it waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(run: Callable[[], object]) -> Timing:
    """Wall and CPU seconds of ``run()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run()
    return Timing(time.perf_counter() - wall, cpu_seconds() - cpu)


def spread(values: list[float]) -> str:
    """``median (min-max)``."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


class Rounds:
    """Timings per name, one per round, and how many items each run handled."""

    def __init__(self) -> None:
        self.timings: dict[str, list[Timing]] = defaultdict(list)
        self.items: dict[str, int] = {}

    def add(self, name: str, timing: Timing, items: int = 1) -> None:
        self.timings[name].append(timing)
        self.items[name] = items

    def time(self, name: str, run: Callable[[], object], items: int = 1) -> None:
        self.add(name, timed(run), items)

    def wall(self, name: str) -> list[float]:
        return [t.wall for t in self.timings[name]]

    def cpu(self, name: str) -> list[float]:
        return [t.cpu for t in self.timings[name]]

    def per_item(self, name: str, basis: str = "cpu") -> list[float]:
        """CPU (or wall) seconds per item, one per round."""
        seconds = self.cpu(name) if basis == "cpu" else self.wall(name)
        return [value / self.items[name] for value in seconds]

    def ratios(self, numerator: str, denominator: str, basis: str = "cpu") -> list[float]:
        """Seconds per item of numerator / of denominator, CPU (or wall), round by round."""
        pairs = zip(self.per_item(numerator, basis), self.per_item(denominator, basis), strict=True)
        return [a / b for a, b in pairs]

    def print_round(self, number: int) -> None:
        line = ", ".join(f"{n} {t[-1].wall:.2f}/{t[-1].cpu:.2f}" for n, t in self.timings.items())
        print(f"  round {number} (wall/CPU s): {line}", flush=True)

    def print_table(self, unit: str = "") -> None:
        """Each name's wall and CPU seconds, median (min-max); with ``unit`` (what an item is),
        also CPU microseconds per item where a run handled more than one."""
        print(f"\n{'':<20}{'wall s, median (min-max)':>28}{'CPU s, median (min-max)':>28}")
        for name in self.timings:
            extra = ""
            if unit and self.items[name] > 1:
                each = 1e6 * statistics.median(self.per_item(name))
                extra = f"   {each:8.1f} µs CPU per {unit} ({self.items[name]:,})"
            print(f"{name:<20}{spread(self.wall(name)):>28}{spread(self.cpu(name)):>28}{extra}")


@dataclasses.dataclass(frozen=True)
class Target:
    what: str
    values: tuple[float, ...]  # one per round
    target: float
    unit: str  # "x", "s", "/s", ...
    at_least: bool = True  # False: the value must not exceed the target
    basis: str = "CPU"  # what the values measure: "CPU" or "wall"

    @property
    def value(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    @property
    def goal(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.target:g}{self.unit}"

    @property
    def range(self) -> str:
        return f"{min(self.values):.2f}-{max(self.values):.2f}"

    def line(self) -> str:
        mark = "PASS" if self.met else "FAIL"
        measured = f"{self.value:.2f}{self.unit} ({self.range})"
        return f"{self.what:<62}{measured:>22}  target {self.goal:<10} {mark}"


def print_all(targets: list[Target]) -> None:
    print(f"\n{'target (median of the rounds, min-max)':<62}")
    for target in targets:
        print(target.line())
    print(f"{sum(t.met for t in targets)} of {len(targets)} targets met")


def markdown(targets: list[Target]) -> str:
    """The README's table of targets."""
    lines = [
        "| what | median | spread (min-max) | rounds | basis | target | met |",
        "|---|---:|---:|---:|---|---:|:---:|",
    ]
    for t in targets:
        lines.append(
            f"| {t.what} | {t.value:.2f}{t.unit} | {t.range} | {len(t.values)} | {t.basis} "
            f"| {t.goal} | {'yes' if t.met else 'no'} |"
        )
    return "\n".join(lines)


def finish(targets: list[Target]) -> None:
    """Print the targets and exit: 1 when one is not met."""
    print_all(targets)
    raise SystemExit(0 if all(t.met for t in targets) else 1)


def rounds_argument(parser: argparse.ArgumentParser, default: int = MIN_ROUNDS) -> None:
    parser.add_argument(
        "--rounds",
        type=int,
        default=default,
        help=f"alternating rounds (default {default}; at least {MIN_ROUNDS} for a spread)",
    )


def main(doc: str, add_arguments, measure) -> None:
    """A benchmark script's command line: its options, its measurements, its targets."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(parser)
    finish(measure(parser.parse_args()))
