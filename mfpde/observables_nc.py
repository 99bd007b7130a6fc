"""Observables of the neural-collapse theory (Wu & Mondelli): registered on import by
:mod:`mfpde.observables`."""
