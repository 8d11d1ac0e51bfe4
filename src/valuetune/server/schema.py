"""The OpenAI chat-completions wire format: what a request may carry, what we answer.

Requests refuse unknown fields (as OpenAI does) so a misspelt option is an error, not a
silent default. Fields OpenAI clients commonly send that change nothing here (`user`,
`stream_options`, zero penalties, `n` = 1) are accepted; values we cannot honour are
refused with a message that names the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP = 4
MAX_STOP_LENGTH = 64


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=600)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="A 64-bit integer.")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    user: str | None = Field(None, max_length=256)
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Not supported: 0 only.")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Not supported: 0 only.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s or len(s) > MAX_STOP_LENGTH for s in stops):
            raise ValueError(f"stop sequences are 1 to {MAX_STOP_LENGTH} characters")
        return stops

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def logprobs_content(entries: Any) -> dict[str, Any]:
    """OpenAI's `logprobs` object from `TokenLogprob`s."""
    return {
        "content": [
            {
                "token": e.token,
                "logprob": e.logprob,
                "bytes": list(e.token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in e.top
                ],
            }
            for e in entries
        ],
        "refusal": None,
    }


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error object, as `error_body` writes it: documents every error status."""

    error: ErrorDetail


def error_body(
    message: str, kind: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "The request was refused (OpenAI error)."},
    "5XX": {"model": ErrorResponse, "description": "The server failed (OpenAI error)."},
}
"""The OpenAPI `responses` of every operation: errors leave only as `ErrorResponse`."""

STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "A `chat.completion.chunk` or an error object as JSON; last, `[DONE]`.",
        }
    },
}
"""One server-sent event (OpenAPI 3.1 reads an event stream's `schema` per event)."""

CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `chat.completion`, or with `stream: true` its chunks as events.",
        "content": {"text/event-stream": {"schema": STREAM_EVENT}},
    }
}
"""`/v1/chat/completions` answers JSON, or server-sent events when streaming."""
