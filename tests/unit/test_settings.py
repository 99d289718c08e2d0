"""Settings: one prefix per service, the shared DATABASE_URL as fallback, no default for secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.eligibility.settings import EligibilitySettings
from services.registry.settings import RegistrySettings


def test_prefixed_url_wins_over_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared@db/x")
    monkeypatch.setenv("REGISTRY_DATABASE_URL", "postgres://own@db/y")
    monkeypatch.setenv("REGISTRY_PORT", "9001")
    monkeypatch.delenv("ELIGIBILITY_PORT", raising=False)  # `make run` users may have set it
    monkeypatch.delenv("ELIGIBILITY_DATABASE_URL", raising=False)
    settings = RegistrySettings()
    assert settings.async_database_url == "postgresql+asyncpg://own@db/y"
    assert settings.port == 9001
    assert EligibilitySettings().async_database_url == "postgresql+asyncpg://shared@db/x"
    assert EligibilitySettings().port == 8002


def test_no_database_url_means_no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REGISTRY_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError):
        RegistrySettings()


def test_bulk_reads_go_to_the_replica_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://primary@db/x")
    monkeypatch.delenv("REGISTRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("REGISTRY_READ_DATABASE_URL", raising=False)
    assert RegistrySettings().async_read_database_url == "postgresql+asyncpg://primary@db/x"
    monkeypatch.setenv("REGISTRY_READ_DATABASE_URL", "postgres://replica@db-ro/x")
    assert RegistrySettings().async_read_database_url == "postgresql+asyncpg://replica@db-ro/x"
    assert RegistrySettings().async_database_url == "postgresql+asyncpg://primary@db/x"


def test_the_registry_issues_no_token_the_services_would_refuse() -> None:
    """Tokens living longer than the verifiers accept (AUTH_MAX_TOKEN_LIFETIME_SECONDS, issue #12) are never issued."""
    with pytest.raises(ValidationError, match="AUTH_MAX_TOKEN_LIFETIME_SECONDS"):
        RegistrySettings(
            database_url="postgresql://db/x",  # type: ignore[arg-type]
            token_lifetime_seconds=3600,
            auth_max_token_lifetime_seconds=600,
        )
    assert RegistrySettings(database_url="postgresql://db/x").auth_max_token_lifetime_seconds == 3600  # type: ignore[arg-type]
