"""Request and response bodies of the HTTP service (pydantic), shown in the OpenAPI docs at /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator


def _id_not_bool(value: Any) -> Any:
    """JSON true/false is never an id (pydantic would read it as the integer 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer or a string, not the boolean {str(value).lower()} (ids that are "
                         "the words True/False are sent as strings)")
    return value


def _count_not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, not the boolean {str(value).lower()}")
    return value


#: a raw user or item id as it appears in the training log (an integer or a string, never a boolean)
RawId = Annotated[int | str, BeforeValidator(_id_not_bool)]
Count = Annotated[int, BeforeValidator(_count_not_bool)]
#: an id in a response (no validator on the hot path: the ids come from the model's vocabulary)
OutId = int | str

MAX_K = 1000
MAX_HISTORY = 10_000
MAX_ALLOW = 100_000
MAX_DENY = 10_000  # per request; a batch applies it to every user


def _allow_field() -> Any:
    return Field(None, min_length=1, max_length=MAX_ALLOW,
                 description="Allow-list: only these raw item ids may be returned (applied inside the top-k "
                 "search, so k come back when k allowed remain). An unknown id is a 404 naming it.")


def _deny_field() -> Any:
    return Field(None, min_length=1, max_length=MAX_DENY,
                 description="Deny-list: raw item ids never returned. An unknown id is a 404 naming it.")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class RecommendRequest(_Request):
    """Exactly one of ``user`` (a known user) or ``history`` (anyone: raw item ids, oldest first)."""

    user: RawId | None = Field(None, description="A raw user id known to the model.", examples=["12346"])
    history: list[RawId] | None = Field(None, min_length=1, max_length=MAX_HISTORY,
                                        description="Raw item ids the user interacted with.",
                                        examples=[["85123A", "71053"]])
    k: Count = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude_seen: StrictBool = Field(True, description="Leave out the items of the user's history (default); "
                                     "false keeps them (repeat purchases).")
    items: list[RawId] | None = _allow_field()
    exclude_items: list[RawId] | None = _deny_field()

    @model_validator(mode="after")
    def _one_of_user_or_history(self) -> RecommendRequest:
        if (self.user is None) == (self.history is None):
            given = "both" if self.user is not None else "neither"
            raise ValueError(f"give exactly one of user or history; received {given}")
        return self


MAX_BATCH = 1000


class RecommendBatchRequest(_Request):
    """Exactly one of ``users`` (known users) or ``histories`` (anyone), answered in one pass."""

    users: list[RawId] | None = Field(None, min_length=1, max_length=MAX_BATCH,
                                      description="Raw user ids known to the model.", examples=[["12346"]])
    histories: list[list[RawId]] | None = Field(None, min_length=1, max_length=MAX_BATCH,
                                                description="One list of raw item ids per user.")
    k: Count = Field(10, ge=1, le=MAX_K, description="How many items to return per user.")
    exclude_seen: StrictBool = Field(True, description="Leave out the items of each user's history.")
    items: list[RawId] | None = _allow_field()
    exclude_items: list[RawId] | None = _deny_field()

    @model_validator(mode="after")
    def _one_of_users_or_histories(self) -> RecommendBatchRequest:
        if (self.users is None) == (self.histories is None):
            given = "both" if self.users is not None else "neither"
            raise ValueError(f"give exactly one of users or histories; received {given}")
        for h in self.histories or ():
            if not 1 <= len(h) <= MAX_HISTORY:
                raise ValueError(f"each history must hold 1 to {MAX_HISTORY} item ids; received {len(h)}")
        return self


class SimilarRequest(_Request):
    item: RawId = Field(..., description="A raw item id known to the model.", examples=["85123A"])
    k: Count = Field(10, ge=1, le=MAX_K, description="How many neighbours to return.")
    measure: Literal["cosine", "dot"] = Field("cosine", description="Similarity between item embeddings.")
    items: list[RawId] | None = _allow_field()
    exclude_items: list[RawId] | None = _deny_field()


class SimilarUsersRequest(_Request):
    user: RawId = Field(..., description="A raw user id known to the model.", examples=["12346"])
    k: Count = Field(10, ge=1, le=MAX_K, description="How many neighbours to return.")
    measure: Literal["cosine", "dot"] = Field("cosine", description="Similarity between user embeddings.")


class EmbedRequest(_Request):
    history: list[RawId] = Field(..., min_length=1, max_length=MAX_HISTORY,
                                 description="Raw item ids; the user embedding of anyone with this history.")


class ItemScore(BaseModel):
    item: OutId
    score: float
    label: str | None = Field(None, description="The item's title / description, when the model carries labels.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str = Field(..., description="Registry name of the model, e.g. 'bpr'.")
    model_class: str
    embrec_version: str = Field(..., description="Version of the embrec serving the model.")
    trained_with: str | None = Field(None, description="embrec version that saved the model.")
    created: str | None = Field(None, description="When the model directory was written (UTC).")
    data_fingerprint: str | None = None
    n_items: int = Field(..., description="Catalogue size.")
    n_users: int
    index: str = Field(..., description="Retrieval index: 'exact', 'hnsw', 'ivf' or 'scores'.")
    can_similar: bool
    can_embed: bool


class RecommendResponse(BaseModel):
    model: str
    user: OutId | None = None
    history: list[OutId] | None = None
    k: int
    exclude_seen: bool
    items: list[ItemScore]


class SimilarResponse(BaseModel):
    model: str
    item: OutId
    label: str | None = None
    k: int
    measure: str
    items: list[ItemScore]


class UserScore(BaseModel):
    user: OutId
    score: float


class SimilarUsersResponse(BaseModel):
    model: str
    user: OutId
    k: int
    measure: str
    users: list[UserScore]


class EmbedResponse(BaseModel):
    model: str
    history: list[OutId]
    dim: int
    vector: list[float]


class ErrorResponse(BaseModel):
    error: str = Field(..., description="Kind of problem: invalid_request, unknown_id, invalid_parameter...")
    detail: str = Field(..., description="One sentence naming the problem.")


class RecommendBatchItem(BaseModel):
    user: OutId | None = None
    history: list[OutId] | None = None
    items: list[ItemScore]


class RecommendBatchResponse(BaseModel):
    model: str
    k: int
    exclude_seen: bool
    results: list[RecommendBatchItem]
