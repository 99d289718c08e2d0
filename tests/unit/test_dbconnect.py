"""shared/dbconnect.py without a PgBouncer (issue #15; tests/pooler/ runs the real one)."""

from __future__ import annotations

import pytest

from shared.dbconnect import PoolerRefused, TransactionPooled, connect_options, declare, pooler_of, timeouts
from shared.dbroles import role_defaults

URL = "postgresql+asyncpg://vouchers_app@db.example:6432/longgang"


def test_direct_connections_carry_their_settings_as_startup_parameters() -> None:
    options = connect_options("postgresql://direct@db.example/longgang", "app", role="r", settings=timeouts(1500))
    assert options == {
        "server_settings": {
            "application_name": "app",
            "statement_timeout": "1500",
            "idle_in_transaction_session_timeout": "3000",
            "role": "r",
        }
    }


@pytest.mark.parametrize("pooler", ["session", "transaction"])
def test_behind_a_pooler_only_what_pgbouncer_tracks_is_sent(pooler: str) -> None:
    declare(URL, pooler)  # type: ignore[arg-type]
    assert pooler_of(URL.replace("+asyncpg", "")) == pooler  # the same endpoint, either spelling
    options = connect_options(URL, "app", settings={**timeouts(30_000), "TimeZone": "UTC"})
    assert options["server_settings"] == {"application_name": "app", "TimeZone": "UTC"}
    if pooler == "transaction":
        assert options["statement_cache_size"] == 0
        assert options["connection_class"] is TransactionPooled
    else:
        assert "statement_cache_size" not in options
    with pytest.raises(PoolerRefused, match="role"):
        connect_options(URL, "app", role="vouchers_writer")


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(PoolerRefused):
        declare(URL, "statement")  # type: ignore[arg-type]


def test_the_logins_defaults_follow_the_services_timeout() -> None:
    assert role_defaults("vouchers", {}) == {
        "statement_timeout": "30000ms",
        "idle_in_transaction_session_timeout": "60000ms",
    }
    assert role_defaults("registry", {"REGISTRY_DB_STATEMENT_TIMEOUT_MS": "5000"})["statement_timeout"] == "5000ms"
