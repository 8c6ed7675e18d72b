"""Every bad command-line input of issue 10, in one table: exit 1, one line on stderr, no traceback, the
sentence names the problem, and at most ~80 characters of what was typed are echoed back."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embrec.cli import app

runner = CliRunner()
HUGE = "1000000000000000000000000000000"
ONE_MB = "x" * 1_000_000


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "shop.csv": "user,item,ts,r\n1,10,2021-01-02,5\n2,11,2021-01-03,3\n1,11,2021-01-04,4\n3,12,2021-01-05,2\n",
        "empty.csv": "",
        "header.csv": "user,item,ts,r\n",
        "nan.csv": "user,item,r\n1,10,\n2,11,nan\n1,11,4\n",
        "inf.csv": "user,item,r\n1,10,inf\n2,11,1e39\n1,11,4\n",
        "ambiguous.csv": "user,item,ts\n1,10,01/02/2021\n2,11,13/02/2021\n",
        "only-ambiguous.csv": "user,item,ts\n1,10,01/02/2021\n2,11,02/03/2021\n",
        "mixed-formats.csv": "user,item,ts\n1,10,2021-01-02\n2,11,Jan 5 2021\n",
        "naive-aware.csv": "user,item,ts\n1,10,2021-01-02T10:00:00+01:00\n2,11,2021-01-02T10:00:00\n",
        "unix.csv": "user,item,ts\n1,10,1609459200\n2,11,99999999999999999999\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "notes").mkdir()
    (d / "notes" / "notes.txt").write_text("mine\n")
    (d / "file.txt").write_text("mine\n")
    for model, extra in (("popularity", []), ("bpr", ["-p", "factors=4", "-p", "epochs=1"])):
        r = runner.invoke(
            app,
            [
                "train",
                model,
                "--data",
                str(d / "shop.csv"),
                "--user-col",
                "user",
                "--item-col",
                "item",
                "--out",
                str(d / model),
                *extra,
            ],
        )
        assert r.exit_code == 0, r.stderr
    return d


def busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


DATA = ["--user-col", "user", "--item-col", "item"]
CASES = [
    # ids out of int64 range, in a user, a history, an item
    ("recommend {pop} --user " + HUGE, "user id '1000000000000000000000000000000' is not known"),
    ("recommend {pop} --user 18446744073709551616", "user id '18446744073709551616' is not known"),
    (
        "recommend {pop} --history 10,18446744073709551616",
        "item id '18446744073709551616' is not known",
    ),
    (
        "similar {bpr} --item 18446744073709551616 -k 2",
        "item id '18446744073709551616' is not known",
    ),
    ("recommend {pop} --user " + ONE_MB, "user id 'xxxxxxxx"),
    # k
    ("recommend {pop} --user 1 -k -3", "k must be an integer >= 1; received -3"),
    ("recommend {pop} --user 1 -k 0", "k must be an integer >= 1; received 0"),
    ("recommend {pop} --history 10,,11", "--history must be comma-separated item ids"),
    # hyper-parameters of the wrong type, absurd sizes
    (
        "train bpr --data {d}/shop.csv {cols} -p seed=abc --out {d}/o",
        "seed must be an integer; received 'abc'",
    ),
    (
        "train bpr --data {d}/shop.csv {cols} -p factors=1.5 --out {d}/o",
        "factors must be an integer; received '1.5'",
    ),
    (
        "train bpr --data {d}/shop.csv {cols} -p lr=fast --out {d}/o",
        "lr must be a number; received 'fast'",
    ),
    (
        "train bpr --data {d}/shop.csv {cols} -p progress=1 --out {d}/o",
        "progress must be true or false",
    ),
    (
        "train softmax-dnn --data {d}/shop.csv {cols} -p hidden=[256,x] --out {d}/o",
        "hidden must be an integer",
    ),
    (
        "train bpr --data {d}/shop.csv {cols} -p factors=10000000000 --out {d}/o",
        "factors=10000000000 asks for 4 x 10,000,000,000 user and 4 x 10,000,000,000 item tables",
    ),
    (
        "train bpr --data {d}/shop.csv {cols} -p seed=" + ONE_MB + " --out {d}/o",
        "seed must be an integer",
    ),
    # columns
    (
        "train popularity --data {d}/shop.csv --user-col user --item-col user --out {d}/o",
        "--user-col and --item-col must name different columns; received 'user' for both",
    ),
    (
        "train popularity --data {d}/shop.csv {cols} --time-col user --out {d}/o",
        "--user-col and --time-col must name different columns",
    ),
    (
        "train popularity --data {d}/shop.csv {cols} --rating-col item --out {d}/o",
        "--item-col and --rating-col must name different columns",
    ),
    (
        "train popularity --data {d}/shop.csv {cols} --group-col user --out {d}/o",
        "--user-col and --group-col must name different columns",
    ),
    (
        "train popularity --data {d}/shop.csv {cols} --time-format %d/%m/%Y --out {d}/o",
        "--time-format describes --time-col, which was not given",
    ),
    # files and time columns
    ("train popularity --data {d}/empty.csv {cols} --out {d}/o", "is empty"),
    ("train popularity --data {d}/header.csv {cols} --out {d}/o", "has no rows"),
    (
        "train explicit-mf --data {d}/nan.csv {cols} --rating-col r --out {d}/o",
        "rating column 'r' has 2 missing or non-numeric values",
    ),
    (
        "train popularity --data {d}/ambiguous.csv {cols} --time-col ts --out {d}/o",
        "time column 'ts' has dates that read day-first or month-first ('01/02/2021') beside dates that read only "
        "day-first ('13/02/2021'); pass time_format='%d/%m/%Y' (--time-format)",
    ),
    (
        "train popularity --data {d}/only-ambiguous.csv {cols} --time-col ts --out {d}/o",
        "('01/02/2021' and '02/03/2021')",
    ),
    (
        "train popularity --data {d}/ambiguous.csv {cols} --time-col ts --time-format %m/%d/%Y --out {d}/o",
        "do not match time_format='%m/%d/%Y', e.g. '13/02/2021'",
    ),
    (
        "train popularity --data {d}/mixed-formats.csv {cols} --time-col ts --out {d}/o",
        "mixes date formats: '2021-01-02' and 'Jan 5 2021'",
    ),
    (
        "train popularity --data {d}/naive-aware.csv {cols} --time-col ts --out {d}/o",
        "mixes times with a UTC offset",
    ),
    (
        "train popularity --data {d}/unix.csv {cols} --time-col ts --out {d}/o",
        "unparseable value 1e+20",
    ),
    # --out (the model-directory helper's checks, made before any fitting)
    ("train popularity --data {d}/shop.csv {cols} --out ''", "out must name a directory to write"),
    ("train popularity --data {d}/shop.csv {cols} --out .", "is the current directory"),
    (
        "train popularity --data {d}/shop.csv {cols} --out {d}/file.txt",
        "is an existing file, not a directory",
    ),
    (
        "train popularity --data {d}/shop.csv {cols} --out {d}/notes",
        "is a non-empty directory that is not an embrec",
    ),
    # serve
    ("serve {pop} --port {busy}", "--port {busy} is already in use on '127.0.0.1'"),
    (
        "serve {pop} --host 192.0.2.77 --port 8000",
        "--host '192.0.2.77' is not an address of this machine",
    ),
    ("serve {pop} --host no-such-host.invalid", "which does not resolve"),
    ("serve {pop} --port 70000", "--port must be between 1 and 65535; received 70000"),
]


@pytest.mark.parametrize("line, says", CASES, ids=[c[0].split(" --out")[0][:60] for c in CASES])
def test_bad_input_is_one_line_and_exit_1(work, line, says):
    sock, port = busy_port()
    try:
        fill = {"d": work, "pop": work / "popularity", "bpr": work / "bpr", "busy": port}
        line = line.replace("{cols}", " ".join(DATA))
        r = runner.invoke(app, ["" if a == "''" else a.format(**fill) for a in line.split(" ")])
    finally:
        sock.close()
    assert r.exit_code == 1, (r.exit_code, r.stdout[-300:], r.stderr[-300:], r.exception)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and r.stdout == ""
    error = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(error) == 1 and lines[-1] == error[0], lines
    assert says.format(busy=port) in error[0], error[0]
    assert len(error[0]) < 400  # a 1 MB id or value is never echoed whole
    assert (
        not (work / "notes" / "model.json").exists()
        and (work / "notes" / "notes.txt").read_text() == "mine\n"
    )
    assert (work / "file.txt").read_text() == "mine\n"
