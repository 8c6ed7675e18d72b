"""The HTTP service: a FastAPI app over one model directory, answering through ``embrec.api``.

    app = create_app("runs/bpr")              # loads the model now: a bad directory fails here, clearly
    serve("runs/bpr", host="127.0.0.1", port=8000)

    GET  /healthz     model name, versions, catalogue size, index
    POST /recommend   {"user": "12346"} or {"history": ["85123A", ...]}, "k", "exclude_seen"
    POST /similar     {"item": "85123A", "k": 10, "measure": "cosine"}
    POST /embed       {"history": [...]}  ->  {"dim": 64, "vector": [...]}
    GET  /docs        OpenAPI documentation (machine-readable at /openapi.json)

Every bad input is a 4xx JSON body ``{"error": kind, "detail": one sentence}``: 422 for a malformed
request or a bad parameter, 404 for an id the model does not know. The endpoints are plain functions,
run by FastAPI in its thread pool, so requests are served concurrently; the retrieval indexes are built
before the first request, never inside one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from embrec import __version__, api
from embrec.errors import (
    DataError,
    EmbrecError,
    InvalidParameterError,
    ModelFileError,
    UnknownIdError,
)
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

#: embrec error type -> (HTTP status, error kind); the first match in this order wins
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnknownIdError, 404, "unknown_id"),
    (InvalidParameterError, 422, "invalid_parameter"),
    (DataError, 422, "invalid_data"),
    (EmbrecError, 400, "bad_request"),
)
_ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}


def create_app(model_dir: str | Path) -> FastAPI:
    """A FastAPI app serving the model in ``model_dir``; raises ModelFileError for a missing or damaged one."""
    model = api.open_model(model_dir)
    info = api.describe(model)
    config = _config(Path(model_dir))
    index = _warm_up(model)
    health = Health(model=info["model"], model_class=info["class"], embrec_version=__version__,
                    trained_with=config.get("embrec_version"), created=config.get("created"),
                    data_fingerprint=config.get("data_fingerprint"), n_items=info["n_items"],
                    n_users=info["n_users"], index=index, can_similar=info["can_similar"],
                    can_embed=info["can_embed"])
    logger.info("serving %s from %s (%d items, %s index)", health.model, model_dir, health.n_items, index)

    app = FastAPI(title="embrec", version=__version__,
                  description=f"Recommendations from the {health.model!r} model in {str(model_dir)!r}.")
    app.state.model = model

    @app.exception_handler(EmbrecError)
    async def _embrec_error(request: Request, exc: EmbrecError) -> JSONResponse:
        status, kind = next((s, k) for t, s, k in ERROR_STATUS if isinstance(exc, t))
        return JSONResponse(status_code=status, content={"error": kind, "detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid_request",
                                                      "detail": validation_message(exc.errors())})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # a bug of ours: logged, JSON
        logger.exception("internal error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"error": "internal_error",
                                                      "detail": f"{type(exc).__name__}: {exc}"})

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
    """Load the model (failing before binding the port when the directory is bad) and serve it with uvicorn."""
    import uvicorn

    app = create_app(model_dir)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def validation_message(errors: Any) -> str:
    """One sentence from pydantic's error list: where, what was expected, what was received."""
    parts = []
    for err in list(errors)[:3]:
        kind = err.get("type")
        if kind == "json_invalid":
            parts.append(f"the request body must be valid JSON; received a body that is not "
                         f"({err.get('ctx', {}).get('error', 'JSON decode error')})")
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        shown = "" if kind in ("missing", "value_error") else f" (received {_short(err.get('input'))})"
        parts.append(f"{where}: {msg}{shown}" if where else f"{msg}{shown}")
    return "; ".join(parts) + "."


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 5:
        return f"a list of {len(value)} values"
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
