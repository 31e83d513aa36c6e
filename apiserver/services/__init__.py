"""Owns the thin handlers: read the validated call, call bll, return a dict."""
