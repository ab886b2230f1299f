"""Issue 2 speed target: `kaos --help` takes at most 1.5x `python -c "import click, requests"`."""
import sys

from _timing import BIN, median_seconds, report


def main() -> int:
    baseline = median_seconds([sys.executable, "-c", "import click, requests"])
    measured = median_seconds([str(BIN / "kaos"), "--help"])
    return 0 if report("kaos --help", measured, baseline, 1.5) else 1


if __name__ == "__main__":
    sys.exit(main())
