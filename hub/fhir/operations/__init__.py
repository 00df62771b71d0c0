"""FHIR operations ($name), one module each; their routes come before the generic ones."""

from __future__ import annotations

from fastapi import APIRouter

from hub.fhir.operations import (
    everything,
    export,
    feedback,
    patient_index,
    recognize,
    referral,
    routing,
)

router = APIRouter(prefix="/fhir")
router.include_router(patient_index.router)
router.include_router(everything.router)
router.include_router(recognize.router)
router.include_router(feedback.router)
router.include_router(export.router)
router.include_router(referral.router)
router.include_router(routing.router)
