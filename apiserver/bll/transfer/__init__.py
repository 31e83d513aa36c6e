"""Owns moving another server's work into this one (``python -m apiserver import clearml|mlflow``): one writer
(``writer.py``) that stores records keyed by their source ids, and one reader per kind of source."""
