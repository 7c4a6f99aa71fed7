"""`python -m forkyard.reference [--check]`: build the reference site and regenerate the Python
SDK's typed layer from docs/openapi.snapshot.json (`make docs`)."""

from __future__ import annotations

import sys

from forkyard.reference import pysdk, site
from forkyard.reference.schema import load


def main() -> int:
    spec = load()
    if "--check" in sys.argv:
        if pysdk.TARGET.read_text() != pysdk.formatted(spec):
            print(
                "sdk/python/forkyard_sdk/_generated.py is stale: run `make docs`", file=sys.stderr
            )
            return 1
        return 0
    pysdk.write(spec)
    pages = site.build(spec)
    print(f"{len(pages)} operation pages in {site.BUILD}; {pysdk.TARGET} regenerated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
