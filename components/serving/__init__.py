"""Pieces of `cs230 serve` (components/serve.py): the model holder, request inputs, the
trigger-word routes and the Ray Serve deployment."""
