"""Owns ClearML serving's registry of model endpoints and their serving containers."""
