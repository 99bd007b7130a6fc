"""Grid solvers in the run store: /grid density snapshots, free-energy series, plot, load."""
import numpy as np
import pytest

from mfpde.meanfield.grid import FVSolver, Grid1D, Grid2D, gaussian_cell_averages, ou_potential
from mfpde.plotting import plot_run
from mfpde.runner import record
from mfpde.store import load


def test_ou_grid_run_file_round_trip(tmp_path):
    g = Grid1D(-4.0, 4.0, 200)
    solver = FVSolver(g, ou_potential(g, lam=1.0), gaussian_cell_averages(g, 1.0, 0.25), beta=2.0)
    path = record(solver, tmp_path / "ou.h5", t_end=1.0, every_time=0.25, snapshot_every_time=0.25,
                  description="OU test")
    run = load(path)
    assert run.status == "complete"
    grid = run.grid()
    assert grid["density"].shape == (5, 200) and np.allclose(grid["t"], np.linspace(0, 1, 5))
    dx = np.diff(grid["edges0"])
    assert np.allclose(grid["density"] @ dx, 1.0, rtol=1e-12)              # mass, every snapshot
    assert np.all(run.series["mass_drift"] < 1e-12)
    F = run.series["free_energy"]
    assert np.all(np.diff(F) <= 0)                                          # discrete F decreases
    assert np.array_equal(grid["axis0"], g.axes[0])
    png = plot_run(run, tmp_path / "ou.png")
    assert (tmp_path / "ou.png").stat().st_size > 10_000 and png.endswith("ou.png")


def test_2d_grid_plot(tmp_path):
    g = Grid2D((-5.0, -5.0), (5.0, 5.0), (40, 36))
    X = g.points
    V = 0.5 * np.sum(X**2, 1).reshape(g.shape)
    from mfpde.meanfield.grid import ExternalPotential
    rho0 = np.exp(-np.sum((X - 1.0) ** 2, 1)).reshape(g.shape)
    solver = FVSolver(g, ExternalPotential(g, V), rho0 / (rho0.sum() * g.cell_volume), beta=4.0)
    run = load(record(solver, tmp_path / "g2.h5", t_end=0.2, every_time=0.1,
                      snapshot_every_time=0.1))
    assert run.grid()["density"].shape == (3, 40, 36)
    plot_run(run, tmp_path / "g2.png")


def test_bad_times(tmp_path):
    g = Grid1D(-8.0, 8.0, 50)
    solver = FVSolver(g, ou_potential(g), gaussian_cell_averages(g, 0.0, 1.0))
    with pytest.raises(ValueError, match="t_end"):
        record(solver, tmp_path / "x.h5", t_end=0.0)
