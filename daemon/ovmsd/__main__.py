"""``python -m ovmsd``: run the daemon in the foreground."""

from __future__ import annotations

import sys


def main() -> None:
    from ovmsd.app import main as run

    sys.exit(run())


if __name__ == "__main__":
    main()
