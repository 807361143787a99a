"""Dassl-compatible training engine (written from scratch)."""
