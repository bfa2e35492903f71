"""Small real perturbation screens that ship with pdae-sc (no download needed)."""

from ._datlinger import datlinger2017

__all__ = ["datlinger2017"]
