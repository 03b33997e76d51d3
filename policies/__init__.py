"""SLA policy packs (YAML), shipped as package data."""
