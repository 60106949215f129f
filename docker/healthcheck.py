"""Container healthchecks that need no curl or procps in the slim image.

python docker/healthcheck.py http URL      answers 2xx within 5 s (Flower's /healthcheck)
python docker/healthcheck.py beat          beat has written its schedule file (var/)
"""

from __future__ import annotations

import glob
import sys
import urllib.request


def main(argv: list[str]) -> int:
    if argv[:1] == ["http"] and len(argv) == 2:
        with urllib.request.urlopen(argv[1], timeout=5) as response:  # noqa: S310 - our URL
            return 0 if 200 <= response.status < 300 else 1
    if argv == ["beat"]:
        return 0 if glob.glob("var/celerybeat-schedule*") else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
