"""Prefect flows: they orchestrate, they hold no business rule."""
