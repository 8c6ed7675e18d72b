"""The HTTP service: a FastAPI app over one model directory, answering through ``embrec.api``.

    app = create_app("runs/bpr")              # loads the model now: a bad directory fails here, clearly
    serve("runs/bpr", host="127.0.0.1", port=8000)

    GET  /healthz     model name, versions, catalogue size, index
    POST /recommend   {"user": "12346"} or {"history": ["85123A", ...]}, "k", "exclude_seen"
    POST /recommend/batch  {"users": [...]} or {"histories": [[...], ...]}, "k", "exclude_seen": one pass
    (/recommend, /recommend/batch and /similar also take "items": [...] (allow-list) and
    "exclude_items": [...] (deny-list) of raw item ids; an unknown id there is a 404 naming it)
    POST /similar     {"item": "85123A", "k": 10, "measure": "cosine"}
    POST /similar_users  {"user": "12346", "k": 10, "measure": "cosine"}  (models with user vectors)
    POST /embed       {"history": [...]}  ->  {"dim": 64, "vector": [...]}
    GET  /docs        OpenAPI documentation (machine-readable at /openapi.json); Swagger UI's script and
                      style are served by the service itself from the swagger-ui-bundle package
                      (/docs-assets/...), so the page works offline

Every error is a JSON body ``{"error": kind, "detail": one sentence}`` (see ``embrec.serve.errors``): 422
for a malformed request or a bad parameter, 404 for an id the model does not know or an unknown path, 405
for a wrong method, 413 for a body over ``max_body_bytes`` (1 MiB), 415 for a body not typed JSON, 400 for
a body that is not UTF-8 or nested too deeply. The endpoints are ``async`` (their work is shorter than
a thread-pool hop); ``serve(workers=N)`` runs N processes for concurrency across cores. The retrieval
indexes are built before the first request, never inside one.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from swagger_ui_bundle import swagger_ui_path

from embrec import __version__, api
from embrec.errors import ModelFileError, check_positive_int
from embrec.serve import errors
from embrec.serve.errors import ERROR_STATUS, MAX_BODY_BYTES, BodyGuard, validation_message
from embrec.serve.listen import bind
from embrec.serve.schemas import (
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    Health,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    SimilarResponse,
    SimilarUsersRequest,
    SimilarUsersResponse,
)

try:
    import orjson
except ImportError:  # an environment installed before embrec declared it: json.dumps (create_app warns)
    orjson = None

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
    if orjson is None:
        logger.warning("orjson is not installed (an environment older than embrec's dependencies): responses "
                       "are encoded by json.dumps, 20-45 µs slower a request; pip install orjson")

    app = FastAPI(title="embrec", version=__version__, docs_url=None, redoc_url=None,
                  description=f"Recommendations from the {health.model!r} model in {str(model_dir)!r}.")
    app.state.model = model
    _offline_docs(app)

    errors.install(app)

    health_body = JSONBody(health.model_dump())

    # One handler per endpoint, each: validated request -> plain JSON-able dict. FastAPI serves them
    # (the OpenAPI docs, and every error through errors.install); ``BodyGuard``'s fast path serves a
    # valid request to the same handler directly (see ``fast_handlers``).
    handlers = {
        "/recommend": (RecommendRequest, lambda r: api.recommend(
            model, user=r.user, history=r.history, k=r.k, exclude_seen=r.exclude_seen, items=r.items,
            exclude_items=r.exclude_items)),
        "/recommend/batch": (RecommendBatchRequest, lambda r: api.recommend_batch(
            model, users=r.users, histories=r.histories, k=r.k, exclude_seen=r.exclude_seen,
            items=r.items, exclude_items=r.exclude_items)),
        "/similar": (SimilarRequest, lambda r: api.similar(
            model, item=r.item, k=r.k, measure=r.measure, items=r.items, exclude_items=r.exclude_items)),
        "/similar_users": (SimilarUsersRequest, lambda r: api.similar_users(
            model, user=r.user, k=r.k, measure=r.measure)),
        "/embed": (EmbedRequest, lambda r: api.embed(model, history=r.history)),
    }
    app.add_middleware(BodyGuard, paths=frozenset(handlers), max_body_bytes=max_body_bytes,
                       fast=fast_handlers(handlers))

    # The endpoints are ``async``: a request's work is a sub-millisecond numpy call, cheaper than the hop
    # to FastAPI's thread pool (and its lock contention) that a plain ``def`` costs; the response is
    # encoded once and returned as bytes, skipping FastAPI's second validation pass through
    # response_model (kept for the OpenAPI docs). Concurrency across cores: ``--workers N``.
    @app.get("/healthz", response_model=Health)
    async def healthz() -> Response:
        return health_body

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS)
    async def recommend(req: RecommendRequest) -> Response:
        return JSONBody(handlers["/recommend"][1](req))

    @app.post("/recommend/batch", response_model=RecommendBatchResponse, responses=_ERRORS)
    async def recommend_batch(req: RecommendBatchRequest) -> Response:
        return JSONBody(handlers["/recommend/batch"][1](req))

    @app.post("/similar", response_model=SimilarResponse, responses=_ERRORS)
    async def similar(req: SimilarRequest) -> Response:
        return JSONBody(handlers["/similar"][1](req))

    @app.post("/similar_users", response_model=SimilarUsersResponse, responses=_ERRORS)
    async def similar_users(req: SimilarUsersRequest) -> Response:
        return JSONBody(handlers["/similar_users"][1](req))

    @app.post("/embed", response_model=EmbedResponse, responses=_ERRORS)
    async def embed(req: EmbedRequest) -> Response:
        return JSONBody(handlers["/embed"][1](req))

    return app


def fast_handlers(handlers: dict[str, tuple[type[BaseModel], Callable[[Any], dict[str, Any]]]]
                  ) -> dict[str, Callable[[bytes], bytes | None]]:
    """Per path: raw body -> the 200 response body, or None when the request is not a plain success.

    A valid request is parsed and validated in one pass by pydantic-core (``model_validate_json``, the
    same model FastAPI validates against) and answered by the endpoint's handler without FastAPI's
    routing, dependency solving and response objects (measured: ~60 % of a stubbed request's cost
    in-process). Anything else — a body that does not validate, an error the handler raises, a result
    that is not JSON — returns None and the request goes through FastAPI as before, so every error
    response is exactly FastAPI's (errors.install). The handlers only read the model: running one twice
    on the error path changes nothing."""

    def make(schema: type[BaseModel], handler: Callable[[Any], dict[str, Any]]) -> Callable[[bytes], bytes | None]:
        def answer(body: bytes) -> bytes | None:
            try:
                return encode_json(handler(schema.model_validate_json(body)))
            except Exception:  # noqa: BLE001 - the FastAPI path answers it, with its own error
                return None

        return answer

    return {path: make(schema, handler) for path, (schema, handler) in handlers.items()}


def encode_json(content: Any) -> bytes:
    """Compact UTF-8 JSON, by orjson: 1-2 µs for a recommend or embed response where ``json.dumps``
    takes 22-48 µs (the same JSON values; every float round-trips exactly, only the exponent of a tiny
    float is spelt differently: 1e-7 for 1e-07). orjson writes NaN and infinity as null; the
    service never hands it one (``embrec.api`` returns only finite scores and refuses a non-finite
    embedding). What orjson refuses (an integer past 64 bits, a non-string key) goes through
    ``json.dumps``, for which NaN or infinity is an error (ValueError)."""
    if orjson is not None:
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class JSONBody(Response):
    """A JSON response encoded once by ``json.dumps`` (compact, UTF-8)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)


