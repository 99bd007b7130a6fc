"""mfpde.rules: the method / batch / noise / friction rules, declared once, and the driver
registry."""
import pytest

from mfpde.rules import DRIVERS, HEAVY_BALL, METHODS, PN_METHODS, driver_spec, method_violation


@pytest.mark.parametrize("method, kw, field, words", [
    ("adam", {}, "method", ["unknown method", "'adam'", "gd"]),
    ("noisy_sgd", {"pn": True}, "method", ["Pham–Nguyen", "sgd, shb, shb_polyak"]),
    ("gd", {"batch": 4}, "batch", ["'gd' is full batch"]),
    ("gd", {"online": True}, "batch", ["full batch"]),
    ("sgd", {}, "batch", ["'sgd' needs batch >= 1"]),
    ("gd", {"beta": 10.0}, "beta", ["noiseless", "noisy_sgd"]),
    ("sgd", {"batch": 2, "beta": 10.0}, "beta", ["noiseless"]),
    ("noisy_sgd", {}, "beta", ["needs beta < inf"]),
    ("sgd", {"pn": True, "beta": 3.0}, "beta", ["Pham–Nguyen", "noiseless"]),
    ("shb", {}, "gamma", ["needs the friction gamma"]),
    ("shb_polyak", {"momentum_allowed": True}, "gamma", ["gamma or momentum"]),
    ("shb", {"gamma": 1.0, "momentum": 0.9, "momentum_allowed": True}, "momentum", ["not both"]),
    ("shb", {"momentum": 0.9}, "momentum", ["not a momentum"]),
    ("gd", {"gamma": 1.0}, "gamma", ["heavy-ball parameter"]),
    ("gd", {"momentum": 0.9, "momentum_allowed": True}, "momentum", ["'shb' or 'shb_polyak'"]),
])
def test_violations(method, kw, field, words):
    v = method_violation(method, **kw)
    assert v is not None and v.field == field
    for w in words:
        assert w in v.message, (w, v.message)


@pytest.mark.parametrize("method, kw", [
    ("gd", {}), ("sgd", {"batch": 8}), ("noisy_sgd", {"beta": 50.0}),
    ("noisy_sgd", {"batch": 8, "beta": 50.0}), ("shb", {"gamma": 2.0}),
    ("shb", {"gamma": 2.0, "beta": 40.0}), ("shb_polyak", {"momentum": 0.9, "momentum_allowed": True}),
    ("sgd", {"pn": True}), ("shb", {"pn": True, "gamma": 1.0, "batch": 4}),
])
def test_allowed(method, kw):
    assert method_violation(method, **kw) is None


def test_lists():
    assert set(PN_METHODS) <= set(METHODS) and set(HEAVY_BALL) <= set(METHODS)
    assert all(d.family in ("particle", "grid") for d in DRIVERS.values())
    assert all(d.models in ("readout", "pham_nguyen", "optional", "none")
               for d in DRIVERS.values())
    assert {n for n, d in DRIVERS.items() if d.family == "grid"} == {"fv", "phase_grid", "radial"}
    assert all(not d.fixed_step for d in DRIVERS.values() if d.family == "grid")
    assert driver_spec("fv").quantities == ("free_energy",)
    with pytest.raises(KeyError, match="allowed"):
        driver_spec("euler")
