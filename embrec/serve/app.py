"""The HTTP service: a FastAPI app over one model directory, answering through ``embrec.api``.

    app = create_app("runs/bpr")              # loads the model now: a bad directory fails here, clearly
    serve("runs/bpr", host="127.0.0.1", port=8000)

    GET  /healthz     model name, versions, catalogue size, index
    POST /recommend   {"user": "12346"} or {"history": ["85123A", ...]}, "k", "exclude_seen"
    POST /similar     {"item": "85123A", "k": 10, "measure": "cosine"}
    POST /embed       {"history": [...]}  ->  {"dim": 64, "vector": [...]}
    GET  /docs        OpenAPI documentation (machine-readable at /openapi.json); Swagger UI's script and
                      style are served by the service itself from the swagger-ui-bundle package
                      (/docs-assets/...), so the page works offline

Every error is a JSON body ``{"error": kind, "detail": one sentence}`` (see ``embrec.serve.errors``): 422
for a malformed request or a bad parameter, 404 for an id the model does not know or an unknown path, 405
for a wrong method, 413 for a body over ``max_body_bytes`` (1 MiB), 415 for a body not typed JSON, 400 for
a body that is not UTF-8 or nested too deeply. The endpoints are plain functions,
run by FastAPI in its thread pool, so requests are served concurrently; the retrieval indexes are built
before the first request, never inside one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from embrec import __version__, api
from embrec.errors import ModelFileError
from embrec.serve import errors
from embrec.serve.errors import ERROR_STATUS, MAX_BODY_BYTES, BodyGuard, validation_message
from embrec.serve.listen import bind
from embrec.serve.schemas import (
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    Health,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    SimilarResponse,
)

logger = logging.getLogger(__name__)

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422)}
__all__ = ["ERROR_STATUS", "create_app", "serve", "validation_message"]


def create_app(model_dir: str | Path, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """A FastAPI app serving the model in ``model_dir``; raises ModelFileError for a missing or damaged one.
    Request bodies larger than ``max_body_bytes`` are refused with 413, bodies not typed JSON with 415."""
    model = api.open_model(model_dir)
    info = api.describe(model)
    config = getattr(model, "saved_config_", None) or {}  # config.json of the very version that was loaded
    index = _warm_up(model)
    health = Health(model=info["model"], model_class=info["class"], embrec_version=__version__,
                    trained_with=config.get("embrec_version"), created=config.get("created"),
                    data_fingerprint=config.get("data_fingerprint"), n_items=info["n_items"],
                    n_users=info["n_users"], index=index, can_similar=info["can_similar"],
                    can_embed=info["can_embed"])
    logger.info("serving %s from %s (%d items, %s index)", health.model, model_dir, health.n_items, index)

    app = FastAPI(title="embrec", version=__version__, docs_url=None, redoc_url=None,
                  description=f"Recommendations from the {health.model!r} model in {str(model_dir)!r}.")
    app.state.model = model
    app.add_middleware(BodyGuard, paths=frozenset({"/recommend", "/similar", "/embed"}),
                       max_body_bytes=max_body_bytes)
    _offline_docs(app)

    errors.install(app)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return health

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS)
    def recommend(req: RecommendRequest) -> dict[str, Any]:
        return api.recommend(model, user=req.user, history=req.history, k=req.k, exclude_seen=req.exclude_seen)

    @app.post("/similar", response_model=SimilarResponse, responses=_ERRORS)
    def similar(req: SimilarRequest) -> dict[str, Any]:
        return api.similar(model, item=req.item, k=req.k, measure=req.measure)

    @app.post("/embed", response_model=EmbedResponse, responses=_ERRORS)
    def embed(req: EmbedRequest) -> dict[str, Any]:
        return api.embed(model, history=req.history)

    return app


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Bind ``host:port`` (a used port or a bad host is an InvalidParameterError naming the option), load the
    model (a bad directory is a ModelFileError) and serve it with uvicorn on that socket."""
    import uvicorn

    sock = bind(host, port)
    try:
        app = create_app(model_dir)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        server.run(sockets=[sock])
    finally:
        sock.close()


DOCS_ASSETS = "/docs-assets"


def _offline_docs(app: FastAPI) -> None:
    """/docs as Swagger UI whose script, style and icon come from this service (the swagger-ui-bundle
    package), not from a CDN: the page works without a network. ReDoc (CDN only) is not offered."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="embrec - docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
                                   oauth2_redirect_url=redirect)

    @app.get(redirect, include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _warm_up(model: Any) -> str:
    """Build the retrieval indexes now (recommend; similar by cosine and dot); returns the index kind."""
    if not hasattr(model, "index_for"):
        return "scores"
    try:
        main = model.index_for("dot")
        for measure in ("cosine", "dot"):
            model.index_for(measure, candidates=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"the model's embeddings cannot be indexed ({exc}); the directory is damaged.") from None
    return "exact" if main.is_exact() else getattr(main, "kind", "approximate")
