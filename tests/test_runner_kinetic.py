"""The kinetic (heavy-ball) solver through the runner: velocities in the store, kinetic observers,
bitwise resume of velocities and cached forces, and config errors."""
import numpy as np
import pytest

from mfpde.config import ConfigError
from mfpde.runner import run
from mfpde.store import load

CONFIG = """
[model]
kind = "nc"
p = 4
Gamma = 2.0
lam = 0.05
lam_W = 0.05
[data]
kind = "gaussian_mixture"
q = 3
m = 10
d = 4
[dynamics]
solver = "kinetic"
integrator = "{integrator}"
gamma = 2.0
N = 300
dt = 0.05
steps = {steps}
beta = {beta}
batch = {batch}
[observe]
every = 10
quantities = ["loss", "hamiltonian", "kinetic_energy", "nc1"]
snapshot_every = 20
[output]
checkpoint_every = 20
"""


def _cfg(tmp_path, name, steps=60, integrator="baoab", beta="20.0", batch=0):
    p = tmp_path / f"{name}.toml"
    p.write_text(CONFIG.format(steps=steps, integrator=integrator, beta=beta, batch=batch))
    return p


@pytest.mark.parametrize("integrator,beta,batch", [("baoab", "20.0", 10), ("splitting", "inf", 0)])
def test_kinetic_run_resume_is_bitwise(tmp_path, integrator, beta, batch):
    full = run(_cfg(tmp_path, "a", 60, integrator, beta, batch), tmp_path / "a.h5", quiet=True)
    half = _cfg(tmp_path, "b", 40, integrator, beta, batch)
    run(half, tmp_path / "b.h5", quiet=True)
    run(_cfg(tmp_path, "b", 60, integrator, beta, batch), tmp_path / "b.h5", resume=True, quiet=True)
    a, b = load(full), load(tmp_path / "b.h5")
    assert a.status == b.status == "complete"
    sa, sb = a.snapshot(-1), b.snapshot(-1)
    assert sa.r is not None and sa.r.shape == sa.theta.shape
    assert np.array_equal(sa.theta, sb.theta) and np.array_equal(sa.r, sb.r)
    for k in a.series:
        assert np.array_equal(a.series[k], b.series[k]), k
    if beta == "inf":     # noiseless splitting: the Lyapunov function never increases
        assert np.all(np.diff(a.series["hamiltonian"]) <= 1e-12)


def test_kinetic_options_and_quantities_are_checked(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(CONFIG.format(steps=10, integrator="baoab", beta="20.0", batch=0)
                 .replace('solver = "kinetic"', 'solver = "langevin"'))
    with pytest.raises(ConfigError, match="only used by solver"):
        run(p, tmp_path / "x.h5", quiet=True)
    p.write_text(CONFIG.format(steps=10, integrator="baoab", beta="20.0", batch=0)
                 .replace('solver = "kinetic"', 'solver = "langevin"')
                 .replace('integrator = "baoab"\ngamma = 2.0\n', ''))
    with pytest.raises(ConfigError, match="need dynamics.solver"):
        run(p, tmp_path / "y.h5", quiet=True)
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()
