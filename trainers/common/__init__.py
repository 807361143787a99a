"""Shared CLIP pieces used by every trainer: loading, text encoder, templates, classifiers."""
