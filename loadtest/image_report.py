"""Record what `make docker-test` built and how long it took: loadtest/results/containers.json.

    python -m loadtest.image_report --build-seconds 140 --test-seconds 300 IMAGE [IMAGE ...]

`make figures` turns the file into the README's container table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
from pathlib import Path

from training.catalog import REPO


def image_bytes(docker: str, image: str) -> int:
    return int(subprocess.run([docker, "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True,
                              check=True).stdout)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--build-seconds", type=float, required=True)
    parser.add_argument("--test-seconds", type=float, required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--docker", default="docker")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "containers.json")
    args = parser.parse_args(argv)
    record = {"date": datetime.date.today().isoformat(), "cores": os.cpu_count(), "variant": args.variant,
              "build_seconds": args.build_seconds, "test_seconds": args.test_seconds,
              "images": {image: image_bytes(args.docker, image) for image in args.images}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}: build {args.build_seconds:.0f} s, tests {args.test_seconds:.0f} s, "
          + ", ".join(f"{image} {size / 1e9:.2f} GB" for image, size in record["images"].items()))


if __name__ == "__main__":
    main()
