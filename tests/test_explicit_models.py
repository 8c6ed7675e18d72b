"""Explicit-rating models (explicit MF, rating DNN) and the regression losses: known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embrec
from embrec import Ragged
from embrec.errors import DataError, InvalidParameterError, NotFittedError, UnknownIdError
from embrec.evaluation.neighbours import model_genre_overlap
from embrec.models.explicit_mf import ExplicitMF
from embrec.models.rating_dnn import RatingDNN
from embrec.models.rating_dnn_net import RatingNet
from embrec.nn.regression import RatingLoss, gravity, l2_penalty, observed_mse, row_l2
from tests.conftest import make_log


def low_rank_ratings(n_users=80, n_items=60, rank=3, density=0.5, seed=0):
    """Ratings 3 + U·Vᵀ + small noise; items belong to 3 planted clusters (V near a cluster centre).
    Returns (train, test arrays (users, items, ratings), cluster of each item id)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.9, size=(3, rank))
    cluster = rng.integers(0, 3, size=n_items)
    v = centres[cluster] + rng.normal(0, 0.15, size=(n_items, rank))
    u = rng.normal(0, 0.7, size=(n_users, rank))
    full = 3.0 + u @ v.T + rng.normal(0, 0.1, size=(n_users, n_items))
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user rated something
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True  # every item was rated
    uu, ii = np.nonzero(mask)
    test = rng.random(uu.size) < 0.15
    train = make_log([(f"u{a}", f"i{b}") for a, b in zip(uu[~test], ii[~test])], rating=full[uu[~test], ii[~test]])
    held = ([f"u{a}" for a in uu[test]], [f"i{b}" for b in ii[test]], full[uu[test], ii[test]])
    return train, held, {f"i{b}": int(cluster[b]) for b in range(n_items)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: torch's intra-op threads only add contention on a shared machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return low_rank_ratings()


@pytest.fixture(scope="module")
def mf(data):
    return ExplicitMF(factors=8, l2=0.01, epochs=150, batch_size=64, lr=0.5, valid_fraction=0.0).fit(data[0])


@pytest.fixture(scope="module")
def dnn(data):
    return RatingDNN(factors=8, hidden=(32,), dropout=0.0, l2=0.001, epochs=100, batch_size=128, lr=0.01,
                     patience=10).fit(data[0])


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# losses -----------------------------------------------------------------------------------------
def test_gravity_equals_direct_nxm_value_and_gradient():
    gen = torch.Generator().manual_seed(0)
    for n, m, d in [(7, 5, 3), (1, 9, 4), (13, 11, 1)]:
        u1 = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
        v1 = torch.randn(m, d, generator=gen, dtype=torch.float64, requires_grad=True)
        u2, v2 = u1.detach().clone().requires_grad_(True), v1.detach().clone().requires_grad_(True)
        fast = gravity(u1, v1)
        direct = ((u2 @ v2.T) ** 2).sum() / (n * m)  # the N x M matrix, formed on purpose
        assert fast.item() == pytest.approx(direct.item(), rel=1e-12)
        fast.backward()
        direct.backward()
        assert torch.allclose(u1.grad, u2.grad) and torch.allclose(v1.grad, v2.grad)
        # and the closed form: dg/dU = 2/(MN) U (VᵀV)
        assert torch.allclose(u1.grad, 2 / (n * m) * u1.detach() @ (v1.detach().T @ v1.detach()))


def test_loss_pieces_hand_computed():
    pred, target = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0])
    assert float(observed_mse(pred, target)) == pytest.approx((0 + 1 + 4) / 3)
    u, v = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[3.0, 0.0]])
    assert float(l2_penalty(u, v)) == pytest.approx((5 + 1) / 2 + 9 / 1)
    assert float(row_l2(u, torch.tensor([1.0, 2.0]))) == pytest.approx(((5 + 1) + (1 + 4)) / 2)
    total = RatingLoss(l2=0.5, gravity=2.0)(pred, target, u, v)
    g = ((u @ v.T) ** 2).sum() / 2  # (1,2)·(3,0)=3, (0,1)·(3,0)=0 -> 9/2
    assert float(total) == pytest.approx(5 / 3 + 0.5 * 12 + 2.0 * float(g))
    with pytest.raises(InvalidParameterError, match="same shape"):
        observed_mse(pred, target[:2])
    with pytest.raises(InvalidParameterError, match="gravity must be >= 0"):
        RatingLoss(gravity=-1)


