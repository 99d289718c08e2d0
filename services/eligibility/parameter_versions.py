"""Policy administration: a future-dated version of a parameter, on top of the parameter file.

The versions in effect are read with the file by `service.current_parameters`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.errors import ProblemError

from . import events
from .errors import PARAMETER_INVALID, PARAMETER_NOT_FOUND, PARAMETER_NOT_FUTURE
from .models import ParameterVersion
from .parameters import SPECS, ParameterFileError, ParameterSet, parse_value
from .schemas import ParameterVersionCreate
from .service import Policy, current_parameters, request_id


async def add_parameter_version(
    session: AsyncSession, policy: Policy, parameter_id: str, payload: ParameterVersionCreate, principal: Principal
) -> ParameterSet:
    if parameter_id not in SPECS:
        raise ProblemError(PARAMETER_NOT_FOUND, id=parameter_id)
    if payload.effective_from <= policy.today():
        raise ProblemError(PARAMETER_NOT_FUTURE, today=policy.today().isoformat())
    raw = {
        "effective_from": payload.effective_from,
        "value": payload.value,
        "status": payload.status,
        "source": payload.source,
    }
    try:
        value = parse_value(f"new version of {parameter_id}", parameter_id, raw, origin="version:new")
        current = await current_parameters(session, policy.parameters)
        current.with_versions([(parameter_id, value)])
    except ParameterFileError as exc:
        raise ProblemError(PARAMETER_INVALID, problem=str(exc)) from exc
    session.add(
        ParameterVersion(
            parameter_id=parameter_id,
            effective_from=payload.effective_from,
            value=payload.value,
            status=payload.status,
            source=payload.source,
            reason=payload.reason,
            created_by=principal.actor,
            request_id=request_id(),
            client_id=principal.client_id,
        )
    )
    await session.flush()
    await events.parameter_versioned(
        session,
        parameter_id,
        {"parameter_id": parameter_id, **raw, "reason": payload.reason, "created_by": principal.actor},
    )
    return await current_parameters(session, policy.parameters)
