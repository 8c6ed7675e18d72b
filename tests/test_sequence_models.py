"""Sequence models (GRU, LSTM, LSTM + user, SASRec, GRU + transition prior): planted successor rules,
padding, streaming, unknown ids, model files, and the transition prior / bought-item mask options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import embrec
from embrec import Interactions, Ragged
from embrec.errors import InvalidParameterError, UnknownIdError
from embrec.models.rnn import RNNRecommender, prefix_chains
from embrec.models.sasrec import SASRec
from embrec.models.sequential import training_sequences
from embrec.nn.sequence import SequenceBatch, length_batches, make_batch, next_item_windows

N_ITEMS = 24
SMALL = dict(
    epochs=40,
    batch_size=32,
    lr=1e-2,
    dropout=0.0,
    user_dropout=0.0,
    device="cpu",
    seed=0,
    progress=False,
)
RNN_SMALL = dict(embedding_dim=16, user_dim=8, hidden_dim=32, **SMALL)
SAS_SMALL = dict(dim=32, num_heads=2, num_layers=1, max_len=12, **SMALL)
MODELS = {
    "gru": lambda **kw: RNNRecommender(cell="gru", **{**RNN_SMALL, **kw}),
    "lstm": lambda **kw: RNNRecommender(cell="lstm", **{**RNN_SMALL, **kw}),
    "lstm-user": lambda **kw: RNNRecommender(cell="lstm", use_user=True, **{**RNN_SMALL, **kw}),
    "sasrec": lambda **kw: SASRec(**{**SAS_SMALL, **kw}),
    "gru-prior": lambda **kw: RNNRecommender(
        cell="gru",
        use_user=True,
        sequences="timeline",
        transition_prior="item",
        mask_bought=True,
        **{**RNN_SMALL, **kw},
    ),
    "gru-mixture": lambda **kw: RNNRecommender(
        cell="gru", transition_prior="mixture", **{**RNN_SMALL, **kw}
    ),
}


def successor(i: int, user: int = 0) -> int:
    """The planted rule: item i is always followed by f(i) (a permutation of the items); users of the
    odd group follow a different permutation g."""
    return (5 * i + 3) % N_ITEMS if user % 2 == 0 else (7 * i + 1) % N_ITEMS


def successor_log(
    *,
    n_tx: int = 240,
    n_users: int = 8,
    per_user_rule: bool = False,
    seed: int = 0,
    groups: bool = True,
) -> Interactions:
    """Transactions of 3-6 items: a random first item, then the successor rule."""
    rng = np.random.default_rng(seed)
    rows, t0 = [], pd.Timestamp("2021-01-01")
    for g in range(n_tx):
        user, item = int(rng.integers(n_users)), int(rng.integers(N_ITEMS))
        for j in range(int(rng.integers(3, 7))):
            rows.append((f"u{user}", f"i{item:02d}", t0 + pd.Timedelta(minutes=10 * g + j), g))
            item = successor(item, user if per_user_rule else 0)
    frame = pd.DataFrame(rows, columns=["user", "item", "time", "group"])
    return Interactions.from_frame(
        frame,
        user_col="user",
        item_col="item",
        time_col="time",
        group_col="group" if groups else None,
    )


def successor_accuracy(
    model, log: Interactions, *, users: list[int], per_user_rule: bool = False
) -> float:
    """Top-1 accuracy of next_item_scores on every (user, item) one-item prefix."""
    pairs = [(u, i) for u in users for i in range(N_ITEMS)]
    user_rows = model.users_.encode([f"u{u}" for u, _ in pairs])
    prefixes = Ragged.from_lists([model.items_.encode([f"i{i:02d}"]) for _, i in pairs])
    truth = model.items_.encode(
        [f"i{successor(i, u if per_user_rule else 0):02d}" for u, i in pairs]
    )
    scores = model.next_item_scores(user_rows, prefixes)
    scores[:, 0] = -np.inf
    return float((scores.argmax(axis=1) == truth).mean())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread, and far faster on a busy machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def log() -> Interactions:
    return successor_log()


@pytest.fixture(scope="module")
def fitted(log) -> dict[str, object]:
    return {name: make().fit(log) for name, make in MODELS.items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_successor_rule_is_learned(fitted, log, name):
    assert successor_accuracy(fitted[name], log, users=list(range(8))) >= 0.95


def test_user_embedding_learns_per_user_rules():
    """Even users follow f, odd users g: only the model that sees the user can tell them apart."""
    log = successor_log(per_user_rule=True, n_tx=320, seed=1)
    with_user = MODELS["lstm-user"]().fit(log)
    without = MODELS["lstm"]().fit(log)
    assert successor_accuracy(with_user, log, users=list(range(8)), per_user_rule=True) >= 0.95
    assert successor_accuracy(without, log, users=list(range(8)), per_user_rule=True) <= 0.75


@pytest.mark.parametrize("name", ["gru", "lstm-user", "sasrec", "gru-prior"])
def test_padding_never_changes_the_loss(fitted, log, name):
    model = fitted[name]
    tokens, users = training_sequences(log, model.sequences)
    windows = next_item_windows(tokens, users, max_len=model.max_len)
    rows = np.arange(16)
    batch = make_batch(windows, rows)
    lengths = torch.as_tensor(windows.inputs.lengths[rows])
    pad = torch.arange(batch.items.shape[1])[None, :] >= lengths[:, None]  # (B, T)
    assert pad.any(), "the test batch must hold padding"
    model.module_.eval()
    with torch.no_grad():
        base = model._batch_loss(batch)
        noisy = batch.items.masked_fill(pad, 0) + pad * torch.randint(1, N_ITEMS, batch.items.shape)
        changed = model._batch_loss(SequenceBatch(noisy, batch.targets, batch.users))
        width = 3  # extra padded columns with random items
        wider = SequenceBatch(
            torch.cat([batch.items, torch.randint(1, N_ITEMS, (16, width))], dim=1),
            torch.cat([batch.targets, torch.zeros(16, width, dtype=torch.int64)], dim=1),
            batch.users,
        )
        widened = model._batch_loss(wider)
    torch.testing.assert_close(changed, base, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(widened, base, rtol=1e-6, atol=1e-6)


def test_windows_shift_targets_and_open_transactions(log):
    tokens, users = training_sequences(log, "transaction")
    first = log.item[: np.diff(log.group_offsets())[0]]
    assert tokens[0].tolist() == [0, *first.tolist()]  # "nothing bought yet" opens the transaction
    w = next_item_windows(Ragged.from_lists([[0, 1, 2, 3, 4, 5, 6]]), np.array([3]), max_len=4)
    assert w.inputs.to_lists() == [[0, 1, 2, 3], [4, 5]]
    assert w.targets.to_lists() == [[1, 2, 3, 4], [5, 6]]
    assert w.users.tolist() == [3, 3]


def test_timeline_sequences_join_a_users_transactions():
    log = successor_log(n_tx=6, n_users=2, seed=3)
    tokens, users = training_sequences(log, "timeline")
    assert len(tokens) == 2 and sorted(users.tolist()) == [1, 2]
    for row, u in zip(tokens, users):
        own = [
            log.item[s:e].tolist()
            for s, e in zip(log.group_offsets()[:-1], log.group_offsets()[1:])
            if log.user[s] == u
        ]
        assert row.tolist() == [t for tx in own for t in [0, *tx]]


@pytest.mark.parametrize("name", ["gru", "lstm-user", "sasrec", "gru-prior", "gru-mixture"])
def test_streaming_equals_scoring_the_whole_prefix(fitted, name):
    model = fitted[name]
    raw = ["i03", "i18", "i21", "i04", "i11", "i07"]
    for user in ("u1", None):
        session = model.session(user=user)
        row = model.users_.encode([user])[0] if user else 0
        for step in range(len(raw) + 1):
            prefix = Ragged.from_lists([model.items_.encode(raw[:step]) if step else []])
            whole = model.next_item_scores(np.array([row]), prefix)[0]
            np.testing.assert_allclose(session.scores(), whole, rtol=1e-5, atol=1e-5)
            if step < len(raw):
                session.add(raw[step])
    top = session.top_k(5)
    assert not set(top.ids[0]) & set(raw)  # the transaction's items are left out
    assert set(session.top_k(N_ITEMS, exclude_bought=False).ids[0]) >= set(raw)


def test_many_prefixes_share_one_run_and_match_one_by_one(fitted):
    model = fitted["lstm-user"]
    prefixes = Ragged.from_lists([[3, 7], [3], [3, 7, 9], [5], [3, 7], []])
    users = np.array([1, 1, 1, 2, 4, 1])
    leaves, leaf_of = prefix_chains(users, Ragged.from_lists([[0, *p] for p in prefixes]))
    assert sorted(leaves.tolist()) == [2, 3, 4]  # [], [3], [3, 7] of user 1 ride on [3, 7, 9]
    assert leaf_of.tolist() == [2, 2, 2, 3, 4, 2]
    together = model.next_item_scores(users, prefixes)
    alone = np.vstack(
        [model.next_item_scores(users[[b]], prefixes.select([b])) for b in range(len(users))]
    )
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_unknown_user_gets_the_unknown_row(fitted):
    model = fitted["lstm-user"]
    prefix = Ragged.from_lists([model.items_.encode(["i05"])])
    unknown = model.next_item_scores(np.array([0]), prefix)[0]
    np.testing.assert_allclose(
        model.session(user="stranger").add("i05").scores(), unknown, rtol=1e-5, atol=1e-6
    )
    known = model.next_item_scores(np.array([1]), prefix)[0]
    assert not np.allclose(known, unknown)  # a known user has a row of their own
    weights = model.module_.encoder.user_embedding.weight
    assert weights.shape[0] == model.users_.size  # row 0 = unknown, then one per training user


def test_unknown_item_in_a_history_is_a_clear_error(fitted):
    model = fitted["gru"]
    with pytest.raises(UnknownIdError, match="item id 'nope' is not known"):
        model.recommend(histories=[["i01", "nope"]], k=3)
    with pytest.raises(UnknownIdError, match="item id 'nope' is not known"):
        model.session().add("nope")
    # items unknown to training arrive as row 0 in protocol prefixes: skipped, not an error
    with_gap = model.next_item_scores(np.array([0]), Ragged.from_lists([[4, 0]]))
    np.testing.assert_allclose(
        with_gap, model.next_item_scores(np.array([0]), Ragged.from_lists([[4]]))
    )


def test_recommend_histories_follow_the_rule(fitted):
    model = fitted["gru"]
    recs = model.recommend(histories=[["i02"], ["i10", "i05"]], k=1)
    assert recs.ids[:, 0].tolist() == [f"i{successor(2):02d}", f"i{successor(5):02d}"]


@pytest.mark.parametrize("name", ["lstm-user", "sasrec", "gru-prior", "gru-mixture"])
def test_save_load_gives_identical_outputs(fitted, tmp_path, name):
    model = fitted[name]
    model.save(tmp_path / name)
    loaded = embrec.load(tmp_path / name)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    prefixes = Ragged.from_lists([[1, 2], [], [5]])
    users = np.array([1, 0, 3])
    np.testing.assert_array_equal(
        loaded.next_item_scores(users, prefixes), model.next_item_scores(users, prefixes)
    )
    a = model.recommend(users=["u2"], k=5)
    b = loaded.recommend(users=["u2"], k=5)
    assert a.ids.tolist() == b.ids.tolist()


def test_timeline_model_from_a_file_without_groups(tmp_path):
    """Any timestamped log given as a file: no group column -> each user's timeline is one sequence."""
    from embrec.datasets import from_file

    frame = successor_log(n_tx=160, groups=False).to_frame()
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    log = from_file(path, user_col="user", item_col="item", time_col="timestamp")
    assert log.group is None
    model = MODELS["gru"](sequences="timeline", epochs=30).fit(log)
    # a user's timeline chains transactions, so the rule holds at most positions; scored from a history
    recs = model.recommend(histories=[["i02"], ["i07", "i14"]], k=1)
    assert recs.ids[:, 0].tolist() == [f"i{successor(2):02d}", f"i{successor(14):02d}"]


