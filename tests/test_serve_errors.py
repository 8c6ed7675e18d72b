"""Every kind of HTTP error answers in the service's one JSON shape ``{"error", "detail"}``, over real HTTP,
and ``serve`` reports a used port or a bad host in one sentence naming the option."""

from __future__ import annotations

import socket

import httpx
import pandas as pd
import pytest

from embrec.data import Interactions
from embrec.errors import InvalidParameterError
from embrec.serve import create_app
from embrec.serve.listen import bind
from tests.planted_model import PlantedVectors, registered
from tests.test_serve import running

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A planted model over integer ids (users 1..5, items 10..13, and the largest int64)."""
    big = 2**63 - 1
    log = pd.DataFrame({"u": [1, 2, 3, 4, 5, 1, 2, big], "i": [10, 11, 12, 10, 11, 12, 13, big]})
    path = tmp_path_factory.mktemp("errs") / "ints"
    with registered():
        PlantedVectors().fit(Interactions.from_frame(log, user_col="u", item_col="i")).save(path)
        with running(create_app(path, max_body_bytes=10_000)) as base:
            yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def check_shape(r: httpx.Response, status: int, kind: str, says: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == kind, body
    assert says in body["detail"] and len(body["detail"]) < 500, body["detail"]


@pytest.mark.parametrize(
    "path, body, status, kind, says",
    [
        # ids beyond int64: unknown, never OverflowError / 500
        (
            "/recommend",
            {"user": 10**30},
            404,
            "unknown_id",
            "user id 1000000000000000000000000000000 is not known",
        ),
        (
            "/recommend",
            {"user": 2**64},
            404,
            "unknown_id",
            "user id 18446744073709551616 is not known",
        ),
        ("/recommend", {"user": "1" * 31}, 404, "unknown_id", "is not known"),
        (
            "/recommend",
            {"history": [10, 2**64], "k": 2},
            404,
            "unknown_id",
            "item id 18446744073709551616",
        ),
        ("/similar", {"item": 2**64, "k": 2}, 404, "unknown_id", "item id 18446744073709551616"),
        ("/embed", {"history": [-(2**70)]}, 404, "unknown_id", "item id -1180591620717411303424"),
        # booleans are not ids nor counts (pydantic would read true as 1; user 1 and k=1 exist)
        (
            "/recommend",
            {"user": True, "k": 2},
            422,
            "invalid_request",
            "user: must be an integer or a string, not the boolean true",
        ),
        (
            "/recommend",
            {"history": [10, False], "k": 2},
            422,
            "invalid_request",
            "history.1: must be an integer or a string",
        ),
        ("/similar", {"item": True, "k": 2}, 422, "invalid_request", "not the boolean true"),
        (
            "/recommend",
            {"user": 1, "k": True},
            422,
            "invalid_request",
            "k: must be an integer, not the boolean true",
        ),
        (
            "/recommend",
            {"user": 1, "k": 2, "exclude_seen": "yes"},
            422,
            "invalid_request",
            "exclude_seen: Input should be a valid boolean",
        ),
        (
            "/recommend",
            {"user": 1, "k": 2, "exclude_seen": 1},
            422,
            "invalid_request",
            "exclude_seen",
        ),
        # a 1 MB-ish id is not echoed whole (the body limit here is 10 kB: 9,000 characters)
        ("/recommend", {"user": "x" * 9000}, 404, "unknown_id", "'xxxxxxxx"),
    ],
)
def test_bad_values(client, path, body, status, kind, says):
    r = client.post(path, json=body)
    check_shape(r, status, kind, says)
    assert len(r.json()["detail"]) < 200


def test_int64_extremes_are_still_ids(client):
    big = 2**63 - 1
    r = client.post("/recommend", json={"user": big, "k": 2})
    assert r.status_code == 200 and r.json()["user"] == big
    r = client.post("/similar", json={"item": str(big), "k": 2})  # text of an int id: the int id
    assert r.status_code == 200 and r.json()["item"] == big


@pytest.mark.parametrize(
    "method, path, kw, status, kind, says",
    [
        (
            "GET",
            "/recommend",
            {},
            405,
            "method_not_allowed",
            'GET is not allowed on "/recommend"; use POST',
        ),
        ("PUT", "/similar", {"json": {"item": 10}}, 405, "method_not_allowed", "use POST"),
        ("POST", "/healthz", {"json": {}}, 405, "method_not_allowed", "use GET"),
        ("GET", "/nowhere", {}, 404, "not_found", 'there is no endpoint "/nowhere"'),
        ("GET", "/" + "x" * 5000, {}, 404, "not_found", "there is no endpoint"),
        (
            "POST",
            "/recommend",
            {
                "content": b"user=1",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
            'Content-Type: application/json; received Content-Type "application/x-www-form',
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": 1}', "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        (
            "POST",
            "/embed",
            {"content": b'{"history": [10]}'},
            415,
            "unsupported_media_type",
            "received no Content-Type",
        ),
        (
            "POST",
            "/recommend",
            {
                "content": b'{"user": 1, "k": 2}',
                "headers": {"content-type": "application/json; charset=utf-8"},
            },
            200,
            None,
            None,
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": "\xff\xfe"}', "headers": JSON},
            400,
            "bad_request",
            "encoded as UTF-8",
        ),
        (
            "POST",
            "/recommend",
            {"content": b"\xff\xfe{", "headers": JSON},
            400,
            "bad_request",
            "UTF-8",
        ),
        (
            "POST",
            "/recommend",
            {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON},
            400,
            "bad_request",
            "nested",
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": ' + b"[" * 500 + b"]" * 500 + b"}", "headers": JSON},
            422,
            "invalid_request",
            "user.int: Input should be a valid integer",
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": ', "headers": JSON},
            422,
            "invalid_request",
            "valid JSON",
        ),
        (
            "POST",
            "/recommend",
            {"content": b"", "headers": JSON},
            422,
            "invalid_request",
            "received an empty body",
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": 1, "k": 1e400}', "headers": JSON},
            422,
            "invalid_request",
            "finite",
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": NaN}', "headers": JSON},
            422,
            "invalid_request",
            "finite number",
        ),
        (
            "POST",
            "/recommend",
            {"content": b'{"user": 1}' + b" " * 10_000, "headers": JSON},
            413,
            "body_too_large",
            "at most 10000 bytes; received 10011 bytes",
        ),
    ],
)
def test_http_errors_share_the_shape(client, method, path, kw, status, kind, says):
    r = client.request(method, path, **kw)
    if kind is None:
        assert r.status_code == status, r.text
        return
    check_shape(r, status, kind, says)
    if status == 405:
        assert r.headers["allow"] == says.rsplit(" ", 1)[-1]


def test_streamed_body_over_the_limit_is_413_and_the_service_keeps_answering(url):
    def chunks():
        yield b'{"history": ['
        for _ in range(3000):
            yield b"10, "
        yield b"10]}"

    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/embed", content=chunks(), headers=JSON)  # chunked: no Content-Length
        check_shape(r, 413, "body_too_large", "at most 10000 bytes; received more")
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/embed", json={"history": [10, 11]}).status_code == 200


def test_keep_alive_survives_bad_ids(url):
    """An out-of-range id used to be a 500 that dropped the connection; now it is a 404 on the same one."""
    with httpx.Client(base_url=url, timeout=30) as c:
        codes = [
            c.post("/recommend", json={"user": u, "k": 2}).status_code
            for u in (2**64, 1, 10**30, 2)
        ]
        assert codes == [404, 200, 404, 200]
        pool = c._transport._pool
        assert len(pool.connections) == 1  # one connection served all four


def test_bind_names_the_option():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(
            InvalidParameterError, match=rf"^--port {port} is already in use on '127.0.0.1'"
        ):
            bind("127.0.0.1", port)
    with pytest.raises(
        InvalidParameterError, match="^--host '192.0.2.77' is not an address of this machine"
    ):
        bind("192.0.2.77", 8000)
    with pytest.raises(
        InvalidParameterError,
        match="^--host must be .* received 'no-such-host.invalid', which does",
    ):
        bind("no-such-host.invalid", 8000)
    with pytest.raises(
        InvalidParameterError, match="^--port must be an integer between 1 and 65535; received 0"
    ):
        bind("127.0.0.1", 0)
    sock = bind("127.0.0.1", _free_port())
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_serving_process_runs_torch_and_blas_on_one_thread():
    """Set once per serving process (requests are small products; threads only contend), not per call."""
    import subprocess
    import sys

    code = (
        "import numpy, scipy.linalg, torch; from threadpoolctl import threadpool_info;"
        "from embrec.serve.app import _one_thread; _one_thread();"
        "print(torch.get_num_threads(), sorted({l['num_threads'] for l in threadpool_info() if l['user_api'] == 'blas'}))"
    )
    env = {
        **__import__("os").environ,
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    }  # start from 2
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "[1]"]