# explicit MF --------------------------------------------------------------------------------------
def test_mf_recovers_held_out_ratings(data, mf):
    train, (users, items, truth), _ = data
    baseline = rmse(truth, np.full(len(truth), train.rating.mean()))
    got = rmse(truth, mf.predict_ids(users, items))
    assert baseline > 0.7
    assert got < 0.35 * baseline, (got, baseline)
    rows = mf.users_.encode(users), mf.items_.encode(items)
    assert np.array_equal(mf.predict(*rows), mf.predict_ids(users, items))
    assert mf.predicts_ratings


def test_mf_retrieval_scores_rank_like_predicted_ratings(mf):
    recs = mf.recommend(users=["u3"], k=5)
    pred = mf.predict_ids(["u3"] * mf.items_.n_ids, list(mf.items_.raw_ids))
    assert list(recs.ids[0]) == list(mf.items_.raw_ids[np.argsort(-pred, kind="stable")[:5]])


def test_mf_fold_in_reproduces_trained_users(data, mf):
    train = data[0]
    hist = train.user_histories()
    sims, overlaps = [], []
    for row in range(1, 21):
        pos = np.flatnonzero(train.user == row)
        items = mf.items_.decode(train.item[pos])
        folded = mf.fold_in(list(items), train.rating[pos])
        trained = mf.user_factors_[row]
        sims.append(folded @ trained / np.linalg.norm(folded) / np.linalg.norm(trained))
        raw = mf.users_.decode([row])[0]
        a = mf.recommend(users=[raw], k=10, exclude_seen=True).ids[0]
        b = mf.recommend(histories=[list(items)], ratings=[train.rating[pos]], k=10, exclude_seen=True).ids[0]
        overlaps.append(len(set(a) & set(b)) / 10)
        assert len(hist[row]) == pos.size
    assert np.mean(sims) > 0.97, sims
    assert np.mean(overlaps) > 0.8, overlaps


def test_mf_fold_in_is_the_stationary_point_of_the_training_objective(data):
    """With L2, table L2 and gravity all on, the closed-form fold-in of a training user's ratings zeroes
    the gradient of the full training loss (built from the embrec.nn.regression pieces) in that user's row."""
    train = data[0]
    m = ExplicitMF(factors=6, l2=0.02, table_l2=0.3, gravity=2.0, epochs=3, valid_fraction=0.0,
                   init_std=0.5).fit(train)
    row = 5
    pos = np.flatnonzero(train.user == row)
    folded = m._fold_in(Ragged.from_lists([train.item[pos]]), train.rating[pos].astype(np.float64))[0]
    users, items = torch.as_tensor(train.user), torch.as_tensor(train.item)
    r = torch.as_tensor(train.rating, dtype=torch.float64)
    loss_fn = RatingLoss(l2=m.table_l2, gravity=m.gravity)

    def grad_at(vec, bias):
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        u, v, bu, bi = t(m.user_factors_), t(m.item_factors_), t(m.user_bias_), t(m.item_bias_)
        u[row], bu[row] = t(vec), float(bias)
        u.requires_grad_(True)
        bu.requires_grad_(True)
        pred = m.mean_ + bu[users] + bi[items] + (u[users] * v[items]).sum(1)
        total = loss_fn(pred, r, u[1:], v[1:], (bu[1:], bi[1:])) \
            + m.l2 * row_l2(u[users], v[items], bu[users], bi[items])
        total.backward()
        return torch.cat([u.grad[row], bu.grad[row:row + 1]]).numpy()

    at_fold = grad_at(folded[:-1], folded[-1])
    at_zero = grad_at(np.zeros(6), 0.0)
    assert np.linalg.norm(at_fold) < 1e-4 * np.linalg.norm(at_zero), (at_fold, at_zero)


def test_mf_history_without_ratings_is_read_as_liked(mf, data):
    _, _, cluster = data
    top = max(mf.items_.raw_ids, key=lambda i: mf.predict_ids(["u0"], [i])[0])
    vec = mf.user_embedding(history=[top])
    assert vec.shape == (8,)
    assert np.allclose(vec, mf.fold_in([top], [mf.rating_range_[1]]))
    recs = mf.recommend(histories=[[top]], k=3)
    assert recs.ids.shape == (1, 3)


def test_mf_gravity_and_table_l2_train_and_fold_in(data):
    train = data[0]
    m = ExplicitMF(factors=4, l2=0.0, table_l2=0.05, gravity=0.5, epochs=3, valid_fraction=0.1).fit(train)
    assert len(m.history_) == 3 and "valid_rmse" in m.metrics_
    assert m.fold_in(["i0", "i1"], [5, 1]).shape == (4,)
    nobias = ExplicitMF(factors=4, biases=False, epochs=2).fit(train)
    assert np.all(nobias.user_bias_ == 0) and nobias.predict_ids(["u0"], ["i0"]).shape == (1,)


