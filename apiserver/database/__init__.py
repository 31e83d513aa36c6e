"""Owns the MongoDB connection and the mongoengine models."""
