"""The one family of errors the FHIR core raises; each carries its HTTP status and outcome.

Nothing in the hub raises a bare HTTP exception on a FHIR route: the API's single handler turns
any ``FhirError`` into an OperationOutcome response, and transactions turn it into the failing
entry's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    """One OperationOutcome.issue."""

    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue-type code: invalid, structure, required, value, not-found, ...
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def info_outcome(message: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", message)])


class FhirError(Exception):
    """An error with a FHIR issue code and an HTTP status."""

    status = 400
    code = "processing"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        issues: list[Issue] | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.issues = issues or [Issue("error", self.code, diagnostics, expression or [])]

    @property
    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    code = "invalid"


class InvalidSearch(FhirError):
    """An unknown or malformed search parameter (400, or ignored under handling=lenient)."""

    status = 400
    code = "not-supported"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    """Stale If-Match, or a conditional interaction that matched more than one resource."""

    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    """A well-formed body that is not a valid resource (validation failures)."""

    status = 422
    code = "processing"
