"""Shared infrastructure for every app. Nothing here imports an app."""
