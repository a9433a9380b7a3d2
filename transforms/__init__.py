"""Imaging and measurement logic as pure functions: no Beam import here (a test enforces it)."""
