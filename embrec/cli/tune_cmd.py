"""``embrec tune MODEL``: Optuna search on a validation part carved from a protocol's training data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embrec import api
from embrec.cli._output import note, run, table
from embrec.cli.data_cmds import DATA_DIR, JSON
from embrec.cli.data_options import DATA_SOURCE, DataSourceOptions, data_source_options
from embrec.cli.train_cmds import OPTION, protocol_table
from embrec.models.search import label_of


@data_source_options
def tune(
    model: str = typer.Argument(
        ..., help="Model name from the registry (e.g. als, bpr, rnn, ease).", show_default=False
    ),
    protocol: str = typer.Option(
        ...,
        "--protocol",
        help="The protocol whose training part is tuned on and whose test part scores the result.",
        show_default=False,
    ),
    trials: int | None = typer.Option(
        20, "--trials", help="Number of trials (more are added to a resumed study)."
    ),
    minutes: float | None = typer.Option(
        None, "--minutes", help="Stop starting trials after this many minutes."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the TPE sampler and of the validation carve."
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="sqlite:///FILE to keep the study and resume it."
    ),
    study_name: str | None = typer.Option(
        None, "--study-name", help="Study name in --storage (default MODEL:PROTOCOL)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Save the tuned model (fitted on the protocol's training part) to this directory.",
    ),
    source: DataSourceOptions = DATA_SOURCE,
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="Fix a hyper-parameter key=value (not searched; repeat)."
    ),
    option: list[str] | None = OPTION,
    data_dir: Path | None = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Tune a model's hyper-parameters, then compare defaults and tuned on the protocol's test part."""

    def compute() -> dict[str, Any]:
        _, data = source.resolve(required=False)
        note(f"tuning {model} on {protocol} ...")
        return api.tune(
            model,
            protocol,
            trials=trials,
            minutes=minutes,
            seed=seed,
            storage=storage,
            study_name=study_name,
            out=out,
            dataset=source.dataset,
            data=data,
            data_dir=data_dir,
            params=param or [],
            options=option or [],
        )

    def render(res: dict[str, Any]) -> None:
        typer.echo(
            f"{res['model']} on {res['protocol']} ({res['dataset']}); {res['validation']}; "
            f"objective {res['metric']} ({res['direction']}), {len(res['trials'])} trials in "
            f"{res['seconds']:.0f} s"
        )
        names = list(dict.fromkeys(k for t in res["trials"] for k in t["params"]))
        rows = [
            {
                "trial": t["trial"],
                "state": t["state"],
                res["metric"]: t["value"],
                "epochs run": t["epochs"],
                "s": t["seconds"],
                **{k: _short(t["params"].get(k)) for k in names},
            }
            for t in res["trials"]
        ]
        typer.echo(table(rows, ["trial", "state", res["metric"], "epochs run", "s", *names]))
        best = res["best"]
        typer.echo(
            f"best: trial {best['trial']}, {res['metric']} {best['value']:.4f} on validation: "
            + " ".join(f"{k}={label_of(v)}" for k, v in best["params"].items())
        )
        if res.get("results"):
            typer.echo(protocol_table({**res, "dataset": f"{res['dataset']} (test part)"}))
        if res.get("out"):
            typer.echo(f"saved the tuned model to {res['out']}")

    run(as_json, compute, render)


def _short(v: Any) -> Any:
    return float(f"{v:.4g}") if isinstance(v, float) else (label_of(v) if v is not None else "")
