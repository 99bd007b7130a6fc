"""Regenerate the example data files bundled in this folder (see README.md here).

Run from the repository root:

    python data/make_examples.py

The files are deterministic functions of the fixed seeds below (the array contents are
reproducible; the zip container's timestamps are not).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # use the package of this checkout

from mfpde.data import load_npz, well_separated  # noqa: E402

EXAMPLE_NC_SEED = 0


def make_example_nc(path: Path) -> None:
    """Small well-separated 3-class data set for neural-collapse tests (models.md §5 D1)."""
    ds = well_separated(q=3, m=4, d=5, delta_b=0.1, seed=EXAMPLE_NC_SEED)
    ds.name = "example_nc"
    ds.meta["generator"] = "mfpde.data.well_separated(q=3, m=4, d=5, delta_b=0.1, seed=0)"
    ds.save_npz(path)
    back = load_npz(path)
    assert np.array_equal(back.X, ds.X) and np.array_equal(back.Y, ds.Y)
    assert np.max(np.linalg.norm(back.X, axis=1)) <= 1.0
    print(f"wrote {path.name}: n={back.n}, d={back.d}, q={back.q}, "
          f"max |x| = {np.max(np.linalg.norm(back.X, axis=1)):.6f}")


if __name__ == "__main__":
    make_example_nc(HERE / "example_nc.npz")
