"""Owns the model registry and deployments: model versions with schemas and explainer chains,
bound per workspace to MLflow or Databricks through allowlisted connector classes."""
