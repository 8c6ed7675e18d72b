"""``embrec recommend-all``: top-k for every known user of a saved model, streamed to Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embrec import api
from embrec.cli._output import note, run
from embrec.cli.model_cmds import JSON, MODEL_DIR, K
from embrec.models.distributed import init as init_distributed
from embrec.models.distributed import is_main


def recommend_all(
    model_dir: Path = MODEL_DIR,
    out: Path = typer.Option(
        ...,
        "--out",
        help="Parquet file to write (under torchrun: a directory of part-<rank>.parquet files).",
        show_default=False,
    ),
    k: int = K,
    exclude_seen: bool = typer.Option(
        False,
        "--exclude-seen/--include-seen",
        help="Leave out each user's training items (default: keep them).",
    ),
    block: int = typer.Option(
        4096, "--block", min=1, help="Users scored (and written as one row group) at a time."
    ),
    as_json: bool = JSON,
) -> None:
    """Top-k items for every known user, in blocks (memory independent of the number of users), written as
    a long table user, rank, item, score; split across ranks under torchrun."""

    def compute() -> dict[str, Any]:
        from embrec.batch_scoring import recommend_all as score_all

        model = api.open_model(model_dir)
        note(f"scoring {model.users_.n_ids} users, top {k} ...")
        return score_all(model, out, k=k, exclude_seen=exclude_seen, block=block)

    def render(res: dict[str, Any]) -> None:
        if not is_main():
            return
        typer.echo(
            f"wrote top {res['k']} for {res['users']} users to {res['out']} ({res['rows']} rows"
            + (f" on rank 0 of {res['world_size']}" if res["world_size"] > 1 else "")
            + f", {res['seconds']:.1f} s)"
        )

    init_distributed()  # under torchrun: join the group first, so only rank 0 prints (JSON included)
    run(as_json and is_main(), compute, render)
