"""Model directories: --out never destroys what is not embrec's, versions, integrity, permissions, versions policy."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import embrec
from embrec import api
from embrec.baselines import Popularity
from embrec.datasets import synthetic
from embrec.errors import ModelFileError, ModelStateError, ModelVersionWarning, OutputPathError
from embrec.models import store
from embrec.models.io import model_files
from embrec.models.outpath import check_out_path
from tests.conftest import make_log, rewrite_model_file

LOG = make_log([(1, "a"), (2, "a"), (2, "b"), (3, "a"), (3, "c"), (3, "b")])


def pop(marker: int = 0) -> Popularity:
    model = Popularity().fit(LOG)
    model.metrics_ = {"marker": marker}
    return model


def csv_log(folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log.csv"
    path.write_text("user,item\n1,a\n2,a\n2,b\n3,c\n")
    return api.FileSource(path, user_col="user", item_col="item")


# 1. --out / save() never destroy what is not theirs ----------------------------------------------
def test_a_non_model_directory_is_refused_before_the_fit_and_kept(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    missing = api.FileSource(
        tmp_path / "absent.csv", user_col="u", item_col="i"
    )  # a fit would fail on it
    with pytest.raises(OutputPathError, match="non-empty directory that is not an embrec model"):
        api.train("popularity", data=missing, out=d)
    with pytest.raises(OutputPathError, match="not an embrec model"):
        pop().save(d)
    assert os.listdir(d) == ["notes.txt"] and (d / "notes.txt").read_text() == "x"


def test_folders_that_only_look_like_model_directories_are_refused(tmp_path):
    for name, entries in {
        "a": {"current": "my notes"},
        "b": {".versions/x": "mine", "current": "x"},
        "c": {".versions/backup.tar": "mine"},
    }.items():
        d = tmp_path / name
        for rel, text in entries.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
        with pytest.raises(OutputPathError, match="not an embrec model directory"):
            pop().save(d)
        assert all((d / rel).read_text() == text for rel, text in entries.items())


def test_an_existing_file_is_refused(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("keep me")
    with pytest.raises(OutputPathError, match="is an existing file"):
        pop().save(f)
    with pytest.raises(OutputPathError, match="cannot be created: .* is a file"):
        pop().save(f / "sub")
    assert f.read_text() == "keep me"


def test_the_commands_own_input_is_refused(tmp_path):
    source = csv_log(tmp_path / "d")
    for out in (tmp_path / "d", tmp_path):
        with pytest.raises(OutputPathError, match="holds the command's input"):
            api.train("popularity", data=source, out=out)
    assert (tmp_path / "d" / "log.csv").read_text().startswith("user,item")
    pop().save(tmp_path / "m")  # even a model directory is refused when it holds the input
    shutil.copy(source.path, tmp_path / "m" / "log.csv")
    with pytest.raises(OutputPathError, match="holds the command's input"):
        api.train(
            "popularity",
            data=api.FileSource(tmp_path / "m" / "log.csv", user_col="user", item_col="item"),
            out=tmp_path / "m",
        )
    # a named dataset's folder is an input too
    (tmp_path / "data" / "ml-100k").mkdir(parents=True)
    with pytest.raises(OutputPathError, match="holds the command's input"):
        api.train(
            "popularity", dataset="ml-100k", data_dir=tmp_path / "data", out=tmp_path / "data"
        )


def test_empty_and_current_directory_are_refused_unless_a_model(tmp_path, monkeypatch):
    with pytest.raises(OutputPathError, match="empty path"):
        api.train("popularity", data=LOG, out="")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputPathError, match="current directory"):
        api.train("popularity", data=LOG, out=".")
    pop(1).save(tmp_path / "m")
    monkeypatch.chdir(tmp_path / "m")
    res = api.train("popularity", data=LOG, out=".")  # . is a model directory: replaced
    assert res["n_items"] == 3 and embrec.load(tmp_path / "m").metrics_ == {}


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_parent_is_refused_before_the_fit(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="cannot be written"):
            api.train(
                "popularity",
                data=api.FileSource(tmp_path / "absent.csv", user_col="u", item_col="i"),
                out=ro / "m",
            )
    finally:
        ro.chmod(0o700)


def test_new_empty_and_model_directories_are_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        assert check_out_path(target) == target
        pop(1).save(target)
        pop(2).save(target)  # over a model directory
        assert embrec.load(target).metrics_ == {"marker": 2}


# 2. layout, cleanup, the first layout ---------------------------------------------------------------
def test_saves_are_versions_behind_one_pointer_and_only_two_are_kept(tmp_path):
    d = tmp_path / "m"
    names = []
    for marker in range(4):
        pop(marker).save(d)
        names.append(store.pointer_target(d))
    assert sorted(os.listdir(d)) == [".lock", ".versions", "current"]
    assert os.readlink(d / "current") == f".versions/{names[-1]}"
    assert sorted(os.listdir(d / ".versions")) == sorted(
        names[-2:]
    )  # current + the one it replaced
    assert embrec.load(d).metrics_ == {"marker": 3}
    assert embrec.load(d / "current").metrics_ == {
        "marker": 3
    }  # a version folder alone is a model too


def legacy_copy(model_dir, target) -> None:
    """The layout before versions: files directly in the folder, format_version 1, no manifest."""
    shutil.copytree(model_files(model_dir), target)
    os.unlink(target / "manifest.json")
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "format_version": 1}))


def test_a_directory_of_the_first_layout_loads_and_is_saved_over(tmp_path):
    pop(1).save(tmp_path / "m")
    old = tmp_path / "old"
    legacy_copy(tmp_path / "m", old)
    (old / "notes.txt").write_text("mine")
    assert embrec.load(old).metrics_ == {"marker": 1}
    check_out_path(old)  # an embrec model directory, so it may be replaced
    pop(2).save(old)
    assert sorted(os.listdir(old)) == [
        ".lock",
        ".versions",
        "current",
        "notes.txt",
    ]  # old files gone, not mine
    assert embrec.load(old).metrics_ == {"marker": 2}


def test_evaluate_adds_its_metrics_as_a_new_whole_version(tmp_path):
    log = synthetic(n_users=60, n_items=40, n_interactions=800, seed=1)
    api.train("popularity", data=log, protocol="leave-last-out", out=tmp_path / "m")
    first = store.pointer_target(tmp_path / "m")
    api.train("popularity", data=log, protocol="leave-last-out", out=tmp_path / "m")
    api.evaluate(tmp_path / "m", protocol="leave-last-out", data=log)
    assert store.pointer_target(tmp_path / "m") != first
    assert set(embrec.load(tmp_path / "m").metrics_) == {"leave-last-out"}


# 3. integrity -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["weights.safetensors", "items.json", "config.json", "users.json"])
def test_flipped_bytes_are_refused_naming_the_file(tmp_path, name):
    d = pop().save(tmp_path / "m")
    f = model_files(d) / name
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4] = bytes(b ^ 0x5A for b in data[mid : mid + 4])
    f.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"{name}' is damaged: its sha256"):
        embrec.load(d)


def test_truncated_and_missing_files_are_refused_naming_the_file(tmp_path):
    d = pop().save(tmp_path / "m")
    weights = model_files(d) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ModelFileError, match="weights.safetensors' is damaged: it holds 40 bytes"):
        embrec.load(d)
    d = pop().save(tmp_path / "m2")
    os.unlink(model_files(d) / "metrics.json")
    with pytest.raises(ModelFileError, match="metrics.json' is missing"):
        embrec.load(d)
    os.unlink(model_files(d) / "manifest.json")
    with pytest.raises(ModelFileError, match="manifest.json' is missing"):
        embrec.load(d)


def test_a_tampered_manifest_is_refused(tmp_path):
    d = pop().save(tmp_path / "m")
    f = model_files(d) / "manifest.json"
    manifest = json.loads(f.read_text())
    manifest["files"]["weights.safetensors"]["size"] += 1
    f.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="manifest.json' is damaged"):
        embrec.load(d)


def test_non_finite_arrays_are_refused_at_save_and_at_load(tmp_path):
    model = pop()
    model.counts_ = np.full_like(model.counts_, np.nan)
    with pytest.raises(ModelStateError, match="learned array 'counts' holds 4 non-finite values"):
        model.save(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
    d = pop().save(tmp_path / "m")
    arrays = load_file(str(model_files(d) / "weights.safetensors"))
    arrays["counts"][2] = np.inf
    save_file(arrays, str(tmp_path / "w"))
    rewrite_model_file(d, "weights.safetensors", (tmp_path / "w").read_bytes())
    with pytest.raises(
        ModelFileError, match="weights.safetensors' is damaged: array 'counts' holds 1 non-finite"
    ):
        embrec.load(d)


def test_all_nan_factors_of_a_trained_model_are_refused(tmp_path):
    from embrec.models.registry import create

    log = synthetic(n_users=40, n_items=30, n_interactions=400, seed=2)
    model = create("bpr", factors=4, epochs=1).fit(log)
    model.item_factors_ = np.full_like(model.item_factors_, np.nan)  # what a diverged fit leaves
    with pytest.raises(ModelStateError, match="learned array 'item_factors' holds 124 non-finite"):
        model.save(tmp_path / "bpr")
    assert not (tmp_path / "bpr").exists()


def test_newer_format_is_an_error_newer_library_a_warning(tmp_path):
    d = pop().save(tmp_path / "m")
    config = json.loads((model_files(d) / "config.json").read_text())
    rewrite_model_file(
        d, "config.json", json.dumps({**config, "embrec_version": "99.0.0"}).encode()
    )
    with pytest.warns(ModelVersionWarning, match="written by embrec 99.0.0, newer than this"):
        assert embrec.load(d).metrics_ == {"marker": 0}
    rewrite_model_file(d, "config.json", json.dumps({**config, "format_version": 3}).encode())
    with pytest.raises(
        ModelFileError, match="format version 3; this embrec reads versions 1 to 2 .upgrade"
    ):
        embrec.load(d)


def test_bad_values_in_json_files_name_the_file_and_print_plain_values(tmp_path):
    d = pop().save(tmp_path / "m")
    users = json.loads((model_files(d) / "users.json").read_text())
    rewrite_model_file(d, "users.json", json.dumps({**users, "ids": [1, 1, 3]}).encode())
    with pytest.raises(
        ModelFileError, match=r"users.json' is damaged: .*unique.*received 1 twice"
    ) as err:
        embrec.load(d)
    assert "np." not in str(err.value)
    rewrite_model_file(d, "users.json", json.dumps({**users, "ids": [1, 2**70, 3]}).encode())
    with pytest.raises(ModelFileError, match="users.json' is damaged: .*64-bit integers"):
        embrec.load(d)
    d = pop().save(tmp_path / "m2")
    config = json.loads((model_files(d) / "config.json").read_text())
    rewrite_model_file(d, "config.json", json.dumps({**config, "params": {"factors": 3}}).encode())
    with pytest.raises(ModelFileError, match="parameters in .*config.json' do not fit Popularity"):
        embrec.load(d)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_and_folders_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        d = pop().save(tmp_path / "m")
    finally:
        os.umask(old)
    folder = model_files(d)
    for p in (d, folder.parent, folder):
        assert stat.S_IMODE(p.stat().st_mode) == 0o777 & ~umask, p
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


# the commands ---------------------------------------------------------------------------------------
def test_cli_train_and_quickstart_refuse_before_fitting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from embrec.cli import app

    runner = CliRunner()
    source = csv_log(tmp_path / "d")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    base = [
        "train",
        "popularity",
        "--data",
        str(source.path),
        "--user-col",
        "user",
        "--item-col",
        "item",
    ]
    cases = [
        (base + ["--out", "d"], "holds the command's input"),
        (base + ["--out", ""], "empty path"),
        (base + ["--out", "."], "holds the command's input"),
        (base + ["--out", "notes"], "not an embrec model"),
        (base + ["--out", "d/log.csv"], "holds the command's input"),
        (["quickstart", "--out", "notes"], "not a quickstart run directory"),
    ]
    for args, words in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.stdout, res.stderr)
        last = res.stderr.strip().splitlines()[-1]  # after the progress note, if any
        assert last.startswith("Error: ") and words in last and "Traceback" not in res.stderr, (
            args,
            last,
        )
    assert os.listdir(tmp_path / "notes") == ["notes.txt"] and os.listdir(tmp_path / "d") == [
        "log.csv"
    ]


def test_report_refuses_a_folder_that_is_not_a_report(tmp_path):
    from embrec.report import write_report

    d = pop().save(tmp_path / "m")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "thesis.tex").write_text("x")
    with pytest.raises(OutputPathError, match="not an embrec report directory"):
        write_report(str(d), tmp_path / "r")
    with pytest.raises(OutputPathError, match="holds the command's input"):
        write_report(str(d), d)
    first = write_report(str(d), tmp_path / "rep")
    assert write_report(str(d), tmp_path / "rep") == first  # a report folder is rewritten


def test_a_save_that_fails_midway_leaves_the_old_model_and_no_trace(tmp_path, monkeypatch):
    import errno

    from embrec.models import io

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    pop(1).save(tmp_path / "m")
    monkeypatch.setattr(io, "save_file", full_disk)
    for d in (tmp_path / "m", tmp_path / "new"):
        with pytest.raises(
            ModelFileError, match=r"cannot write the model directory .*No space left on device"
        ):
            pop(2).save(d)
    assert not (tmp_path / "new").exists()
    assert embrec.load(tmp_path / "m").metrics_ == {"marker": 1}
    assert len(os.listdir(tmp_path / "m" / ".versions")) == 1


def test_an_unknown_class_in_config_json_names_the_file_and_is_cut_short(tmp_path):
    d = pop().save(tmp_path / "m")
    config = json.loads((model_files(d) / "config.json").read_text())
    rewrite_model_file(d, "config.json", json.dumps({**config, "class": "X" * 10_000}).encode())
    with pytest.raises(
        ModelFileError, match="config.json': config.json names model class 'XXX"
    ) as err:
        embrec.load(d)
    assert len(str(err.value)) < 600
