"""The service's one error shape, for every error: ``{"error": kind, "detail": one sentence}``.

embrec's own errors, pydantic's validation errors and Starlette's HTTP errors (unknown path, wrong method,
unparseable body) all answer in this shape, as does the body guard in front of the endpoints, which refuses
a body that is not typed JSON (415) or larger than the limit (413) before anything reads it. Nothing here runs on
a request that succeeds except the guard's header scan and the body read the endpoint needs anyway.

    {"error": "unknown_id", "detail": "user id 'x' is not known to this model (...)."}          404
    {"error": "invalid_request", "detail": "k: Input should be greater than or equal to 1 ..."}  422
    {"error": "body_too_large", "detail": "the request body must be at most 1048576 bytes; ..."}  413
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embrec.errors import DataError, EmbrecError, InvalidParameterError, UnknownIdError

logger = logging.getLogger(__name__)

#: the default request body limit: a 10,000-id history of 80-character ids fits with room to spare
MAX_BODY_BYTES = 1 << 20

#: embrec error type -> (HTTP status, error kind); the first match in this order wins
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnknownIdError, 404, "unknown_id"),
    (InvalidParameterError, 422, "invalid_parameter"),
    (DataError, 422, "invalid_data"),
    (EmbrecError, 400, "bad_request"),
)

#: HTTP status -> error kind for Starlette/FastAPI's own errors
HTTP_KINDS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": kind, "detail": detail}, headers=headers
    )


def install(app: FastAPI) -> None:
    """Route every kind of error of ``app`` to the one JSON shape."""

    @app.exception_handler(EmbrecError)
    async def _embrec_error(request: Request, exc: EmbrecError) -> JSONResponse:
        status, kind = next((s, k) for t, s, k in ERROR_STATUS if isinstance(exc, t))
        return error_response(status, kind, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code,
            HTTP_KINDS.get(exc.status_code, "http_error"),
            http_message(request, exc),
            headers,
        )

    @app.exception_handler(Exception)
    async def _internal(
        request: Request, exc: Exception
    ) -> JSONResponse:  # a bug of ours: logged, JSON
        logger.exception("internal error on %s", request.url.path)
        return error_response(
            500,
            "internal_error",
            f"the service failed on this request ({type(exc).__name__}); "
            "the details are in its log.",
        )


def http_message(request: Request, exc: HTTPException) -> str:
    """One sentence for Starlette's own errors (they carry a bare reason phrase)."""
    path = _short(request.url.path)
    if exc.status_code == 404:
        return (
            f"there is no endpoint {path}; the service answers GET /healthz and POST /recommend, /similar "
            "and /embed (documented at /docs)."
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return f"{request.method} is not allowed on {path}; use {allowed or 'another method'}."
    if exc.status_code == 400 and exc.__cause__ is not None:
        cause = exc.__cause__
        if isinstance(cause, UnicodeError):
            return "the request body must be JSON encoded as UTF-8; received bytes that are not valid UTF-8."
        if isinstance(cause, RecursionError):
            return "the request body must be JSON nested at most a few hundred levels deep; received deeper nesting."
        return (
            f"the request body must be valid JSON; it could not be parsed ({type(cause).__name__})."
        )
    if exc.status_code == 413:
        return "the request body is larger than the service accepts."
    return f"{exc.detail}." if isinstance(exc.detail, str) else "the request was refused."


def validation_message(errors: Any) -> str:
    """One sentence from pydantic's error list: where, what was expected, what was received."""
    parts = []
    for err in list(errors)[:3]:
        kind = err.get("type")
        if kind == "json_invalid":
            parts.append(
                f"the request body must be valid JSON; received a body that is not "
                f"({err.get('ctx', {}).get('error', 'JSON decode error')})"
            )
            continue
        if kind == "missing" and tuple(err.get("loc", ())) == ("body",):
            parts.append(
                'the request body must be a JSON object such as {"user": "12346", "k": 10}; '
                "received an empty body"
            )
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        shown = (
            "" if kind in ("missing", "value_error") else f" (received {_short(err.get('input'))})"
        )
        parts.append(f"{where}: {msg}{shown}" if where else f"{msg}{shown}")
    return _short_sentence("; ".join(parts)) + "."


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 5:
        return f"a list of {len(value)} values"
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_sentence(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BodyGuard:
    """ASGI middleware in front of the POST endpoints: the body must be JSON (or untyped) and at most
    ``max_body_bytes``; it is read once here (with the limit enforced while streaming) and handed on.
    ``fast`` maps a path to a function of the body that returns the 200 response body of a valid
    request (or None: the request then goes on through FastAPI, which answers it and every error)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: frozenset[str],
        max_body_bytes: int = MAX_BODY_BYTES,
        fast: dict[str, Callable[[bytes], bytes | None]] | None = None,
    ) -> None:
        self.app = app
        self.paths = paths
        self.max_body_bytes = int(max_body_bytes)
        self.fast = fast or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        ctype = length = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value
            elif key == b"content-length":
                length = value
        if ctype is None or not _is_json(ctype):
            shown = (
                "no Content-Type"
                if ctype is None
                else f"Content-Type {_short(ctype.decode('latin-1'))}"
            )
            await _send(
                scope,
                send,
                415,
                "unsupported_media_type",
                f"the request body must be JSON sent with Content-Type: application/json; received {shown}.",
            )
            return
        limit = self.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(scope, send, f"{int(length)} bytes")
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await self._too_large(scope, send, "more")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        answer = self.fast.get(scope["path"])
        payload = answer(body) if answer is not None else None
        if payload is not None:  # a valid request, answered (embrec.serve.app.fast_handlers)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode("ascii"))]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send, received: str) -> None:
        await _send(
            scope,
            send,
            413,
            "body_too_large",
            f"the request body must be at most {self.max_body_bytes} bytes; received {received}.",
            close=True,
        )


def _is_json(ctype: bytes) -> bool:
    main = ctype.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or (
        main.startswith(b"application/") and main.endswith(b"+json")
    )


async def _send(
    scope: Scope, send: Send, status: int, kind: str, detail: str, *, close: bool = False
) -> None:
    headers = {"Connection": "close"} if close else None
    await error_response(status, kind, detail, headers)(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
