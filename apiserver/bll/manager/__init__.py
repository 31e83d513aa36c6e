"""Owns the render/batch manager: frame-range tasks handed to registered workers by priority."""
