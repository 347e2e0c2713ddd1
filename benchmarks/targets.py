"""What the benchmarks share: the lab data they read by default, and the targets they check
(each measured figure beside its target, PASS or FAIL)."""

import argparse
import dataclasses
from pathlib import Path

LAB_VISITS = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "lab-visits" / "*.jsonl")


@dataclasses.dataclass(frozen=True)
class Target:
    what: str
    value: float
    target: float
    unit: str  # "x", "s", ...
    at_least: bool = True  # False: the value must not exceed the target

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    @property
    def goal(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.target:g}{self.unit}"

    def line(self) -> str:
        mark = "PASS" if self.met else "FAIL"
        return f"{self.what:<58}{self.value:>8.2f}{self.unit:<2} target {self.goal:<9} {mark}"


def print_all(targets: list[Target]) -> None:
    print()
    for target in targets:
        print(target.line())
    print(f"{sum(t.met for t in targets)} of {len(targets)} targets met")


def markdown(targets: list[Target]) -> str:
    """The README's table of targets."""
    lines = ["| what | measured | target | met |", "|---|---:|---:|:---:|"]
    for t in targets:
        lines.append(
            f"| {t.what} | {t.value:.2f}{t.unit} | {t.goal} | {'yes' if t.met else 'no'} |"
        )
    return "\n".join(lines)


def finish(targets: list[Target]) -> None:
    """Print the targets and exit: 1 when one is not met."""
    print_all(targets)
    raise SystemExit(0 if all(t.met for t in targets) else 1)


def main(doc: str, add_arguments, measure) -> None:
    """A benchmark script's command line: its options, its measurements, its targets."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(parser)
    finish(measure(parser.parse_args()))
