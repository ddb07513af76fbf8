"""Process limits the daemon raises for itself at start: open files.

Every connection is a file descriptor. systemd's and most shells' default soft limit is 1,024 while the hard limit
is far higher (524,288 under systemd), so a daemon that keeps the soft one locks out new clients after about a
thousand idle connections and then fails its own rescans with "Too many open files". Raising the soft limit to the
hard one is what the hard limit is for; the generated systemd unit also sets ``LimitNOFILE``.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files_limit() -> tuple[int, int]:
    """Soft limit := hard limit (capped where the hard limit is "unlimited"); returns (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1_048_576
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-files limit from %d to %d: %s", soft, wanted, exc)
        return soft, hard
    log.info("open-files limit raised from %d to %d", soft, wanted)
    return wanted, hard
