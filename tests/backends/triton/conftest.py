"""The Triton backend's tests write their generated modules to a temporary cache folder (one
per session, set for each test only, so other tests see their own environment)."""

import pytest


@pytest.fixture(scope="session")
def triton_cache_folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bittile-cache"))


@pytest.fixture(autouse=True)
def triton_cache_dir(triton_cache_folder, monkeypatch):
    monkeypatch.setenv("BITTILE_CACHE_DIR", triton_cache_folder)
