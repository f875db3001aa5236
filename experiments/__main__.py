"""``python -m experiments``: list every experiment with what it measures and its full and quick times."""

from __future__ import annotations

import argparse

from experiments.catalog import EXPERIMENTS


def format_catalog() -> str:
    """The catalog as an aligned text table, one experiment a line, grouped by kind."""
    width = max(len(e.name) for e in EXPERIMENTS)
    lines = ["python -m experiments.<name> [--quick]", ""]
    for kind, title in (("headline", "headline results"), ("study", "studies"), ("benchmark", "benchmarks")):
        lines.append(f"{title}:")
        for e in (e for e in EXPERIMENTS if e.kind == kind):
            lines.append(f"  {e.name:<{width}}  full {e.full_time}, quick {e.quick_time}: {e.description}")
        lines.append("")
    lines.append("Results: experiments/results/<name>.json; tables: python -m experiments.tables")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m experiments", description=__doc__).parse_args(argv)
    print(format_catalog())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
