"""The ``tracing:`` section of the config: where OpenTelemetry spans go (OTLP/HTTP).

Tracing is off unless a traces endpoint is known. The endpoint comes from this config
first; when the config leaves it unset, from the standard environment variables
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) or ``OTEL_EXPORTER_OTLP_ENDPOINT``
(``/v1/traces`` appended), so a collector injected by the platform is picked up.
``OTEL_SDK_DISABLED=true`` turns tracing off whatever is configured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
BASE_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SDK_DISABLED_ENV = "OTEL_SDK_DISABLED"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TracingConfig(_Strict):
    endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces; "
        "unset: the OTEL_EXPORTER_OTLP_* environment variables, else tracing is off.",
    )
    # Sent with every export, e.g. the collector's auth; secret, so never printed.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    service_name: str = Field("modelway", min_length=1)
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of new traces kept; a caller's sampled flag wins."
    )
    export_timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    def resolved_endpoint(self, environ: Mapping[str, str]) -> str | None:
        """The traces URL to export to, or None when tracing is off."""
        if environ.get(SDK_DISABLED_ENV, "").strip().lower() == "true":
            return None
        if self.endpoint is not None:
            return self.endpoint
        if environ.get(TRACES_ENDPOINT_ENV):
            return environ[TRACES_ENDPOINT_ENV]
        if environ.get(BASE_ENDPOINT_ENV):
            return environ[BASE_ENDPOINT_ENV].rstrip("/") + "/v1/traces"
        return None

    def export_headers(self) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in self.headers.items()}
