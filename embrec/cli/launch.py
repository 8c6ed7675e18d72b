"""``embrec train ... --nproc N``: start torchrun's elastic agent here, running ``python -m embrec train ...``
(the same command without ``--nproc``) in N local processes."""

from __future__ import annotations

import sys

from embrec.errors import EmbrecError


def worker_argv(argv: list[str]) -> list[str]:
    """``argv`` (after the program name) without ``--nproc N`` / ``--nproc=N`` / ``--max-restarts R``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--nproc", "--max-restarts"):
            skip = True
            continue
        if arg.startswith(("--nproc=", "--max-restarts=")):
            continue
        out.append(arg)
    return out


def launch_local(nproc: int, max_restarts: int) -> None:
    """Run the current ``embrec train`` command under torch.distributed.run on this machine."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        [
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            "--max-restarts",
            str(max_restarts),
            "-m",
            "embrec",
            *worker_argv(sys.argv[1:]),
        ]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        ranks = sorted(exc.failures)
        first = exc.failures[ranks[0]]
        raise EmbrecError(
            f"the distributed job failed: rank {first.local_rank} exited with code {first.exitcode} "
            "(its error is printed above)."
        ) from None
