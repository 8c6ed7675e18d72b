"""`embrec quickstart`: the main job, offline on the synthetic shop by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embrec.cli._output import note, run, table
from embrec.cli.data_cmds import DATA_DIR, JSON
from embrec.cli.train_cmds import protocol_table


def quickstart(
    dataset: str | None = typer.Option(None, "--dataset", help="ml-100k or online-retail instead of the "
                                       "synthetic shop (runs ml100k-top10 / retail-precision)."),
    out: str = typer.Option("runs/quickstart", "--out", help="Where the best model and the report go: new, "
                            "empty, or an earlier quickstart run (anything else is refused before the fit)."),
    data_dir: Path | None = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Train the model zoo, compare it with the baselines, show recommendations, save the best model and
    write the report."""
    def compute() -> dict[str, Any]:
        # the model zoo loads when the command runs, not with every `embrec` start
        from embrec.quickstart import quickstart as run_quickstart

        return run_quickstart(dataset=dataset, out=out, data_dir=data_dir, progress=note)

    run(as_json, compute, render)


def render(res: dict[str, Any]) -> None:
    echo = typer.echo
    echo("")
    echo(protocol_table({"protocol": res["protocol"], "dataset": res["dataset"], "results": res["results"]}))
    if res["skipped"]:
        echo(f"not run here: {', '.join(res['skipped'])} (rating models; this data's rating column is a quantity)")
    best, served = res["best"], res["servable"]
    echo(f"\nbest: {best['model']} ({best['metric']} = {best['value']:.4f})")
    if served["model"] != best["model"]:
        echo(f"servable: {served['model']} ({served['metric']} = {served['value']:.4f}), the best model with "
             "embeddings (recommend, similar and /embed all work on it)")
    echo(f"saved: {served['model']}, fitted on all events, in {res['model_dir']}")

    recs = res["recommendations"]
    echo(f"\nuser {recs['user']!r} recently bought:")
    for it in recs["recent_history"]:
        echo(f"  {it['item']}  {it['label'] or ''}".rstrip())
    echo(f"top {recs['k']} new items for this user ({recs['model']}):")
    echo(_items_table(recs["items"]))

    sim = res["similar"]
    if sim is not None:
        echo(f"\nitems most similar to {sim['item']!r} {sim['label'] or ''} ({sim['model']}, cosine):")
        echo(_items_table(sim["items"]))
    echo("\ntry:")
    echo(f"  embrec recommend {res['model_dir']} --user {recs['user']} -k 5")
    if sim is not None:
        echo(f"  embrec similar {res['model_dir']} --item {sim['item']} -k 5")
    echo(f"  embrec serve {res['model_dir']}        # POST /recommend /similar /embed, docs at /docs")
    echo(f"\nreport: {res['report']}")
    echo(f"done in {res['seconds']:.0f} s")


def _items_table(items: list[dict[str, Any]]) -> str:
    rows = [{"rank": i + 1, "item": it["item"], "score": it["score"], "label": it.get("label") or ""}
            for i, it in enumerate(items)]
    return table(rows, ["rank", "item", "score", "label"]) if rows else "(no items)"
