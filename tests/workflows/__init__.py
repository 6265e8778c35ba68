"""Workflow tests: the Hera template (schema, golden file, manifests) and the engines that run it."""
