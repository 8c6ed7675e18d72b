"""Property-based fuzz of the HTTP API (hypothesis): arbitrary JSON bodies shaped like the request models,
arbitrary JSON values and raw bytes, against a real server. Never a 5xx; every error in the one shape
``{"error": kind, "detail": sentence}``; every 200 has the response model's fields. Bounded: a few hundred
requests, a few seconds."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embrec.data import Interactions
from embrec.serve import create_app
from tests.planted_model import PlantedVectors, registered
from tests.test_serve import running

FIELDS = {
    "/recommend": ("user", "history", "k", "exclude_seen"),
    "/similar": ("item", "k", "measure"),
    "/embed": ("history",),
}
OK_KEYS = {
    "/recommend": {"items", "k", "user", "history"},
    "/similar": {"items", "item", "measure"},
    "/embed": {"vector", "dim"},
}
SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([1, 2, 10, 11, "10", "1"]),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
field_values = {
    "user": ids,
    "item": ids,
    "history": st.one_of(st.lists(ids, max_size=6), json_values),
    "k": st.one_of(st.integers(min_value=-5, max_value=2000), st.booleans(), json_values),
    "exclude_seen": st.one_of(st.booleans(), json_values),
    "measure": st.one_of(st.sampled_from(["cosine", "dot"]), json_values),
}


def bodies(path: str) -> st.SearchStrategy:
    fields = FIELDS[path]
    return st.fixed_dictionaries(
        {}, optional={f: field_values[f] for f in fields}
    ) | st.dictionaries(st.sampled_from([*fields, "extra"]), json_values, max_size=4)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # 12 items, so the default k=10 is valid and most well-formed bodies reach the model
    log = pd.DataFrame({"u": [1 + j % 4 for j in range(24)], "i": [10 + j % 12 for j in range(24)]})
    path = tmp_path_factory.mktemp("fuzz") / "ints"
    with registered():
        PlantedVectors().fit(Interactions.from_frame(log, user_col="u", item_col="i")).save(path)
        with (
            running(create_app(path, max_body_bytes=4096)) as url,
            httpx.Client(base_url=url, timeout=30) as c,
        ):
            yield c


def check(r: httpx.Response, path: str) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    if r.status_code == 200:
        assert OK_KEYS[path] <= set(body), body
        return
    assert 400 <= r.status_code < 500 and set(body) == {"error", "detail"}, body
    assert (
        isinstance(body["error"], str)
        and isinstance(body["detail"], str)
        and body["detail"].endswith(".")
    )
    assert len(body["detail"]) < 600, body["detail"]


@pytest.mark.parametrize("path", sorted(FIELDS))
@SETTINGS
@given(data=st.data())
def test_request_models_fuzz(client, path, data):
    body = data.draw(bodies(path))
    check(
        client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}),
        path,
    )


@SETTINGS
@given(path=st.sampled_from(sorted(FIELDS)), value=json_values)
def test_any_json_value(client, path, value):
    check(
        client.post(path, content=json.dumps(value), headers={"content-type": "application/json"}),
        path,
    )


@SETTINGS
@given(
    path=st.sampled_from(sorted(FIELDS)),
    raw=st.binary(max_size=300),
    ctype=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
    ),
)
def test_raw_bytes_and_content_types(client, path, raw, ctype):
    headers = {"content-type": ctype} if ctype else {}
    check(client.post(path, content=raw, headers=headers), path)
