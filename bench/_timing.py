"""Shared timing helpers for the benchmarks: medians of whole-command wall times, ratios against a baseline."""
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def median_seconds(command, runs=15, warmup=2, **kwargs) -> float:
    """Median wall time of running `command` (a list) `runs` times, after `warmup` unmeasured runs."""
    times = []
    for index in range(warmup + runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, measured: float, baseline: float, target_ratio: float) -> bool:
    """Print one result line; True when the ratio meets the target."""
    ratio = measured / baseline
    verdict = "OK" if ratio <= target_ratio else "MISSED"
    print(f"{name}: {measured * 1000:.1f} ms vs baseline {baseline * 1000:.1f} ms "
          f"-> ratio {ratio:.2f} (target <= {target_ratio}) {verdict}")
    return ratio <= target_ratio
