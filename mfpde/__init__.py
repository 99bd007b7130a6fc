"""mfpde: mean-field theory of neural networks, as particle systems and PDE solvers.

Public entry points (imported lazily, so ``import mfpde`` stays fast):

- :func:`load` (``mfpde.store.load``): open a stored run file.
- :func:`run` (``mfpde.runner.run``): run a configuration and write the run file.
- :func:`load_config` / :func:`parse_config`, :class:`Config`, :class:`ConfigError`.
"""

__version__ = "0.1.0"

_LAZY = {
    "load": ("mfpde.store", "load"),
    "Run": ("mfpde.store", "Run"),
    "run": ("mfpde.runner", "run"),
    "load_sweep": ("mfpde.sweep", "load_sweep"),
    "load_config": ("mfpde.config", "load_config"),
    "parse_config": ("mfpde.config", "parse_config"),
    "Config": ("mfpde.config", "Config"),
    "ConfigError": ("mfpde.config", "ConfigError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfpde' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
