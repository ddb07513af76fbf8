"""The real daemon, except that loads named on the command line block like a compile that never ends.

    python tests/support/held_daemon.py FIFO MODEL:VERSION[,MODEL:VERSION...] OVMSD-ARGS...

A held load opens FIFO for reading, which blocks (in C, without the GIL) until a writer opens it: the test never
does, so the load runs until the process exits, as an uninterruptible OpenVINO compile would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ovmsd import app


def main() -> int:
    fifo, held_spec, *args = sys.argv[1:]
    held = {(name, int(version)) for name, version in (item.split(":") for item in held_spec.split(","))}
    real_loader = app.instance_loader

    def holding_loader(options: Any) -> Any:
        load = real_loader(options)

        def maybe_held(model_file: Path, config: Any, version: int) -> Any:
            if (config.name, version) in held:
                with open(fifo, "rb") as blocked:
                    blocked.read()
            return load(model_file, config, version)

        return maybe_held

    app.instance_loader = holding_loader  # type: ignore[assignment]
    return app.main(args)


if __name__ == "__main__":
    sys.exit(main())
