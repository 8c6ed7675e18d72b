"""The HTTP service (FastAPI + uvicorn) over a saved model directory: ``create_app`` and ``serve``."""

from embrec.serve.app import ERROR_STATUS, create_app, serve

__all__ = ["ERROR_STATUS", "create_app", "serve"]
