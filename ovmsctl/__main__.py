"""``python -m ovmsctl``: what systemd units run (no dependence on PATH or on the console script)."""

from ovmsctl.cli import main

if __name__ == "__main__":
    main()