#: environment variable through which ``serve(workers=N)`` tells each worker its model directory
MODEL_DIR_ENV = "EMBREC_SERVE_MODEL_DIR"


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process: loads the model named by MODEL_DIR_ENV once, at start."""
    _one_thread()
    return _settled(create_app(os.environ[MODEL_DIR_ENV]))


def _settled(app: FastAPI) -> FastAPI:
    """Once per serving process, after the model is loaded: collect the loading's garbage, then move every
    object alive now (the model, torch, pandas: ~260,000 on a two-tower) to the garbage collector's
    permanent generation (``gc.freeze``). A full collection then scans only what requests create instead
    of rescanning the model, during which no request is answered (measured on the two-tower under wrk on
    the busy 2-core machine: the first full collection after start took 128-156 ms of CPU; after the
    freeze, none ran in the same 8 s)."""
    gc.collect()
    gc.freeze()
    return app


def _one_thread() -> None:
    """Set once per serving process: one torch intra-op thread. A request is a small product; a second
    thread only contends (measured on two-tower: 10 ms a request with one thread, 60 ms with two on a
    busy 2-core machine). Use ``workers`` for more cores. BLAS (numpy, scipy: the fold-in algebra) gets
    one thread too, set once here rather than around every request."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1, "blas")  # the process is the server's: a setting for its whole life


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
          access_log: bool = False, workers: int = 1) -> None:
    """Bind ``host:port`` (a used port or a bad host is an InvalidParameterError naming the option), load the
    model (a bad directory is a ModelFileError) and serve it with uvicorn on that socket.

    ``access_log`` (off by default: one log line per request costs ~15 % of the throughput) turns on
    uvicorn's access log. ``workers`` > 1 runs that many uvicorn worker processes on the one socket, each
    loading the model once when it starts. Each serving process uses one torch thread."""
    import uvicorn

    workers = check_positive_int("workers", workers)
    _one_thread()
    sock = bind(host, port)
    try:
        if workers == 1:
            app = _settled(create_app(model_dir))
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                                   access_log=access_log))
            server.run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        api.open_model(model_dir)  # a bad directory fails here, once, not in every worker
        os.environ[MODEL_DIR_ENV] = str(model_dir)
        config = uvicorn.Config("embrec.serve.app:worker_app", factory=True, host=host, port=port,
                                workers=workers, log_level=log_level, access_log=access_log)
        Multiprocess(config, sockets=[sock]).run()
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
    """Build the retrieval indexes now (recommend; similar by cosine and dot; similar_users by cosine,
    the default measure, for models with user vectors); returns the index kind."""
    if not hasattr(model, "index_for"):
        return "scores"
    try:
        main = model.index_for("dot")
        for measure in ("cosine", "dot"):
            model.index_for(measure, candidates=False)
        if hasattr(model, "_user_index") and getattr(model, "users_", None) is not None and model.users_.n_ids >= 2:
            model._user_index("cosine")
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"the model's embeddings cannot be indexed ({exc}); the directory is damaged.") from None
    return "exact" if main.is_exact() else getattr(main, "kind", "approximate")