def test_mf_save_load_identical(tmp_path, mf, data):
    users, items, _ = data[1]
    mf.save(tmp_path / "mf")
    back = embrec.load(tmp_path / "mf")
    assert isinstance(back, ExplicitMF)
    assert np.array_equal(back.predict_ids(users, items), mf.predict_ids(users, items))
    a, b = mf.recommend(histories=[["i1", "i2"]], k=5), back.recommend(histories=[["i1", "i2"]], k=5)
    assert list(a.ids[0]) == list(b.ids[0]) and np.array_equal(a.scores, b.scores)
    assert list(mf.similar_items(["i0"], k=3).ids[0]) == list(back.similar_items(["i0"], k=3).ids[0])


def test_mf_bad_input(mf, data):
    with pytest.raises(NotFittedError):
        ExplicitMF().predict(np.array([1]), np.array([1]))
    with pytest.raises(DataError, match="rating column"):
        ExplicitMF(epochs=1).fit(make_log([("a", "x"), ("b", "y")]))
    with pytest.raises(InvalidParameterError, match="factors must be an integer >= 1"):
        ExplicitMF(factors=0)
    with pytest.raises(InvalidParameterError, match="optimizer must be one of"):
        ExplicitMF(optimizer="lbfgs")
    with pytest.raises(InvalidParameterError, match="same length"):
        mf.predict(np.array([1, 2]), np.array([1]))
    with pytest.raises(InvalidParameterError, match="must lie in"):
        mf.predict(np.array([10_000]), np.array([1]))
    with pytest.raises(UnknownIdError):
        mf.predict_ids(["nobody"], ["i0"])
    with pytest.raises(InvalidParameterError, match="one finite rating per item"):
        mf.fold_in(["i0", "i1"], [5])
    with pytest.raises(InvalidParameterError, match="ratings= goes with histories="):
        mf.recommend(users=["u1"], ratings=[[5]])
    with pytest.raises(InvalidParameterError, match="ratings= goes with history= alone"):
        mf.user_embedding("u1", history=["i0"], ratings=[5])
    with pytest.raises(InvalidParameterError, match="empty history"):
        mf.recommend(histories=[[]], ratings=[[]])
    with pytest.raises(UnknownIdError):
        mf.fold_in(["not-an-item"], [4])
    # unknown rows (0) get the fallback: the global mean plus the known side's bias
    assert mf.predict(np.array([0]), np.array([0]))[0] == pytest.approx(mf.mean_)


# rating DNN ---------------------------------------------------------------------------------------
def test_dnn_recovers_held_out_ratings(data, dnn):
    train, (users, items, truth), _ = data
    baseline = rmse(truth, np.full(len(truth), train.rating.mean()))
    got = rmse(truth, dnn.predict_ids(users, items))
    assert got < 0.5 * baseline, (got, baseline)
    assert dnn.history_[-1]["valid"] >= min(h["valid"] for h in dnn.history_)


def with_clusters(train, model, cluster):
    from embrec.data.features import FeatureTable

    labels = Ragged.from_lists([[]] + [[cluster[i] + 1] for i in model.items_.raw_ids])
    train.item_features = FeatureTable(n_rows=model.items_.size, multi_hot={"cluster": labels},
                                       vocabularies={"cluster": ["a", "b", "c"]})
    return train


def test_dnn_cosine_neighbours_find_planted_clusters(data, dnn, mf):
    """Here WHICH items a user rated is random (the mask ignores the clusters): the clusters live in the
    rating values only, so the rating DNN is checked without its observation head (implicit=0)."""
    train, _, cluster = data
    plain = RatingDNN(factors=8, hidden=(32,), dropout=0.0, l2=0.001, epochs=100, batch_size=128, lr=0.01,
                      patience=10, implicit=0.0).fit(train)
    train = with_clusters(train, plain, cluster)
    for model in (plain, mf):
        out = model_genre_overlap(model, train, column="cluster", k=5)
        assert out["ratio"] > 2.0, (type(model).__name__, out)


