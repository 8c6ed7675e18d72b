"""Absurd table sizes are refused, naming the parameter, before anything is allocated."""

from __future__ import annotations

import pytest

from embrec import memory
from embrec.datasets import synthetic
from embrec.errors import InvalidParameterError
from embrec.models.registry import create


def test_check_tables_compares_with_free_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000 * 64 * 4)
    memory.check_tables("factors", 64, {"user": 600, "item": 400})  # exactly what is free: fine
    with pytest.raises(InvalidParameterError) as err:
        memory.check_tables("factors", 65, {"user": 600, "item": 400})
    assert str(err.value) == (
        "factors=65 asks for 600 x 65 user and 400 x 65 item tables (253.9 KiB), more than "
        "the 250.0 KiB of memory free on this machine; choose a smaller factors."
    )
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown platform: no check
    memory.check_tables("factors", 10**12, {"user": 10**6})


def test_free_memory_is_read_on_this_machine():
    free = memory.available_bytes()
    assert free is not None and 2**20 < free < 2**50


@pytest.mark.parametrize(
    "model, params, says",
    [
        ("bpr", {"factors": 10**10, "epochs": 1}, "factors=10000000000 asks for"),
        ("explicit-mf", {"factors": 10**10, "epochs": 1}, "factors=10000000000 asks for"),
        ("als", {"factors": 10**10}, "factors=10000000000 asks for"),
        ("softmax-dnn", {"dim": 10**10, "epochs": 1}, "dim=10000000000 asks for"),
        ("two-tower", {"dim": 10**10, "epochs": 1}, "asks for"),
        ("rnn", {"hidden_dim": 10**10, "epochs": 1}, "hidden_dim=10000000000 asks for"),
        ("sasrec", {"dim": 10**10, "epochs": 1}, "dim=10000000000 asks for"),
    ],
)
def test_models_refuse_absurd_sizes_before_allocating(model, params, says):
    log = synthetic(n_users=30, n_items=40, n_interactions=300, seed=1)
    with pytest.raises(InvalidParameterError, match=says) as err:
        create(model, **params).fit(log)
    assert "of memory free on this machine; choose a smaller" in str(err.value)
