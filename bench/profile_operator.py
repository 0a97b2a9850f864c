"""Profile the operator's extraction path (``python -m bench.profile_operator``): cProfile over
``execute`` only, after a warm-up run has paid the imports, scratch and output on the real disk.

Prints the top functions by own time and by cumulative time, so a change to the extraction's hot
path is measured, not guessed. ``--dir`` picks where scratch and output go (default: the system's
temporary directory, on this machine the VM's disk).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BenchSandbox, isolate_airflow, run_operator, scratch_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--until", type=date.fromisoformat, default=date(2025, 7, 2))
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    isolate_airflow()
    tempfile.tempdir = args.dir
    start = date(2025, 1, 1)
    with BenchSandbox(args.records, start, date(2025, 12, 31)) as sandbox:
        conn = sandbox.connection("lucca_profile", 0)
        with scratch_dir("profile-warmup", args.dir) as out:
            run_operator(conn, (out / "lake").as_uri(), start=start, end=date(2025, 1, 3))
        for _ in range(2):
            with scratch_dir("profile", args.dir) as out:
                profiler = cProfile.Profile()
                profiler.enable()
                run = run_operator(conn, (out / "lake").as_uri(), start=start, end=args.until)
                profiler.disable()
            print(f"{run.records} records in {run.wall:.2f} s, CPU {run.cpu:.2f} s (profiled)")
        for key in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(args.top)
            print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
