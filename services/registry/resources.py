"""The kinds of record the registry keeps, each described once as a `Resource`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, or_

from shared.identifiers import CreditCode, filing_number_warnings

from . import schemas
from .kinds import Filter, Reference, Resource, snapshot_contains
from .models import Affiliation, Base, Filing, Model, Organisation, Recognition, Revenue, Vendor


def _organisation_ref(field: str = "credit_code") -> Reference:
    return Reference(field, Organisation, "credit_code", "organisation", "组织")


def _involving(table: type[Base], value: Any) -> ColumnElement[bool]:
    return or_(Affiliation.credit_code_a == value, Affiliation.credit_code_b == value)


def _involving_snapshot(data: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return or_(snapshot_contains(data, {"credit_code_a": value}), snapshot_contains(data, {"credit_code_b": value}))


def _filing_state(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Status defaults by kind; format warnings are computed, never taken from the client."""
    result = dict(data)
    kind = result.get("kind")
    if result.get("status") is None and kind in ("filing", "registration"):
        result["status"] = "filed" if kind == "filing" else "registered"
    number = result.get("number")
    if isinstance(number, str) and isinstance(kind, str):
        result["warnings"] = filing_number_warnings(number, kind)
    return result


def _recognition_columns(state: BaseModel) -> dict[str, Any]:
    data = state.model_dump(mode="python")
    data["kind"] = data["details"]["kind"]
    data["details"] = state.model_dump(mode="json")["details"]
    return data


ORGANISATIONS = Resource(
    entity="organisation",
    entity_zh="组织",
    plural="organisations",
    table=Organisation,
    state=schemas.OrganisationState,
    create=schemas.OrganisationCreate,
    update=schemas.OrganisationUpdate,
    read=schemas.OrganisationRead,
    key=("credit_code",),
    filters=(
        Filter("kind", str, "enterprise / university / research_institute"),
        Filter("registered_district", str, "6-digit division code, e.g. 440307 (Longgang)"),
        Filter("four_above_category", str, "四上 category"),
        Filter("is_software_internet", bool, "software / internet enterprises only"),
    ),
    natural_date=lambda state: state.registered_on,
    description="Enterprises, universities and research institutes, by Unified Social Credit Code.",
)

REVENUES = Resource(
    entity="revenue",
    entity_zh="年度营收",
    plural="revenues",
    table=Revenue,
    state=schemas.RevenueState,
    create=schemas.RevenueCreate,
    update=schemas.RevenueUpdate,
    read=schemas.RevenueRead,
    key=("credit_code", "year"),
    filters=(Filter("credit_code", CreditCode, "organisation"), Filter("year", schemas.Year, "calendar year")),
    references=(_organisation_ref(),),
    # a year's revenue is a fact once the year is over
    natural_date=lambda state: date(state.year + 1, 1, 1),
    description="Audited annual revenue by organisation and year (M1 classes, M9, M11).",
)

AFFILIATIONS = Resource(
    entity="affiliation",
    entity_zh="关联关系",
    plural="affiliations",
    table=Affiliation,
    state=schemas.AffiliationState,
    create=schemas.AffiliationCreate,
    update=schemas.AffiliationUpdate,
    read=schemas.AffiliationRead,
    key=("id",),
    natural_key=("credit_code_a", "credit_code_b"),
    row_keys={"id": "uid"},
    filters=(
        Filter("organisation", CreditCode, "affiliations involving this credit code", _involving, _involving_snapshot),
        Filter("active", bool, "active (true) or ended (false)"),
    ),
    references=(_organisation_ref("credit_code_a"), _organisation_ref("credit_code_b")),
    description="关联方 between two organisations (M1 excludes compute bought from an affiliate).",
)

VENDORS = Resource(
    entity="vendor",
    entity_zh="供应商",
    plural="vendors",
    table=Vendor,
    state=schemas.VendorState,
    create=schemas.VendorCreate,
    update=schemas.VendorUpdate,
    read=schemas.VendorRead,
    key=("credit_code",),
    filters=(
        Filter("is_compute_vendor", bool, "compute vendors (M1)"),
        Filter("is_model_vendor", bool, "model vendors (M3)"),
        Filter("district_compute", bool, "本区算力"),
        Filter("domestic_compute", bool, "国产算力"),
        Filter("active", bool, "active vendors"),
    ),
    references=(_organisation_ref(),),
    description="Organisations acting as compute and/or model vendors.",
)

MODELS = Resource(
    entity="model",
    entity_zh="模型",
    plural="models",
    table=Model,
    state=schemas.ModelState,
    create=schemas.ModelCreate,
    update=schemas.ModelUpdate,
    read=schemas.ModelRead,
    key=("id",),
    natural_key=("vendor_credit_code", "name"),
    row_keys={"id": "uid"},
    filters=(Filter("vendor_credit_code", CreditCode, "models of this vendor"),),
    references=(Reference("vendor_credit_code", Vendor, "credit_code", "vendor", "供应商"),),
    natural_date=lambda state: state.national_filing_date,
    description="Large models of model vendors (M2(b) national filing date and rank).",
)

FILINGS = Resource(
    entity="filing",
    entity_zh="备案",
    plural="filings",
    table=Filing,
    state=schemas.FilingState,
    create=schemas.FilingCreate,
    update=schemas.FilingUpdate,
    read=schemas.FilingRead,
    key=("number",),
    filters=(
        Filter("model_id", uuid.UUID, "filings of this model"),
        Filter("status", str, "filed / registered / revoked"),
        Filter("kind", str, "filing / registration"),
    ),
    references=(Reference("model_id", Model, "uid", "model", "模型"),),
    natural_date=lambda state: state.filed_on,
    to_state=_filing_state,
    description="CAC generative-AI service filings and registrations, with status history (M3).",
)

RECOGNITIONS = Resource(
    entity="recognition",
    entity_zh="认定",
    plural="recognitions",
    table=Recognition,
    state=schemas.RecognitionState,
    create=schemas.RecognitionCreate,
    update=schemas.RecognitionUpdate,
    read=schemas.RecognitionRead,
    key=("id",),
    row_keys={"id": "uid"},
    filters=(
        Filter("credit_code", CreditCode, "recognitions of this organisation"),
        Filter(
            "kind",
            str,
            "key_software_enterprise / first_version_software / digital_product / demonstration_project / "
            "public_platform / ai_standard / major_ai_project / ai_enterprise / industrial_enterprise / "
            "digital_diagnosis / city_first_version_support / major_event",
            on_snapshot=lambda data, value: snapshot_contains(data, {"details": {"kind": value}}),
        ),
        Filter("active", bool, "active (true) or withdrawn (false)"),
    ),
    references=(_organisation_ref(),),
    natural_date=lambda state: state.recognised_on,
    columns=_recognition_columns,
    read_extra=lambda data: {"clause": schemas.RECOGNITION_CLAUSES[data["details"]["kind"]]},
    description="Catalogue entries and recognitions: M1 major projects, AI enterprises (M1, M9, M11), "
    "industrial enterprises and the city's diagnoses (M6), M4, M5, M7, M8, M10, M12.",
)

ALL = (ORGANISATIONS, REVENUES, AFFILIATIONS, VENDORS, MODELS, FILINGS, RECOGNITIONS)