def test_parameters_are_checked():
    with pytest.raises(InvalidParameterError, match="cell must be one of 'gru', 'lstm'"):
        RNNRecommender(cell="rnn")
    with pytest.raises(InvalidParameterError, match="sequences must be one of"):
        SASRec(sequences="session")
    with pytest.raises(InvalidParameterError, match="dim must be a multiple of num_heads"):
        SASRec(dim=30, num_heads=4)
    assert embrec.models.create("rnn", cell="lstm", use_user=True).use_user is True
    with pytest.raises(
        InvalidParameterError, match="transition_prior must be one of 'none', 'scalar', 'item'"
    ):
        RNNRecommender(transition_prior="yes")
    with pytest.raises(InvalidParameterError, match="prior_smoothing"):
        RNNRecommender(transition_prior="scalar", prior_smoothing=0.0)
    with pytest.raises(InvalidParameterError, match="mask_bought must be True or False"):
        RNNRecommender(mask_bought="yes")
    assert SASRec().transition_prior == "none" and not SASRec().mask_bought  # the class defaults


def test_validation_is_monitored_each_epoch_when_patience_is_set(log):
    valid = successor_log(n_tx=60, seed=5)
    model = MODELS["gru"](epochs=20, patience=50).fit(log, valid=valid)
    curve = [h["valid"] for h in model.history_]
    assert len(curve) == 20
    # top-5 next-item accuracy: every position but a transaction's random first item is predictable
    first = (np.diff(valid.group_offsets()) > 0).sum() / len(valid)
    assert max(curve) >= 1 - first - 0.05 and curve[0] < max(curve)
    plain = successor_log(
        n_tx=60, seed=5, groups=False
    )  # no groups: hit@10 of each user's first event
    model = MODELS["gru"](epochs=2, patience=50).fit(successor_log(groups=False), valid=plain)
    assert all(0.0 <= h["valid"] <= 1.0 for h in model.history_)


