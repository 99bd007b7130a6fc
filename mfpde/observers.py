"""Former home of the observers; they are the observable registry :mod:`mfpde.observables`."""
from .observables import Observers, available, observable  # noqa: F401

__all__ = ["Observers", "available", "observable"]
