"""The model and config search order of rtperformer.paths (--models-dir, $RTPERFORMER_MODELS, the user
data folder, the shipped models; user configs before shipped ones), on real folders."""

from __future__ import annotations

import shutil

import pytest

from rtperformer import paths
from rtperformer.config import load_config
from rtperformer.errors import UserError
from rtperformer.model.checkpoint import resolve_model_dir


def _model(root, name):
    d = root / name
    d.mkdir(parents=True)
    (d / paths.WEIGHTS).write_bytes(b"")
    return d


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(paths, "SHIPPED_MODELS", shipped)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("RTPERFORMER_MODELS", raising=False)
    return tmp_path


def test_search_order_first_hit_wins(dirs, monkeypatch):
    shipped = _model(dirs / "shipped", "violin")
    assert resolve_model_dir("violin") == shipped
    user = _model(dirs / "data" / "rtperformer" / "models", "violin")
    assert resolve_model_dir("violin") == user
    env = _model(dirs / "env2", "violin")
    monkeypatch.setenv("RTPERFORMER_MODELS", f"{dirs / 'env1'}:{dirs / 'env2'}")
    assert resolve_model_dir("violin") == env
    flag = _model(dirs / "flag", "violin")
    assert resolve_model_dir("violin", dirs / "flag") == flag
    assert paths.model_search_path(dirs / "flag") == [dirs / "flag", dirs / "env1", dirs / "env2",
                                                       dirs / "data" / "rtperformer" / "models", dirs / "shipped"]


def test_missing_model_names_every_folder(dirs):
    with pytest.raises(UserError) as e:
        resolve_model_dir("cello", dirs / "flag")
    for d in (dirs / "flag", dirs / "data" / "rtperformer" / "models", dirs / "shipped"):
        assert str(d) in str(e.value)


def test_user_config_before_shipped(dirs):
    assert load_config("tiny-test").name == load_config(paths.SHIPPED_CONFIGS / "tiny-test.yaml").name
    user = dirs / "config" / "rtperformer"
    user.mkdir(parents=True)
    shutil.copy(paths.SHIPPED_CONFIGS / "tiny-test.yaml", user / "tiny-test.yaml")
    text = (user / "tiny-test.yaml").read_text()
    (user / "tiny-test.yaml").write_text(text + "\nname: mine\n" if "\nname:" not in text
                                         else "\n".join("name: mine" if ln.startswith("name:") else ln
                                                        for ln in text.splitlines()) + "\n")
    assert load_config("tiny-test").name == "mine"


def test_shipped_links_reach_the_checkout():
    """In a checkout the shipped folders are links to models/ and configs/ (what the wheel copies)."""
    root = paths.checkout_root()
    assert root is not None
    assert paths.SHIPPED_MODELS.resolve() == (root / "models").resolve()
    assert paths.SHIPPED_CONFIGS.resolve() == (root / "configs").resolve()
    assert paths.find_model("violin") == paths.SHIPPED_MODELS / "violin"