def test_dnn_observation_head_finds_clusters_that_live_in_what_was_rated():
    """Users rate items of their own cluster (ratings uninformative noise): only which items were rated
    carries the clusters; the observation head (implicit=10, the default) finds them, the plain DNN less."""
    rng = np.random.default_rng(3)
    n_users, n_items = 120, 60
    cluster = rng.integers(0, 3, n_items)
    events, ratings = [], []
    for u in range(n_users):
        own = np.flatnonzero(cluster == u % 3)
        for i in rng.choice(own, 12, replace=False):
            events.append((f"u{u}", f"i{i}"))
            ratings.append(float(rng.integers(1, 6)))
    train = make_log(events, rating=np.array(ratings))
    kw = dict(factors=8, hidden=(16,), epochs=30, valid_fraction=0.0)
    ratios = []
    for implicit in (0.0, 10.0):
        model = RatingDNN(implicit=implicit, **kw).fit(train)
        data = with_clusters(train, model, {f"i{i}": int(c) for i, c in enumerate(cluster)})
        ratios.append(model_genre_overlap(model, data, column="cluster", k=5)["ratio"])
    assert ratios[1] > 2.5 and ratios[1] > ratios[0] + 0.5, ratios


def test_dnn_fold_in_close_to_trained_user(data, dnn):
    train = data[0]
    corr, overlaps = [], []
    for row in range(1, 11):
        pos = np.flatnonzero(train.user == row)
        items = list(dnn.items_.decode(train.item[pos]))
        raw = dnn.users_.decode([row])[0]
        trained = dnn.scores(users=[raw])[0]
        folded_recs = dnn.recommend(histories=[items], ratings=[train.rating[pos]], k=10, exclude_seen=True)
        known_recs = dnn.recommend(users=[raw], k=10, exclude_seen=True)
        overlaps.append(len(set(folded_recs.ids[0]) & set(known_recs.ids[0])) / 10)
        p = dnn.fold_in(items, train.rating[pos])
        with torch.no_grad():
            folded = dnn._rate_all(torch.as_tensor(p)[None], torch.zeros(1) + dnn.net_.user_bias.weight[row])[0, 1:]
        corr.append(np.corrcoef(trained, folded)[0, 1])
    assert np.mean(corr) > 0.9, corr
    assert np.mean(overlaps) > 0.6, overlaps
    # deterministic: the same history twice gives the same vector
    assert np.array_equal(dnn.fold_in(["i1", "i2"], [5, 1]), dnn.fold_in(["i1", "i2"], [5, 1]))


def test_dnn_split_optimizer_trains_every_parameter(data):
    """embedding_lr: SGD on the tables, Adam on the dense layers; every parameter must move."""
    train = data[0]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net0 = RatingNet(train.users.size, train.items.size, 4, (8,), 0.2, 0.0, 0.01, True, 0.0)  # same init
    model = RatingDNN(factors=4, hidden=(8,), epochs=2, embedding_lr=0.5, batch_size=256).fit(train)
    trained = model.net_.state_dict()
    # the padding rows are never in a batch and SGD has no decay: unchanged, so the init was reproduced
    assert torch.equal(net0.item.weight[0], trained["item.weight"][0])
    for name, before in net0.state_dict().items():
        if name != "mean":
            assert before.shape == trained[name].shape
            assert not torch.equal(before[1:] if "user" in name or "item" in name else before,
                                   trained[name][1:] if "user" in name or "item" in name else trained[name]), name
    assert model.embedding_lr == 0.5


def test_dnn_gravity_shrinks_dot_products_over_all_pairs(data):
    train = data[0]
    kw = dict(factors=6, hidden=(8,), biases=False, epochs=8, valid_fraction=0.0, batch_size=256)
    mean_sq = []
    for g in (0.0, 20.0):
        net = RatingDNN(gravity=g, **kw).fit(train).net_
        p, q = net.user.weight[1:].detach(), net.item.weight[1:].detach()
        mean_sq.append(float(((p @ q.T) ** 2).mean()))
    assert mean_sq[1] < 0.5 * mean_sq[0], mean_sq


def test_dnn_output_gravity_shrinks_predictions_over_all_pairs(data):
    train = data[0]
    kw = dict(factors=6, hidden=(8,), biases=False, epochs=8, valid_fraction=0.0, batch_size=256, clip=False)
    all_users = np.repeat(np.arange(1, train.users.size), train.items.size - 1)
    all_items = np.tile(np.arange(1, train.items.size), train.users.size - 1)
    mean_sq = [float(np.mean(RatingDNN(output_gravity=g, **kw).fit(train).predict(all_users, all_items) ** 2))
               for g in (0.0, 2.0)]
    assert mean_sq[1] < 0.7 * mean_sq[0], mean_sq


