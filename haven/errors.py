"""One exception hierarchy for all of Haven.

Every error a user can cause or meet is a :class:`HavenError` subclass carrying what the
HTTP layer needs (status code, OpenAI ``type`` and ``code``) and a message that reads well
on one CLI line. The server maps them once to OpenAI/Ollama JSON; the CLI maps them once to
a red line and exit code 1. Nothing else should invent error shapes.
"""

from __future__ import annotations


class HavenError(Exception):
    """Base class. ``message`` is one readable sentence, no traceback needed."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --- request errors (4xx) -------------------------------------------------------------


class InvalidRequestError(HavenError):
    """The request is malformed or asks for something impossible (HTTP 400)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (plus requested tokens) does not fit the model's context."""

    code = "context_length_exceeded"


class PromptTooLargeError(InvalidRequestError):
    """The request has more messages or characters than the model's context could hold (issue 11)."""

    code = "prompt_too_large"


class GrammarError(InvalidRequestError):
    """A GBNF grammar or JSON schema could not be compiled."""

    code = "invalid_grammar"


class AuthenticationError(HavenError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(HavenError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class UnsupportedMediaTypeError(HavenError):
    """The body is not in the content type the endpoint takes (JSON) (issue 11)."""

    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class NotFoundError(HavenError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """A model name that is not in the store. Never silently replaced by another model."""

    code = "model_not_found"


class PayloadTooLargeError(HavenError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class QueueFullError(HavenError):
    """Back-pressure: the model's request queue is full (HTTP 429 with Retry-After)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(HavenError):
    """Settings that must not be used together (e.g. a public bind address without an api_key)."""

    status_code = 500
    code = "invalid_configuration"


# --- server-side errors (5xx) ----------------------------------------------------------


class ModelLoadError(HavenError):
    """A model could not be loaded (bad file, out of memory) (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    code = "model_load_failed"


class MemoryBudgetError(ModelLoadError):
    """A context/parallel configuration would not fit the memory budget."""

    code = "memory_budget_exceeded"


class EngineError(HavenError):
    """llama.cpp failed while decoding."""

    code = "engine_error"


class EngineClosedError(EngineError):
    """The model was unloaded while a request still held its engine (HTTP 503: retrying loads it again)."""

    status_code = 503
    error_type = "server_error"
    code = "model_unloaded"


class QuantizeError(HavenError):
    """llama.cpp could not quantize a GGUF file (bad source, unknown type, disk full)."""

    code = "quantize_failed"


class ModelFactoryError(InvalidRequestError):
    """The test-model factory was asked for an architecture/size/quant/template it cannot build."""

    code = "invalid_factory_arguments"


# --- model store -------------------------------------------------------------------------


class StoreError(HavenError):
    """Base for model-store problems (import, pull, remove)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "store_error"


class InvalidModelNameError(StoreError):
    code = "invalid_model_name"


class InvalidModelFileError(StoreError):
    """Not a GGUF file, truncated, or with absurd header values."""

    code = "invalid_model_file"


class UnsafeTemplateError(StoreError):
    """The model's chat template failed the sandbox safety scan."""

    code = "unsafe_chat_template"


class DownloadError(StoreError):
    status_code = 502
    error_type = "server_error"
    code = "download_failed"


class OfflineError(DownloadError):
    code = "offline"


class HashMismatchError(DownloadError):
    code = "hash_mismatch"


class PullCancelledError(DownloadError):
    """A pull stopped because its requester went away (issue 12 / issue 11 item 5)."""

    code = "pull_cancelled"


# --- audit -------------------------------------------------------------------------------


class AuditError(HavenError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "audit_error"


class SuiteFormatError(AuditError):
    """A malformed suite file; the message names the file, line and field."""

    code = "invalid_suite"


class EndpointUnreachableError(AuditError):
    status_code = 502
    error_type = "server_error"
    code = "endpoint_unreachable"


class DigestMismatchError(StoreError):
    """Uploaded bytes do not hash to the digest they were sent under (issue 9, ``POST /api/blobs``)."""

    status_code = 400
    code = "digest_mismatch"


# --- remote upstreams (scale-out) --------------------------------------------------------


class UpstreamError(HavenError):
    """A remote upstream answered something Haven cannot use: garbage, an oversized body, a 5xx (HTTP 502)."""

    status_code = 502
    error_type = "upstream_error"
    code = "bad_upstream_response"


class UpstreamUnavailableError(HavenError):
    """No healthy upstream serves the model right now, or it did not answer in time (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    code = "upstream_unavailable"
