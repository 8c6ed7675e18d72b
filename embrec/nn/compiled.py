"""The compiled CPU kernels (``embrec.nn.kernels``) where Numba is installed, else None.

Numba is a dependency of embrec, but a wheel for the newest Python often comes months after that Python;
without it every caller takes its PyTorch / NumPy path (the same results, several times slower per
batch) after one warning that says how to get the fast path back.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

logger = logging.getLogger(__name__)


@functools.cache
def kernels() -> ModuleType | None:
    """``embrec.nn.kernels`` (imported, and so compiled, on first use), or None without Numba."""
    try:
        from embrec.nn import kernels as module
    except ImportError as err:
        logger.warning(
            "Numba could not be imported (%s): BPR, RowAdam and the seen-pair check run their "
            "PyTorch/NumPy paths, several times slower on CPU; `pip install numba` restores the "
            "compiled ones.",
            err,
        )
        return None
    return module
