"""Shared pytest configuration: markers (also declared in pyproject.toml)."""

import importlib.util

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests, deselected by default")
    config.addinivalue_line("markers", "mpi: tests that need mpi4py and an MPI launcher")


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("mpi4py") is None:
        skip = pytest.mark.skip(reason="mpi4py is not installed (pip install -e '.[mpi]')")
        for item in items:
            if "mpi" in item.keywords:
                item.add_marker(skip)
