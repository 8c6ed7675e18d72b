"""The data-source options are one definition (embrec.cli.data_options) shared by every command that reads
a log: the same flags, help and defaults everywhere, and each one reaches the reader."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
import typer
from typer.testing import CliRunner

from embrec.cli import app
from embrec.cli.data_options import DataSourceOptions
from embrec.errors import InvalidParameterError
from embrec.params import coerce

runner = CliRunner()
COMMANDS = ("train", "evaluate", "benchmark", "tune")
FLAGS = [f.metadata["flag"] for f in dataclasses.fields(DataSourceOptions)]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def user_error(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "Traceback" not in result.stderr
    return line


def test_the_options_are_the_ones_the_reader_needs():
    # every column / file / format the log reader takes, and nothing twice
    assert FLAGS == [
        "--dataset", "--data", "--user-col", "--item-col", "--rating-col", "--time-col", "--group-col",
        "--sep", "--encoding", "--time-format", "--rating-kind", "--item-features", "--item-features-key",
        "--user-features", "--user-features-key", "--feature-type", "--multi-sep", "--item-label-col",
    ]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_reads_a_log_offers_the_same_options(command):
    text = invoke(command, "--help").stdout
    assert "Data source" in text
    for flag in FLAGS:
        assert flag in text, f"{command} --help lacks {flag}"
    params = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    reference = {p.name: p for p in typer.main.get_command(app).commands["train"].params}
    for f in dataclasses.fields(DataSourceOptions):
        mine, ref = params[f.name], reference[f.name]
        assert mine.opts == [f.metadata["flag"]]
        assert (mine.help, mine.default, mine.multiple) == (ref.help, ref.default, ref.multiple)
        assert mine.default == (None if f.default is None else f.default)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """8 users x 4 events; 'qty' holds 1-5 scores (its name reads as a quantity); dates are day-first,
    some ambiguous (01/02/2021), some only day-first (13/02/2021)."""
    d = tmp_path_factory.mktemp("data_options")
    rows = ["user,item,qty,ts"]
    for u in range(8):
        for k, day in enumerate((1, 5, 9, 13)):
            rows.append(f"u{u},i{(u + k) % 6},{1 + (u * 3 + k) % 5},{day:02d}/0{u % 3 + 1}/2021")
    (d / "log.csv").write_text("\n".join(rows) + "\n")
    return d


def test_train_and_evaluate_take_rating_kind(log):
    cols = f"--data {log / 'log.csv'} --user-col user --item-col item --rating-col qty".split()
    # guessed a quantity from its name: a rating model refuses it, pointing at --rating-kind
    says = user_error(invoke("train", "rating-bias", *cols, "--out", log / "m"))
    assert "rating column of the data holds quantities (rating_kind='quantity')" in says
    assert "--rating-kind rating" in says
    assert not (log / "m").exists()
    r = invoke("train", "rating-bias", *cols, "--rating-kind", "rating", "--out", log / "m")
    assert r.exit_code == 0, r.stderr
    # evaluate re-fits the configuration on the protocol's split of the same log: the same option decides
    says = user_error(invoke("evaluate", log / "m", "--protocol", "leave-last-out", *cols))
    assert "holds quantities" in says
    r = invoke("evaluate", log / "m", "--protocol", "leave-last-out", *cols, "--rating-kind=rating")
    assert r.exit_code == 0, r.stderr
    assert "rating-bias" in r.stdout and "re-fitted" in r.stdout
    # tune refuses it too (before any trial)
    says = user_error(
        invoke("tune", "rating-bias", "--protocol", "leave-last-out", *cols, "--trials", "1")
    )
    assert "holds quantities" in says
    # --rating-kind still needs the column it describes
    no_rating_col = cols[:6]
    says = user_error(invoke("evaluate", log / "m", "--protocol", "leave-last-out", *no_rating_col,
                             "--rating-kind", "rating"))  # fmt: skip
    assert "--rating-kind rating describes --rating-col of --data, which was not given" in says


def test_tune_takes_time_format(log):
    cols = f"--data {log / 'log.csv'} --user-col user --item-col item --time-col ts".split()
    args = ["tune", "item-knn", "--protocol", "leave-last-out", *cols, "--trials", "1"]
    says = user_error(invoke(*args))
    assert "dates that read day-first or month-first" in says
    says = user_error(invoke(*args, "--time-format", "%m/%d/%Y"))
    assert "do not match time_format='%m/%d/%Y', e.g. '13/01/2021'" in says
    r = invoke(*args, "--time-format", "%d/%m/%Y")
    assert r.exit_code == 0, r.stderr
    assert "item-knn (tuned)" in r.stdout


@pytest.mark.parametrize(
    "text, ann",
    [
        ("9223372036854775808", int),
        ("-9223372036854775809", int),
        ("99999999999999999999999", int | None),
        ("1,99999999999999999999999", Sequence[int]),
    ],
)
def test_int_parameters_must_fit_in_int64(text, ann):
    with pytest.raises(InvalidParameterError) as err:
        coerce("p", text, ann)
    says = str(err.value)
    assert says.startswith("p must be an integer from -9223372036854775808 to 9223372036854775807")
    assert says.endswith(f"received '{text.split(',')[-1]}'.")  # a list names its bad item


def test_int_parameters_at_the_int64_ends_pass():
    assert coerce("p", "9223372036854775807", int) == 2**63 - 1
    assert coerce("p", "-9223372036854775808", int | None) == -(2**63)
    assert coerce("p", 2**63 - 1, int) == 2**63 - 1


@pytest.mark.parametrize(
    "param, says",
    [
        ("epochs=99999999999999999999999", "epochs must be an integer from -9223372036854775808"),
        ("epochs=1e11", "epochs must be an integer; received '1e11'."),
        ("epochs=2.5", "epochs must be an integer; received '2.5'."),
    ],
)
def test_cli_refuses_int_params_out_of_range_or_fractional(log, param, says):
    r = invoke("train", "bpr", "--data", log / "log.csv", "--user-col", "user", "--item-col", "item",
               "--param", param, "--out", log / "never")  # fmt: skip
    assert says in user_error(r)
    assert not (log / "never").exists()
