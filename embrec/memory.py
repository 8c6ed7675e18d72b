"""A table size checked against the machine's free memory before it is allocated.

    check_tables("factors", 10_000_000_000, {"user": 944, "item": 1683})
    # InvalidParameterError: factors=10000000000 asks for 944 x 10,000,000,000 user and 1,683 x ... tables
    # (98.2 TiB), more than the 17.3 GiB of memory free on this machine; choose a smaller factors.

Without the check an absurd size is an allocator traceback or, worse, the kernel's OOM killer part-way through.
"""

from __future__ import annotations

import os

from embrec.errors import InvalidParameterError


def available_bytes() -> int | None:
    """Memory free for a new allocation (MemAvailable on Linux), None when the platform does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_tables(
    param: str, width: int, rows: dict[str, int], *, itemsize: int = 4, kind: str = "table"
) -> None:
    """Refuse ``param=width`` when the ``rows[name] x width`` tables (or weight matrices) alone exceed the
    free memory."""
    need = sum(int(n) for n in rows.values()) * int(width) * itemsize
    free = available_bytes()
    if free is None or need <= free:
        return
    shapes = " and ".join(f"{int(n):,} x {int(width):,} {name}" for name, n in rows.items())
    raise InvalidParameterError(
        f"{param}={int(width)} asks for {shapes} {kind}{'s' if len(rows) > 1 else ''} ({_size(need)}), more than "
        f"the {_size(free)} of memory free on this machine; choose a smaller {param}."
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
