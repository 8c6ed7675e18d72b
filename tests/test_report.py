"""The inspection report: files, images, links, the figures it states on planted embeddings, and the
page rendered in headless Chromium with every image loaded (skipped when Chromium is absent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread

from embrec.baselines import Popularity
from embrec.datasets import synthetic
from embrec.errors import InvalidParameterError
from embrec.report import write_report
from tests.planted_model import PlantedVectors

RESULTS = {"protocol": "leave-last-out", "dataset": "synthetic", "results": [
    {"model": "popularity", "metrics": {"precision@10": 0.05, "ndcg@10": 0.07}, "fit_seconds": 0.1},
    {"model": "planted", "metrics": {"precision@10": 0.12, "ndcg@10": 0.15}, "fit_seconds": 1.2},
]}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, value))


def refs_of(html: str) -> list[tuple[str, str]]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


@pytest.fixture(scope="module")
def shop():
    return synthetic(n_users=250, n_items=300, n_interactions=5000, n_categories=6, seed=2)


@pytest.fixture(scope="module")
def report(shop, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    model = PlantedVectors().fit(shop)
    return model, write_report(model, out, protocol_results=RESULTS, max_points=150)


def test_files_exist_and_images_are_real(report):
    _, path = report
    assert path.name == "report.html" and path.is_file()
    for name in ("norms.png", "projection.png", "training.png", "protocol.png"):
        png = path.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(png)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_html_references_only_files_that_exist(report):
    _, path = report
    html = path.read_text()
    refs = refs_of(html)
    images = [v for t, v in refs if t == "img"]
    assert sorted(images) == ["norms.png", "projection.png", "protocol.png", "training.png"]
    for _tag, value in refs:
        assert not re.match(r"^[a-z]+://", value), f"external reference {value!r}"
        if not value.startswith("#"):
            assert (path.parent / value).is_file(), value
        else:
            assert f"id='{value[1:]}'" in html
    assert "<script" not in html and "stylesheet" not in html


def test_report_states_what_the_planted_embeddings_hold(report, shop):
    model, path = report
    summary = json.loads((path.parent / "summary.json").read_text())
    # planted: norm = 1 + log(1 + count) times a unit-ish direction, so norm and popularity agree
    assert summary["norm_popularity_spearman"] > 0.8
    med = summary["neighbour_median_count"]
    assert med["dot"] > 2 * med["cosine"]  # dot-product neighbours are the popular items
    assert summary["projection"] == {"points": 150, "colour_by": "category"}
    # neighbours of the most popular item, as the library finds them; cosine ones share its category
    top = shop.items.raw_ids[np.argmax(shop.item_counts()[1:])]
    first = summary["neighbours"][0]
    assert first["item"] == top
    assert first["cosine"] == list(model.similar_items([top], k=5, measure="cosine").ids[0])
    cat = model.cluster_[shop.items.encode([top])[0]]
    assert all(model.cluster_[shop.items.encode([i])[0]] == cat for i in first["cosine"])
    html = path.read_text()
    assert "by dot product" in html and "by cosine" in html and "leave-last-out" in html
    assert f"{summary['norm_popularity_spearman']:.3f}" in html


def test_popularity_deciles_without_item_features(tmp_path):
    log = synthetic(n_users=100, n_items=120, n_interactions=2000, seed=4)
    log.item_features = None
    path = write_report(PlantedVectors().fit(log), tmp_path, max_points=60)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["projection"]["colour_by"].startswith("popularity decile")
    assert summary["images"] == ["norms.png", "projection.png", "training.png"]
    assert path.is_file()


def test_model_without_embeddings_from_its_directory(shop, tmp_path):
    Popularity().fit(shop).save(tmp_path / "pop")
    path = write_report(tmp_path / "pop", tmp_path / "out", protocol_results=[RESULTS])
    html = path.read_text()
    assert "has no item embeddings" in html and "keeps no per-epoch history" in html
    assert [v for t, v in refs_of(html) if t == "img"] == ["protocol.png"]
    assert str(tmp_path / "pop") in html
    with pytest.raises(InvalidParameterError, match="protocol_results"):
        write_report(tmp_path / "pop", tmp_path / "out", protocol_results="results.json")


def test_inline_images_make_the_html_alone_the_report(shop, tmp_path):
    path = write_report(PlantedVectors().fit(shop), tmp_path, max_points=60, inline_images=True)
    images = [v for t, v in refs_of(path.read_text()) if t == "img"]
    assert len(images) == 3 and all(v.startswith("data:image/png;base64,") for v in images)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', 'loaded ' + ok + ' of ' + imgs.length);
});
</script></body>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--allow-file-access-from-files", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_every_image_loads_in_headless_chromium(report, tmp_path):
    _, path = report
    # a copy of the page next to it, plus a script that marks how many images loaded
    check = path.parent / "check.html"
    check.write_text(path.read_text().replace("</body>", _CHECK))
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", check.as_uri()).stdout
    assert 'data-images="loaded 4 of 4"' in dom
    shot = tmp_path / "report.png"
    _chromium("--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}", path.as_uri())
    img = imread(shot)
    assert img.shape[:2] == (3000, 1200) and img[..., :3].std() > 0.05


def test_colours_from_features_a_model_keeps_encoded():
    # towers keep item features encoded: categorical codes (n, C) in the encoder's column order
    from types import SimpleNamespace

    from embrec.data import IdVocab
    from embrec.report import item_colours

    model = SimpleNamespace(
        items_=IdVocab(["a", "b", "c"]),
        encoder_=SimpleNamespace(categorical_=["category"], multi_hot_=[], vocabularies_={"category": ["x", "y"]}),
        item_features_=SimpleNamespace(n_rows=4, categorical=np.array([[0, 5], [2, 1], [1, 1], [0, 3]]), bags=[]),
    )
    colours, legend = item_colours(model, np.array([3.0, 2.0, 1.0]))
    assert legend == "category" and list(colours) == ["y", "x", "(none)"]


def test_given_item_features_colour_a_featureless_model(tmp_path):
    """A model without features of its own (BPR) is coloured by the planted category when the data's item
    table is handed over; a table of the wrong length is refused."""
    from embrec.models.registry import create

    log = synthetic(n_users=200, n_items=60, n_interactions=3000, n_categories=4, seed=0)
    model = create("bpr", factors=8, epochs=2).fit(log)
    table = log.reencode(model.users_, model.items_).item_features
    write_report(model, tmp_path / "r", item_features=table, max_points=60)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["projection"]["colour_by"] == "category"
    bare = write_report(model, tmp_path / "bare", max_points=60)
    assert json.loads((bare.parent / "summary.json").read_text())["projection"]["colour_by"].startswith("popularity")
    with pytest.raises(InvalidParameterError, match="one row per item row"):
        write_report(model, tmp_path / "bad", item_features=table.take(np.arange(5)))
