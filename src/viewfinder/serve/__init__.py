"""Serving trained runs over HTTP (``viewfinder serve``): a FastAPI app with dynamic batching and
one static page. Imports nothing from ``training/`` but ``inference``."""
