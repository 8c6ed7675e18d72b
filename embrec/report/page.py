"""The inspection report: PNG figures and one HTML page about a model's embeddings.

    path = write_report("runs/bpr", "runs/bpr/report")                   # -> runs/bpr/report/report.html
    path = write_report(model, "out", protocol_results=run_protocol(...))  # a fitted model works too

The page holds, as far as the model allows:

- item embedding **norm vs popularity**, with Spearman's rho, and how popular the nearest neighbours are by
  dot product vs by cosine (the course colab: dot-product scores favour popular items, whose vectors
  tend to be longer);
- a **2-D t-SNE map** of a sample of item embeddings (unit-normalised), coloured by the items' category or
  genre when the model carries item features, else by popularity decile;
- **training curves**: loss and validation metric per epoch (``model.history_``);
- **nearest neighbours** of the most popular items, by dot and by cosine side by side;
- a **bar chart comparing models** on a protocol when results are given (``run_protocol``'s dict or a list).

``summary.json`` next to it holds the figures the page states (rho, neighbour popularity, colouring...).

The page is self-contained: inline CSS, no scripts, no network; images are the PNGs next to it
(relative links), or inlined as data URIs with ``inline_images=True`` so that the HTML alone is the report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embrec import api
from embrec.data.features import FeatureTable
from embrec.errors import InvalidParameterError, check_positive_int
from embrec.models.io import write_json_atomic
from embrec.models.outpath import check_out_path, is_report_dir
from embrec.report import plots

logger = logging.getLogger(__name__)


def write_report(model_dir_or_model: Any, out_dir: str | Path, *, protocol_results: Any = None,
                 n_popular: int = 5, k: int = 5, max_points: int = 2000, inline_images: bool = False,
                 seed: int = 0, item_features: FeatureTable | None = None) -> Path:
    """Write the PNGs and ``report.html`` into ``out_dir``; returns the HTML's path.

    ``item_features`` (a table row-aligned with the model's items, e.g.
    ``log.reencode(model.users_, model.items_).item_features``) names and colours the items of a model that
    carries no features of its own (BPR, ALS...).

    ``max_points`` items (a seeded sample) go into the t-SNE map; ``n_popular`` popular items get their
    ``k`` nearest neighbours listed."""
    n_popular = check_positive_int("n_popular", n_popular)
    k = check_positive_int("k", k)
    max_points = check_positive_int("max_points", max_points, minimum=10)
    source = str(model_dir_or_model) if isinstance(model_dir_or_model, (str, Path)) else ""
    out = check_out_path(out_dir, inputs=[source], name="out_dir", accept=is_report_dir,
                         what="an embrec report directory")
    model = api.open_model(model_dir_or_model) if source else model_dir_or_model
    info = api.describe(model)
    results = _results_list(protocol_results)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if item_features is not None and item_features.n_rows != model.items_.size:
        raise InvalidParameterError(
            f"item_features must have one row per item row of the model ({model.items_.size}); "
            f"received {item_features.n_rows} rows.")
    labels = item_labels(model, item_features)
    summary: dict[str, Any] = {"model": info["model"], "n_items": info["n_items"]}

    sections = [_overview(info, source)]
    if hasattr(model, "item_embeddings"):
        vecs = np.asarray(model.item_embeddings(), dtype=np.float32)  # (n_items, d)
        counts = np.asarray(model.item_counts_[1:], dtype=np.float64)  # (n_items,)
        sections.append(_norms_section(model, vecs, counts, out, rng, summary))
        sections.append(_projection_section(model, vecs, counts, out, rng, max_points, summary, item_features))
        sections.append(_neighbours_section(model, counts, labels, n_popular, k, summary))
    else:
        sections.append(("Embeddings", "<p>This model has no item embeddings (it scores items directly), "
                         "so there are no norms, map or neighbours to show.</p>"))
    sections.append(_training_section(model, out))
    for i, result in enumerate(results):
        sections.append(_protocol_section(result, out / f"protocol{'' if i == 0 else i + 1}.png", info["model"]))

    page = _page(f"embrec report: {info['model']}", sections, out, inline_images)
    summary["images"] = sorted(set(re.findall(r"src='([^':]+\.png)'", page)))
    write_json_atomic(out / "summary.json", summary)
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    logger.info("wrote %s", path)
    return path


# sections: each returns (title, HTML body) ---------------------------------------------------
def _overview(info: dict[str, Any], source: str) -> tuple[str, str]:
    rows = [("model", f"{info['model']} ({info['class']})"), ("items", f"{info['n_items']:,}"),
            ("users", f"{info['n_users']:,}")]
    if source:
        rows.append(("directory", source))
    params = ", ".join(f"{k}={v!r}" for k, v in info.get("params", {}).items())
    rows.append(("hyper-parameters", params or "none"))
    for name, value in (info.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            rows.append((name, f"{value:.4g}"))
    rows.append(("embrec", info["embrec_version"]))
    body = "<table class='kv'>" + "".join(
        f"<tr><th>{_e(a)}</th><td>{_e(b)}</td></tr>" for a, b in rows) + "</table>"
    return "Model", body


def _norms_section(model: Any, vecs: np.ndarray, counts: np.ndarray, out: Path,
                   rng: np.random.Generator, summary: dict[str, Any]) -> tuple[str, str]:
    norms = np.linalg.norm(vecs, axis=1)
    rho = spearman(counts, norms)
    plots.norm_vs_popularity(norms, counts, out / "norms.png", rho=rho)
    # how popular are the nearest neighbours of a sample of items, by dot vs by cosine?
    n = len(vecs)
    sample = model.items_.raw_ids[np.sort(rng.choice(n, size=min(200, n), replace=False))]
    k = min(10, n - 1)
    text = ""
    if k >= 1:
        med = {}
        for measure in ("dot", "cosine"):
            rows = model.similar_items(list(sample), k=k, measure=measure).rows  # (S, k) item rows
            med[measure] = float(np.median(model.item_counts_[rows[rows > 0]]))
        summary["neighbour_median_count"] = med
        text = (f"<p>Over {len(sample)} sampled items, the {k} nearest neighbours by <b>dot product</b> have a "
                f"median of <b>{med['dot']:.0f}</b> training events; by <b>cosine</b>, "
                f"<b>{med['cosine']:.0f}</b> (median item: {np.median(counts):.0f}).</p>")
    summary["norm_popularity_spearman"] = None if np.isnan(rho) else rho
    trend = ("longer vectors for popular items" if rho > 0.2 else
             "no strong link between norm and popularity" if not rho < -0.2 else "shorter vectors for popular items")
    body = (f"<img src='norms.png' alt='embedding norm vs popularity'>"
            f"<p>Spearman's ρ between an item's embedding norm and its number of training events: "
            f"<b>{rho:.3f}</b> ({trend}). A dot-product score grows with the item's norm, so when popular "
            f"items have longer vectors, dot-product recommendations lean towards them; cosine removes the "
            f"norm.</p>{text}")
    return "Embedding norm vs popularity", body


def _projection_section(model: Any, vecs: np.ndarray, counts: np.ndarray, out: Path,
                        rng: np.random.Generator, max_points: int, summary: dict[str, Any],
                        given: FeatureTable | None = None) -> tuple[str, str]:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(vecs)
    if n < 10:
        return "2-D map of the items", f"<p>Only {n} items: too few for a map.</p>"
    pick = np.sort(rng.choice(n, size=min(max_points, n), replace=False))
    unit = vecs[pick] / np.maximum(np.linalg.norm(vecs[pick], axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30.0, (len(pick) - 1) / 3))
    iters = {"max_iter" if "max_iter" in TSNE().get_params() else "n_iter": 500}
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=int(rng.integers(2**31)), **iters)
    # one OpenMP thread: on a busy machine, spinning threads make Barnes-Hut t-SNE ten times slower
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(unit)  # (S, 2)
    colour, legend = item_colours(model, counts, given)
    summary["projection"] = {"points": int(len(pick)), "colour_by": legend}
    plots.projection(xy, colour[pick], out / "projection.png",
                     title=f"t-SNE of {len(pick):,} item embeddings (unit-normalised)", legend_title=legend)
    body = (f"<img src='projection.png' alt='t-SNE map of item embeddings'>"
            f"<p>Each dot is an item ({len(pick):,} of {n:,}, a seeded sample), placed by t-SNE from its "
            f"unit-normalised embedding; colour: {_e(legend)}. Items the model treats alike sit together.</p>")
    return "2-D map of the items", body


def _neighbours_section(model: Any, counts: np.ndarray, labels: np.ndarray, n_popular: int,
                        k: int, summary: dict[str, Any]) -> tuple[str, str]:
    n = len(counts)
    k = min(k, n - 1)
    if k < 1:
        return "Nearest neighbours", "<p>Only one item: no neighbours.</p>"
    top = np.argsort(-counts, kind="stable")[:n_popular]  # positions of the most popular items
    raw = model.items_.raw_ids[top]
    found = {m: model.similar_items(list(raw), k=k, measure=m) for m in ("dot", "cosine")}
    summary["neighbours"] = [{"item": r, **{m: [x for x in found[m].ids[i] if x is not None] for m in found}}
                             for i, r in enumerate(raw)]
    blocks = []
    for i, pos in enumerate(top):
        cells = {}
        for m, recs in found.items():
            items = [(r, s) for r, s in zip(recs.rows[i], recs.scores[i]) if r > 0]
            cells[m] = "<ol>" + "".join(
                f"<li>{_e(labels[r - 1])} <span class='muted'>({counts[r - 1]:.0f} events, {s:.3f})</span></li>"
                for r, s in items) + "</ol>"
        blocks.append(f"<tr><td><b>{_e(labels[pos])}</b><br><span class='muted'>{counts[pos]:.0f} events"
                      f"</span></td><td>{cells['dot']}</td><td>{cells['cosine']}</td></tr>")
    body = ("<table class='nn'><tr><th>popular item</th><th>by dot product</th><th>by cosine</th></tr>"
            + "".join(blocks) + "</table>")
    return f"Nearest neighbours of the {len(top)} most popular items", body


def _training_section(model: Any, out: Path) -> tuple[str, str]:
    history = [row for row in (getattr(model, "history_", None) or []) if isinstance(row, dict)]
    if not history or not any("loss" in row for row in history):
        return "Training curves", "<p>This model keeps no per-epoch history (it is not trained by epochs).</p>"
    plots.training_curves(history, out / "training.png")
    last = history[-1]
    extra = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "seconds")
                      and isinstance(v, (int, float)))
    seconds = sum(float(r.get("seconds", 0.0)) for r in history)
    return "Training curves", (f"<img src='training.png' alt='training curves'><p>{len(history)} epochs "
                               f"in {seconds:.1f} s; last epoch: {_e(extra)}.</p>")


def _protocol_section(result: dict[str, Any], path: Path, model_name: str) -> tuple[str, str]:
    rows = [r for r in result.get("results", []) if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]
    title = f"Models compared on {result.get('protocol', 'a protocol')}"
    if not rows:
        return title, "<p>The protocol results hold no model metrics.</p>"
    plots.protocol_bars(result, path, highlight=model_name)
    metrics = list(rows[0]["metrics"])
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    body = "".join(
        f"<tr><td>{_e(r['model'])}</td>" + "".join(f"<td>{_num(r['metrics'].get(m))}</td>" for m in metrics)
        + f"<td>{_num(r.get('fit_seconds'))}</td></tr>" for r in rows)
    return title, (f"<img src='{path.name}' alt='models compared on {_e(result.get('protocol', ''))}'>"
                   f"<table class='grid'><tr><th>model</th>{head}<th>fit seconds</th></tr>{body}</table>")


# item labels and colours -----------------------------------------------------------------------
def item_features(model: Any, given: FeatureTable | None = None) -> FeatureTable | None:
    """``given``, else the item feature table a model carries (any FeatureTable attribute row-aligned with its items)."""
    if given is not None:
        return given
    size = model.items_.size
    tables = [(name, v) for name, v in vars(model).items() if isinstance(v, FeatureTable) and v.n_rows == size]
    tables.sort(key=lambda nv: "item" not in nv[0])
    return tables[0][1] if tables else None


def item_labels(model: Any, given: FeatureTable | None = None) -> np.ndarray:
    """(n_items,) display names: the raw id, with its label (the model's ``item_labels_``, else a
    title/description feature) when there is one."""
    raw = model.items_.raw_ids
    labels = getattr(model, "item_labels_", None)
    if labels is not None and given is None:
        text = [str(labels[r]) if r < len(labels) else "" for r in range(1, len(raw) + 1)]
        return np.array([f"{r} · {t}" if t else str(r) for r, t in zip(raw, text)], dtype=object)
    feats = item_features(model, given)
    if feats is None or not feats.text:
        return np.array([str(r) for r in raw], dtype=object)
    col = next((c for c in ("title", "name", "description") if c in feats.text), next(iter(feats.text)))
    text = feats.text[col][1:]
    return np.array([f"{r} · {t}" if t else str(r) for r, t in zip(raw, text)], dtype=object)


def item_colours(model: Any, counts: np.ndarray, given: FeatureTable | None = None) -> tuple[np.ndarray, str]:
    """(n_items,) a colour label per item and the legend title: the first categorical item feature
    (e.g. category), else the first multi-hot one (e.g. the first genre), else the popularity decile."""
    feats = item_features(model, given)
    if feats is not None and feats.categorical:
        col, codes = next(iter(feats.categorical.items()))
        names = ["(none)", *feats.vocabularies.get(col, [])]
        return np.array([names[c] if c < len(names) else str(c) for c in codes[1:]], dtype=object), col
    if feats is not None and feats.multi_hot:
        col, bags = next(iter(feats.multi_hot.items()))
        names = ["(none)", *feats.vocabularies.get(col, [])]
        first = [names[b[0]] if len(b) and b[0] < len(names) else "(none)" for b in bags][1:]
        return np.array(first, dtype=object), f"{col} (first listed)"
    encoded = _encoded_colours(model)
    if encoded is not None:
        return encoded
    ranks = np.argsort(np.argsort(counts, kind="stable"), kind="stable")
    decile = np.minimum(ranks * 10 // max(len(counts), 1), 9)
    return np.array([f"decile {d + 1}" for d in decile], dtype=object), "popularity decile (10 = most popular)"


def _encoded_colours(model: Any) -> tuple[np.ndarray, str] | None:
    """Colours from features a model keeps encoded for its towers (``encoder_`` + ``item_features_``:
    categorical codes in the encoder's column order, multi-hot bags first among the bags)."""
    enc, feats = getattr(model, "encoder_", None), getattr(model, "item_features_", None)
    n = model.items_.size
    if enc is None or feats is None or getattr(feats, "n_rows", 0) < n:
        return None
    vocabs = getattr(enc, "vocabularies_", {})
    if getattr(enc, "categorical_", None) and np.ndim(feats.categorical) == 2:
        col = enc.categorical_[0]
        names = ["(none)", *vocabs.get(col, [])]
        codes = np.asarray(feats.categorical)[1:n, 0]
        return np.array([names[c] if c < len(names) else str(c) for c in codes], dtype=object), col
    if getattr(enc, "multi_hot_", None) and feats.bags:
        col = enc.multi_hot_[0]
        names = ["(none)", *vocabs.get(col, [])]
        bags = feats.bags[0]
        first = [names[bags[r][0]] if len(bags[r]) and bags[r][0] < len(names) else "(none)" for r in range(1, n)]
        return np.array(first, dtype=object), f"{col} (first listed)"
    return None


# page -------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
img { max-width: 100%; height: auto; display: block; margin: 0.6rem 0; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.9rem; } th, td { padding: 0.25rem 0.6rem; vertical-align: top;
        text-align: left; } table.kv th { color: #555; font-weight: 600; }
table.nn td, table.nn th, table.grid td, table.grid th { border: 1px solid #ddd; }
ol { margin: 0; padding-left: 1.3rem; } .muted { color: #777; font-size: 0.85em; }
nav a { margin-right: 1rem; }
"""


def _page(title: str, sections: list[tuple[str, str]], out: Path, inline_images: bool) -> str:
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f"<a href='#s{i}'>{_e(t)}</a>" for i, (t, _) in enumerate(sections))
    parts = "".join(f"<section id='s{i}'><h2>{_e(t)}</h2>{b}</section>" for i, (t, b) in enumerate(sections))
    if inline_images:
        for png in sorted(out.glob("*.png")):
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts = parts.replace(f"src='{png.name}'", f"src='data:image/png;base64,{data}'")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1><p class='muted'>written {when} by "
            f"embrec</p><nav>{nav}</nav>{parts}</body></html>\n")


def _results_list(results: Any) -> list[dict[str, Any]]:
    if results is None:
        return []
    if isinstance(results, dict):
        results = [results]
    if not isinstance(results, (list, tuple)) or not all(isinstance(r, dict) and "results" in r for r in results):
        raise InvalidParameterError("protocol_results must be run_protocol's dict (with 'results') or a list of "
                                    f"them; received {type(results).__name__}.")
    return list(results)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(pd.Series(x).rank().corr(pd.Series(y).rank()))


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else _e("" if x is None else x)