# transition prior and bought-item mask ---------------------------------------------------------------
def log_prior(tokens: Ragged, popularity: np.ndarray, smoothing: float, last: int) -> np.ndarray:
    """log P(b | last) = log((C[last, b] + s * P_pop(b)) / (sum_b C[last, b] + s)), counted in plain Python."""
    n = popularity.size
    counts = np.zeros(n)
    for row in tokens:
        for a, b in zip(row[:-1].tolist(), row[1:].tolist()):
            if a == last and b > 0:
                counts[b] += 1
    pop = popularity.astype(float).copy()
    pop[0] = 0.0
    pop /= pop.sum()
    return np.log(np.maximum((counts + smoothing * pop) / (counts.sum() + smoothing), 1e-8))


@pytest.mark.parametrize("kind", ["scalar", "item", "mixture"])
def test_prior_logits_are_net_logits_plus_weight_times_log_prior(log, kind):
    """With the prior weight fixed, every score = network logit + w[last] * log P(next | last token);
    "mixture": log(g * P(next | last) + (1 - g) * softmax(network)), g = sigmoid(w[last])."""
    model = MODELS["gru"](transition_prior=kind, prior_smoothing=0.5, epochs=2, use_user=True).fit(
        log
    )
    tokens, _ = training_sequences(log, "transaction")
    weight = model.module_.prior_weight
    prefixes = Ragged.from_lists([[], [3], [3, 7], [11, 0, 5]])  # last tokens 0 (opening), 3, 7, 5
    last = [0, 3, 7, 5]
    users = np.array([1, 2, 0, 3])
    with torch.no_grad():
        weight.fill_(
            -1e4 if kind == "mixture" else 0.0
        )  # the network alone (mixture: its log-softmax)
        net = model.next_item_scores(users, prefixes)  # (4, N)
        fixed = np.arange(weight.numel()) * 0.1 - 0.3 if weight.numel() > 1 else np.array([0.7])
        weight.copy_(torch.as_tensor(fixed, dtype=torch.float32))
    scores = model.next_item_scores(users, prefixes)
    for b, a in enumerate(last):
        w = fixed[a] if weight.numel() > 1 else fixed[0]
        prior = log_prior(tokens, log.item_counts(), 0.5, a)
        if kind == "mixture":
            g = 1 / (1 + np.exp(-w))
            expected = np.log(g * np.exp(prior) + (1 - g) * np.exp(net[b]))
        else:
            expected = net[b] + w * prior
        np.testing.assert_allclose(scores[b], expected, rtol=1e-5, atol=1e-4)
    session = model.session(user=model.users_.decode([2])[0]).add(model.items_.decode([3])[0])
    np.testing.assert_allclose(session.scores(), scores[1], rtol=1e-5, atol=1e-5)


