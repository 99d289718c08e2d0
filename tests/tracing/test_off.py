"""Tracing is off unless the OTEL_* variables ask for it, and off it installs nothing (issue #15).

Off, the redemption path must run the code it runs without OpenTelemetry: no SDK imported, no middleware,
asyncpg and the peer clients not wrapped. Each app is made in a fresh interpreter (this test process has
the SDK imported by tests/tracing/test_trace.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from shared.tracing import TracingConfigError, exporter_name

#: Made in a child process: each service's app, then what OpenTelemetry did to the process and to the apps.
PROBE = textwrap.dedent(
    """
    import json, sys
    import asyncpg
    from services.eligibility.app import create_app as eligibility
    from services.eligibility.settings import EligibilitySettings
    from services.registry.app import create_app as registry
    from services.registry.settings import RegistrySettings
    from services.vouchers.app import create_app as vouchers
    from services.vouchers.settings import VouchersSettings

    url = "postgresql://nobody@127.0.0.1:1/nothing"
    apps = {
        "registry": registry(RegistrySettings(database_url=url)),
        "eligibility": eligibility(EligibilitySettings(database_url=url)),
        "vouchers": vouchers(VouchersSettings(database_url=url)),
    }

    def stack(app):
        names, layer = [], app.build_middleware_stack()
        while layer is not None:
            names.append(type(layer).__module__ + "." + type(layer).__name__)
            layer = getattr(layer, "app", None)
        return names

    sdk = ("opentelemetry.sdk", "opentelemetry.instrumentation")
    transport = apps["vouchers"].state.eligibility.client.client._transport
    print(json.dumps({
        "sdk_imported": sorted(m for m in sys.modules if m.startswith(sdk)),
        "asyncpg_wrapped": hasattr(asyncpg.Connection.fetchrow, "__wrapped__"),
        "apps": {
            name: {
                "instrumented": getattr(app, "_is_instrumented_by_opentelemetry", False),
                "provider": app.state.tracer_provider is not None,
                "middleware": [m for m in stack(app) if "opentelemetry" in m],
                "user_middleware": [str(m) for m in app.user_middleware if "opentelemetry" in str(m).lower()],
            }
            for name, app in apps.items()
        },
        "peer_client_wrapped": hasattr(transport.handle_async_request, "__wrapped__"),
    }))
    """
)


def probe(**otel: str) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(otel)
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_off_by_default_nothing_is_imported_or_installed() -> None:
    found = probe()
    assert found["sdk_imported"] == []
    assert found["asyncpg_wrapped"] is False
    assert found["peer_client_wrapped"] is False
    apps = found["apps"]
    assert isinstance(apps, dict)
    for name, app in apps.items():
        assert app == {"instrumented": False, "provider": False, "middleware": [], "user_middleware": []}, name


def test_on_with_an_exporter_every_app_is_instrumented() -> None:
    """The same probe with OTEL_TRACES_EXPORTER=console: the off test above would see it."""
    found = probe(OTEL_TRACES_EXPORTER="console")
    assert "opentelemetry.sdk.trace" in found["sdk_imported"]  # type: ignore[operator]
    assert found["asyncpg_wrapped"] is True
    assert found["peer_client_wrapped"] is True
    apps = found["apps"]
    assert isinstance(apps, dict)
    for name, app in apps.items():
        assert app["instrumented"] is True, name
        assert app["provider"] is True, name
        assert any("OpenTelemetryMiddleware" in m for m in app["middleware"]), name


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "vouchers"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, None),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
    ],
)
def test_which_variables_turn_it_on(environ: dict[str, str], expected: str | None) -> None:
    assert exporter_name(environ) == expected


def test_an_exporter_it_does_not_have_is_refused_by_name() -> None:
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_EXPORTER=zipkin"):
        exporter_name({"OTEL_TRACES_EXPORTER": "zipkin"})