def test_dnn_save_load_identical_and_errors(tmp_path, dnn, data):
    users, items, _ = data[1]
    dnn.save(tmp_path / "dnn")
    back = embrec.load(tmp_path / "dnn")
    assert np.array_equal(back.predict_ids(users, items), dnn.predict_ids(users, items))
    a, b = dnn.recommend(histories=[["i1", "i2"]], k=5), back.recommend(histories=[["i1", "i2"]], k=5)
    assert list(a.ids[0]) == list(b.ids[0]) and np.allclose(a.scores, b.scores)
    assert np.array_equal(back.item_embeddings(), dnn.item_embeddings())
    plain = RatingDNN(factors=4, hidden=(8,), product=False, epochs=2).fit(data[0])  # the Keras-question net
    plain.save(tmp_path / "plain")
    assert np.array_equal(embrec.load(tmp_path / "plain").predict_ids(users, items), plain.predict_ids(users, items))
    with pytest.raises(InvalidParameterError, match="hidden must be a list"):
        RatingDNN(hidden=(0,))
    everything = dnn.recommend(users=["u1"], k=10_000)  # more than the catalogue: all of it, ranked
    assert everything.ids.shape == (1, dnn.items_.n_ids) and sorted(everything.ids[0]) == sorted(dnn.items_.raw_ids)
    with pytest.raises(DataError, match="rating column"):
        RatingDNN(epochs=1).fit(make_log([("a", "x"), ("b", "y")]))


@torch.no_grad()
def test_dnn_output_gravity_term_equals_direct_computation():
    """output_gravity_term: mean over the pairs of (f(u, i) − target)², f the whole prediction or its
    interaction part (prediction − μ − b_u − b_i), against a hand-built forward pass."""
    from embrec.models.rating_dnn_net import output_gravity_term

    torch.manual_seed(0)
    net = RatingNet(6, 5, 3, (4,), 0.0, 3.5, 0.3, True, 0.0).eval()
    for table in (net.user_bias, net.item_bias):
        torch.nn.init.normal_(table.weight, std=0.5)
    users, items = torch.tensor([1, 2, 5, 3, 1]), torch.tensor([4, 1, 2, 2, 3])
    p, q = net.user.weight[users], net.item.weight[items]
    hidden = torch.relu(torch.cat([p, q], 1) @ net.mlp[0].weight.T + net.mlp[0].bias)
    o = (hidden @ net.out.weight.T + net.out.bias).squeeze(1) + (p * q).sum(1)  # the interaction part
    full = 3.5 + net.user_bias.weight[users, 0] + net.item_bias.weight[items, 0] + o
    for biases, f in ((True, full), (False, o)):
        for target in (0.0, -1.0, 3.5):
            want = float(((f - target) ** 2).mean())
            got = float(output_gravity_term(net, users, items, biases, target))
            assert got == pytest.approx(want, rel=1e-5), (biases, target)


@torch.no_grad()
def test_dnn_implicit_term_equals_direct_computation():
    """implicit_term: observed (⟨R_u, Q_i⟩ − t)² + gravity · mean over ALL user × item pairs of ⟨R_u, Q_i⟩²
    (the N × M matrix formed on purpose here; the padding rows excluded)."""
    from embrec.models.rating_dnn_net import implicit_term

    torch.manual_seed(1)
    net = RatingNet(7, 6, 3, (4,), 0.0, 0.0, 0.3, True, 0.0)
    net.implicit_user = torch.nn.Embedding(7, 3)
    users, items = torch.tensor([1, 6, 3]), torch.tensor([2, 5, 5])
    target = torch.tensor([1.0, 4.0, 2.0])
    r, q = net.implicit_user.weight, net.item.weight
    observed = (((r[users] * q[items]).sum(1) - target) ** 2).mean()
    every_pair = ((r[1:] @ q[1:].T) ** 2).mean()
    for g in (0.0, 1.0, 3.0):
        got = float(implicit_term(net, users, items, target, g))
        assert got == pytest.approx(float(observed + g * every_pair), rel=1e-5)


def test_dnn_implicit_head_trains_the_item_table_and_is_not_saved(tmp_path, data):
    """implicit=: the observation head's user table is trained with the others (SGD) but left out of the
    saved state; predictions of the reloaded model are identical."""
    train, (users, items, _), _ = data
    kw = dict(factors=4, hidden=(8,), epochs=3, batch_size=256, valid_fraction=0.0)
    model = RatingDNN(implicit=1.0, **kw).fit(train)
    assert hasattr(model.net_, "implicit_user")
    plain = RatingDNN(**kw).fit(train)
    assert not np.allclose(model.item_embeddings(), plain.item_embeddings())
    model.save(tmp_path / "imp")
    back = embrec.load(tmp_path / "imp")
    assert np.array_equal(back.predict_ids(users, items), model.predict_ids(users, items))
    with pytest.raises(InvalidParameterError):
        RatingDNN(gravity_part="everything")
    with pytest.raises(InvalidParameterError):
        RatingDNN(implicit_target="ratings")