def test_training_prior_leaves_the_positions_own_transition_out():
    from embrec.models.transition_prior import TransitionPrior, transition_counts

    tokens = Ragged.from_lists([[0, 1, 2], [0, 1, 3], [0, 2, 1, 2]])
    counts = transition_counts(tokens, 4)
    assert counts.toarray().tolist() == [[0, 2, 1, 0], [0, 0, 2, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    pop = np.array([0, 3, 3, 1])  # P_pop = 3/7, 3/7, 1/7
    prior = TransitionPrior(counts, pop, 1.0, torch.device("cpu"))
    last = torch.tensor([1, 1, 2])
    full = prior.rows(last).numpy()
    np.testing.assert_allclose(
        np.exp(full[0]), [1e-8, 3 / 7 / 4, (2 + 3 / 7) / 4, (1 + 1 / 7) / 4], rtol=1e-5
    )
    out = prior.rows(last, leave_out=torch.tensor([2, 3, 1])).numpy()
    # the target's count and the row total drop by one: (C - [b = target] + s P_pop) / (n - 1 + s)
    np.testing.assert_allclose(
        np.exp(out[0]), [1e-8 * 4 / 3, 3 / 7 / 3, (1 + 3 / 7) / 3, (1 + 1 / 7) / 3], rtol=1e-5
    )
    np.testing.assert_allclose(
        np.exp(out[1]), [1e-8 * 4 / 3, 3 / 7 / 3, (2 + 3 / 7) / 3, (1 / 7) / 3], rtol=1e-5
    )
    np.testing.assert_allclose(np.exp(out[2]), [2e-8, 3 / 7, 3 / 7, 1 / 7], rtol=1e-5)


def test_bought_mask_holds_the_transactions_items_so_far():
    from embrec.models.transition_prior import bought_mask

    items = torch.tensor(
        [[0, 4, 2, 0, 5, 3], [2, 1, 0, 0, 0, 0]]
    )  # row 1: a window opening mid-transaction
    targets = torch.tensor([[4, 2, 0, 5, 3, 1], [1, 6, 0, 0, 0, 0]])
    mask = bought_mask(items, targets > 0, 7)
    rows = [sorted(np.flatnonzero(m).tolist()) for m in mask.numpy()]
    assert rows == [
        [],
        [4],
        [],
        [5],
        [3, 5],
        [2],
        [1, 2],
    ]  # (0, 2) has no target; 0 opens a transaction


def test_mask_bought_loss_is_cross_entropy_over_the_items_not_yet_bought(log):
    model = MODELS["gru"](mask_bought=True, epochs=1).fit(log)
    batch = SequenceBatch(
        torch.tensor([[0, 4, 2, 7], [0, 5, 0, 0]]),
        torch.tensor([[4, 2, 4, 9], [5, 0, 0, 0]]),
        torch.tensor([1, 2]),
    )
    model.module_.eval()
    with torch.no_grad():
        got = model._batch_loss(batch)
        hidden = model._batch_hidden(batch)
        terms = []
        for b, t, bought in [
            (0, 0, []),
            (0, 1, [4]),
            (0, 3, [4, 2, 7]),
            (1, 0, []),
        ]:  # (0, 2): 4 bought again
            logits = model._logits(hidden[b, t][None])[0].clone()
            logits[bought] = -np.inf
            terms.append(-torch.log_softmax(logits, 0)[batch.targets[b, t]])
    torch.testing.assert_close(got, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


def test_mixture_scores_are_log_probabilities(fitted):
    model = fitted["gru-mixture"]
    scores = model.next_item_scores(np.array([1, 0, 3]), Ragged.from_lists([[1, 2], [], [5]]))
    np.testing.assert_allclose(np.exp(scores.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-4)
    assert model.module_.prior_weight.shape == (model.items_.size,)  # one gate per last token


def test_transition_prior_refuses_a_dense_table_past_its_memory_cap(monkeypatch):
    from embrec.models import transition_prior

    monkeypatch.setattr(
        transition_prior, "MAX_PRIOR_BYTES", 4 * 10 * 10 - 1
    )  # a 10-row table is one byte too many
    counts = transition_prior.transition_counts(Ragged.from_lists([[1, 2, 3]]), 10)
    with pytest.raises(InvalidParameterError, match="transition_prior needs a dense 10 x 10 table"):
        transition_prior.TransitionPrior(counts, np.ones(10), 1.0, torch.device("cpu"))
    monkeypatch.setattr(transition_prior, "MAX_PRIOR_BYTES", 4 * 10 * 10)
    assert transition_prior.TransitionPrior(
        counts, np.ones(10), 1.0, torch.device("cpu")
    ).log_p.shape == (10, 10)


# batches counted in steps, early stopping on a slice carved from train ---------------------------------
def test_batches_hold_at_most_batch_tokens_steps_and_every_window_once():
    lengths = np.array([5, 20, 5, 5, 3, 5, 50, 2])
    cut = length_batches(lengths, 3, None, max_tokens=10)
    # sorted by length: 2, 3, 5 | 5, 5 | 5 | 20 | 50 (a window longer than the cap is a batch of its own)
    assert [lengths[b].tolist() for b in cut] == [[2, 3, 5], [5, 5], [5], [20], [50]]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 51, size=1000)
    cut = length_batches(lengths, 128, rng, max_tokens=256)
    assert sorted(np.concatenate(cut).tolist()) == list(range(1000))
    assert all(b.size <= 128 and (lengths[b].sum() <= 256 or b.size == 1) for b in cut)
    plain = length_batches(lengths, 128, np.random.default_rng(0))
    assert max(b.size for b in plain) == 128 and len(cut) > len(plain)


def test_batch_tokens_makes_more_steps_of_the_same_windows():
    log = successor_log(groups=False)
    # 8 timelines of ~135 items: 26 windows, one batch an epoch
    few = MODELS["gru"](epochs=5, batch_tokens=None).fit(log)
    many = MODELS["gru"](epochs=5, batch_tokens=100).fit(log)
    windows = next_item_windows(*training_sequences(log, "transaction"), max_len=few.max_len)
    lengths = windows.inputs.lengths
    assert len(length_batches(lengths, 32, np.random.default_rng(0))) == 1
    assert (
        len(length_batches(lengths, 32, np.random.default_rng(0), max_tokens=100))
        >= lengths.sum() / 100
    )
    # more optimizer steps, same passes
    assert few.history_[-1]["loss"] > many.history_[-1]["loss"] + 1.0


def rule_timelines(n_users: int = 80, seed: int = 0) -> Interactions:
    """One timeline per user (no groups) of 4-8 items following the successor rule from a random start."""
    rng = np.random.default_rng(seed)
    rows, t0 = [], pd.Timestamp("2021-01-01")
    for user in range(n_users):
        item = int(rng.integers(N_ITEMS))
        for j in range(int(rng.integers(4, 9))):
            rows.append((f"u{user}", f"i{item:02d}", t0 + pd.Timedelta(minutes=100 * user + j)))
            item = successor(item)
    frame = pd.DataFrame(rows, columns=["user", "item", "time"])
    return Interactions.from_frame(frame, user_col="user", item_col="item", time_col="time")


def test_early_stopping_without_valid_scores_a_slice_carved_from_train_as_leave_last_out_does():
    from embrec.evaluation.folds import make_fold, new_distinct_events
    from embrec.evaluation.generic import leave_last_out_scored
    from embrec.models.history_batches import carve_valid

    log = rule_timelines()
    model = MODELS["gru"](epochs=6, patience=50, valid_users=30).fit(log)
    curve = [h["valid"] for h in model.history_]
    # the slice's items follow the rule
    assert len(curve) == 6 and curve[0] < max(curve) and max(curve) >= 0.95
    rest, held = carve_valid(log, max_users=30, seed=0)
    assert held is not None and len(held) == 30
    # the best epoch's weights are kept: its figure is leave-last-out's hit@10 on (rest, held), the carved
    # events left out of training, computed by the protocol's own scorer
    fold = make_fold(
        "carved", rest, new_distinct_events(rest, held), valid_is_test=True, description=""
    )
    model.seen_ = rest.user_histories()
    assert leave_last_out_scored(model, fold).metrics["hit@10"] == pytest.approx(max(curve))
    off = MODELS["gru"](epochs=2, valid_users=30, patience=None).fit(log)  # no slice, no validation
    assert all("valid" not in h for h in off.history_)
