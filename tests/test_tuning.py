"""embrec tune: validation carved from training data only (a protocol whose scored part raises if read),
each protocol's carve rule, seeded and resumable studies, pruning on the per-epoch metric, every model's
search space, the CLI and benchmark --tune."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import embrec
from embrec import Interactions, api
from embrec.cli import app
from embrec.errors import DataError, InvalidParameterError
from embrec.evaluation import load_folds
from embrec.evaluation.folds import Fold
from embrec.models import registry
from embrec.models.base import Recommender
from embrec.models.search import Choice, FloatRange, IntRange, search_space_of
from embrec.models.training import TrainConfig, train_loop
from embrec.tuning import search, suggest, tune, validation_fold

runner = CliRunner()


def clustered(
    n_users: int = 60, n_clusters: int = 3, per_cluster: int = 10, bought: int = 6, seed: int = 0
):
    """Users of cluster c buy ``bought`` items of cluster c, one a day (timestamps give an order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        c = u % n_clusters
        for day, i in enumerate(rng.choice(per_cluster, bought, replace=False) + c * per_cluster):
            rows.append(
                (f"u{u}", f"i{i}", pd.Timestamp("2024-01-01") + pd.Timedelta(days=day + u % 7))
            )
    frame = pd.DataFrame(rows, columns=["user", "item", "time"])
    return Interactions.from_frame(frame, user_col="user", item_col="item", time_col="time")


class ScoredPartRead(AssertionError):
    pass


class Poisoned:
    """Stands for a protocol's scored part: touching it in any way raises."""

    def __getattr__(self, name):
        raise ScoredPartRead(f"the scored part was read ({name})")

    def __len__(self):
        raise ScoredPartRead("the scored part was read (len)")


@pytest.fixture
def poisoned_protocol(monkeypatch):
    """leave-last-out whose test (and valid) part raises when touched."""
    import embrec.evaluation as ev

    real = ev.load_folds

    def folds(name, **kw):
        ds, fs = real(name, **kw)
        return ds, [Fold(f.name, f.train, Poisoned(), Poisoned(), f.description) for f in fs]

    monkeypatch.setattr(ev, "load_folds", folds)


def test_tuning_never_reads_the_scored_part(poisoned_protocol):
    log = clustered()
    res = tune("ease", "leave-last-out", data=log, trials=4, seed=0, final=False, progress=False)
    assert len(res["trials"]) == 4 and res["results"] is None
    assert all(t["state"] == "complete" for t in res["trials"])
    # the poison works: scoring the refit on the protocol's test part does read it
    with pytest.raises(ScoredPartRead):
        tune("ease", "leave-last-out", data=log, trials=1, seed=0, final=True, progress=False)


def test_carve_rules_stay_inside_train():
    log = clustered()
    _, (fold,) = load_folds("leave-last-out", data=log)
    carved = validation_fold("leave-last-out", fold)
    # one held-out event per user: each user's last training event, and nothing of the protocol's test
    assert len(carved.test) == fold.train.n_users
    train_keys = set(
        zip(fold.train.users.decode(fold.train.user), fold.train.items.decode(fold.train.item))
    )
    held = set(
        zip(
            carved.train.users.decode(carved.test.user), carved.train.items.decode(carved.test.item)
        )
    )
    assert held <= train_keys
    # retail rule: the last RETAIL_WEEKS (4) weeks of train; a shop log of one basket a day for 70 days
    days = pd.date_range("2024-01-01", periods=70, freq="D")
    frame = pd.DataFrame(
        {
            "user": [f"u{d % 5}" for d in range(70)],
            "item": [f"i{d % 7}" for d in range(70)],
            "time": days,
            "basket": range(70),
        }
    )
    shop = Interactions.from_frame(
        frame, user_col="user", item_col="item", time_col="time", group_col="basket"
    )
    retail = validation_fold("retail-precision", Fold("valid", shop, Poisoned(), Poisoned()))
    assert (
        len(retail.test) == 29 and len(retail.train) == 41
    )  # days 41..69 (>= last - 28 days) are held out
    assert retail.train.timestamp.max() < retail.test.timestamp.min() == np.datetime64(days[41])
    with pytest.raises(InvalidParameterError, match="no validation rule"):
        validation_fold("nope", fold)


def test_seeded_study_is_reproducible_and_resumes_from_sqlite(tmp_path):
    log = clustered()
    _, folds = load_folds("leave-last-out", data=log)
    a = search("item-knn", "leave-last-out", folds, trials=3, seed=7, progress=False)
    b = search("item-knn", "leave-last-out", folds, trials=3, seed=7, progress=False)
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    best = max(t["value"] for t in a["trials"])
    assert a["best"]["value"] == best and a["direction"] == "maximize" and a["metric"] == "ndcg@10"
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    first = search(
        "item-knn", "leave-last-out", folds, trials=2, seed=7, storage=url, progress=False
    )
    again = search(
        "item-knn", "leave-last-out", folds, trials=2, seed=7, storage=url, progress=False
    )
    assert len(first["trials"]) == 2 and len(again["trials"]) == 4 and again["new_trials"] == 2
    assert again["trials"][:2] == first["trials"]
    fixed = search(
        "item-knn",
        "leave-last-out",
        folds,
        trials=2,
        seed=7,
        fixed={"weighting": "cosine"},
        progress=False,
    )
    assert all("weighting" not in t["params"] for t in fixed["trials"])
    assert fixed["best"]["params"]["weighting"] == "cosine"


class Curve(Recommender):
    """A fake learned model: its per-epoch validation figure is ``quality * epoch`` (known in advance)."""

    search_space = {"quality": FloatRange(0.0, 1.0)}

    def __init__(self, *, quality: float = 0.5, epochs: int = 6) -> None:
        self.quality = quality
        self.epochs = epochs

    def _fit(self, train, valid) -> None:
        module = torch.nn.Linear(1, 1)
        epoch = iter(range(1, 100))
        train_loop(
            module,
            batches=lambda rng, e: [torch.ones(1, 1)],
            loss=lambda x: module(x).sum() * 0,
            config=TrainConfig(epochs=self.epochs, progress=False),
            rng=np.random.default_rng(0),
            validate=lambda: self.quality * next(epoch),
        )
        self.counts_ = train.item_counts().astype(np.float32)

    def _scores(self, user_rows, histories):
        return np.broadcast_to(self.counts_ * self.quality, (len(user_rows), self.counts_.size))


def test_median_pruner_stops_trials_below_the_median(monkeypatch):
    real = registry._models
    monkeypatch.setattr(registry, "_models", lambda: {**real(), "curve": Curve})
    _, folds = load_folds("leave-last-out", data=clustered())
    res = search("curve", "leave-last-out", folds, trials=16, seed=0, progress=False)
    pruned = [t for t in res["trials"] if t["state"] == "pruned"]
    done = [t for t in res["trials"] if t["state"] == "complete"]
    assert pruned and all(t["epochs"] < 6 for t in pruned) and all(t["epochs"] == 6 for t in done)
    # the first trials run whole; a pruned trial was below the median of the finished ones' curves
    assert all(t["trial"] >= 5 for t in pruned)
    assert all(
        t["params"]["quality"]
        < np.median([d["params"]["quality"] for d in done if d["trial"] < t["trial"]])
        for t in pruned
    )


@pytest.mark.parametrize(
    "name",
    [n for n in registry.model_names() if getattr(registry.model_class(n), "search_space", None)],
)
def test_every_search_space_is_typed_and_builds_its_model(name):
    cls = registry.model_class(name)
    space = search_space_of(cls, name)
    assert all(isinstance(p, (FloatRange, IntRange, Choice)) for p in space.values())
    for key in ("lr", "reg", "regularization", "l2"):
        if isinstance(space.get(key), FloatRange):
            assert space[key].log, f"{name}.{key} acts multiplicatively: search it on a log scale"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        registry.create(name, **suggest(study.ask(), space))  # every draw is a valid model


def test_learned_models_declare_a_space_and_baselines_without_parameters_cannot_be_tuned():
    for name in (
        "als",
        "bpr",
        "implicit-mf",
        "explicit-mf",
        "rating-dnn",
        "rnn",
        "sasrec",
        "softmax-dnn",
        "two-tower",
        "ease",
        "item-knn",
    ):
        assert search_space_of(registry.model_class(name), name)
    with pytest.raises(InvalidParameterError, match="no hyper-parameters to tune"):
        api.tune("popularity", "leave-last-out", data=clustered(), trials=1)


def test_cli_tune_json_and_saved_model(tmp_path):
    log = clustered()
    frame = pd.DataFrame(
        {
            "user": log.users.decode(log.user),
            "item": log.items.decode(log.item),
            "time": log.timestamp,
        }
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    r = runner.invoke(
        app,
        [
            "tune",
            "ease",
            "--protocol",
            "leave-last-out",
            "--data",
            str(tmp_path / "log.csv"),
            "--user-col",
            "user",
            "--item-col",
            "item",
            "--time-col",
            "time",
            "--trials",
            "3",
            "--out",
            str(tmp_path / "ease"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert [x["model"] for x in res["results"]] == ["ease (defaults)", "ease (tuned)"]
    assert len(res["trials"]) == 3 and set(res["best"]["params"]) == {
        "regularization",
        "confidence",
    }
    model = embrec.load(tmp_path / "ease")
    assert model.regularization == pytest.approx(res["best"]["params"]["regularization"])
    assert model.metrics_["leave-last-out"] == res["results"][1]["metrics"]
    r = runner.invoke(
        app,
        [
            "tune",
            "popularity",
            "--protocol",
            "leave-last-out",
            "--data",
            str(tmp_path / "log.csv"),
            "--user-col",
            "user",
            "--item-col",
            "item",
        ],
    )
    assert r.exit_code == 1 and "Error: " in r.stderr and "no hyper-parameters" in r.stderr
    r = runner.invoke(
        app,
        [
            "tune",
            "ease",
            "--protocol",
            "leave-last-out",
            "--data",
            str(tmp_path / "log.csv"),
            "--user-col",
            "user",
            "--item-col",
            "item",
            "--storage",
            "postgres://x",
        ],
    )
    assert r.exit_code == 1 and "sqlite:///" in r.stderr


def test_benchmark_tune_uses_the_best_validation_settings():
    res = api.benchmark("leave-last-out", models=["ease"], data=clustered(), tune=2)
    assert set(res["tuned"]) == {"item-transition", "ease", "item-knn"}
    assert [r["model"] for r in res["results"]][:3] == [
        "popularity",
        "repeat-frequency",
        "item-transition",
    ]
    best = res["tuned"]["ease"]["best"]["params"]
    again = api.benchmark(
        "leave-last-out", models=["ease"], data=clustered(), params={"ease": best}
    )
    row = {r["model"]: r["metrics"] for r in again["results"]}["ease"]
    assert {r["model"]: r["metrics"] for r in res["results"]}[
        "ease"
    ] == row  # the row is the tuned setting's
    with pytest.raises(InvalidParameterError, match="tune"):
        api.benchmark("leave-last-out", models=["ease"], data=clustered(), tune=0)


def test_no_completed_trial_is_a_clear_error(monkeypatch):
    log = clustered()
    _, folds = load_folds("leave-last-out", data=log)
    with pytest.raises(DataError, match="no ease trial completed.*max_gib"):
        search("ease", "leave-last-out", folds, trials=2, fixed={"max_gib": 1e-9}, progress=False)


def test_a_new_study_starts_from_the_defaults_and_a_resumed_one_does_not(tmp_path):
    """Trial 0 is the model's defaults, so the best on validation is never below them."""
    _, folds = load_folds("leave-last-out", data=clustered())
    knn = registry.model_class("item-knn")
    res = search("item-knn", "leave-last-out", folds, trials=3, seed=7, progress=False)
    first = res["trials"][0]
    expect = {k: getattr(knn(), k) for k in knn.search_space}
    assert first["defaults"] is True and first["params"] == expect
    assert not any(t.get("defaults") for t in res["trials"][1:])
    assert res["best"]["value"] >= first["value"]
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    search("item-knn", "leave-last-out", folds, trials=1, seed=7, storage=url, progress=False)
    again = search(
        "item-knn", "leave-last-out", folds, trials=2, seed=7, storage=url, progress=False
    )
    assert [t.get("defaults", False) for t in again["trials"]] == [True, False, False]


def test_default_params_keeps_the_defaults_inside_the_space_only():
    from embrec.tuning.study import default_params

    class Odd:
        search_space = {
            "a": FloatRange(0.1, 1.0, log=True),
            "b": IntRange(1, 8),
            "c": Choice(((8,), (16, 8))),
            "d": Choice(("x", "y")),
            "e": IntRange(1, 8),
        }

        def __init__(self, *, a=0.5, b=64, c=(16, 8), d="z", e=3):
            pass

    assert default_params(Odd, Odd.search_space) == {"a": 0.5, "c": "16,8", "e": 3}
    for name in registry.model_names():
        cls = registry.model_class(name)
        space = getattr(cls, "search_space", None)
        if space:
            start = default_params(cls, space)
            assert start, f"{name}: no default lies in its search space"
            built = cls(
                **{
                    k: space[k].value_of(v) if isinstance(space[k], Choice) else v
                    for k, v in start.items()
                }
            )
            assert all(getattr(built, k) == getattr(cls(), k) for k in start), name
