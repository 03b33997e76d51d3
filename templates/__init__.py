"""Jinja2 message templates, shipped as package data."""
