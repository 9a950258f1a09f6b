"""Fitting tumor-size curves and declared (mechanistic) models with lmfit, residuals and Jacobians in JAX."""

from .curves import CURVE_MODELS as CURVE_MODELS
from .fit import FitResult as FitResult
from .fit import fit as fit
from .batched import fit_lesions as fit_lesions
from .mechanistic import MechanisticFit as MechanisticFit
from .mechanistic import fit_model as fit_model
