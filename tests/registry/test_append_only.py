"""The registry's history is append-only, enforced by PostgreSQL itself."""

from __future__ import annotations

import asyncpg
import pytest

from services.registry.schemas import OrganisationState
from tests.factories import organisation_payload


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE registry.versions SET data = '{}'::jsonb",
        "DELETE FROM registry.versions",
        "TRUNCATE registry.versions",
    ],
)
async def test_history_cannot_be_rewritten(database_url: str, statement: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            state = OrganisationState.model_validate(organisation_payload())
            await connection.execute(
                "INSERT INTO registry.versions (entity, entity_id, version, valid_from, data) "
                "VALUES ('organisation', -1, 1, current_date, $1::jsonb)",
                state.model_dump_json(),
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await connection.execute(statement)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await connection.close()


class _Rollback(Exception):
    pass
