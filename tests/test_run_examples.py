"""Every bundled run example runs end to end with ``mfpde run`` (every driver through the
controller) and writes a complete run file."""
from pathlib import Path

import pytest

from mfpde.cli import main
from mfpde.config import load_config
from mfpde.store import load

ROOT = Path(__file__).resolve().parents[1]
RUNS = [p for p in sorted((ROOT / "validation").glob("example_*.toml"))
        if not any(job in p.read_text() for job in ("[compare]", "[sparse]", "[sweep]"))]


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_bundled_example_runs(path, tmp_path):
    out = tmp_path / "run.h5"
    cfg = load_config(path)
    overrides = []
    if cfg.dynamics.stages:                                  # runs in stages: shorter stages
        overrides = ["--set", 'dynamics.stages=[{name = "a", steps = 20, train_W = false}, '
                              '{name = "b", steps = 20}]']
    elif cfg.dynamics.n_steps is not None and cfg.dynamics.n_steps > 200:
        overrides = ["--set", "dynamics.steps=40"]          # the long particle examples
    assert main(["run", str(path), "-o", str(out), "-q", *overrides]) == 0
    run = load(out)
    assert run.status == "complete"
    assert list(run.quantities) == list(run.config["observe"]["quantities"])
    assert len(run.series["t"]) >= 2
