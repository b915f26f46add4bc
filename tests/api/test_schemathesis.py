"""The service against its own OpenAPI document (schemathesis): every
operation, a few generated requests each, authenticated, with every
response check: no 5xx, documented status codes, content types, headers
and bodies that match the schema.

The server is a throwaway (its own pin and state directories). Every
interface name is replaced with one that does not exist, so nothing is
ever attached to a real interface (attach, detach, probe, stats: 404).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api_helpers import Running

NO_SUCH_IFACE = "xdpst-none0"


@pytest.fixture(scope="module")
def st_server(start_server) -> Running:
    return start_server(restore_on_start=True, expire_interval=0)


def _no_real_interfaces(case) -> None:
    for part in (case.body, case.query):
        if isinstance(part, dict) and "ifname" in part:
            part["ifname"] = NO_SUCH_IFACE
            part.pop("netns", None)


def test_api_conforms_to_its_schema(st_server: Running) -> None:
    auth = {"Authorization": f"Bearer {st_server.token}"}
    schema = schemathesis.openapi.from_url(st_server.url + "/openapi.json", headers=auth)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(op.as_strategy())
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            _no_real_interfaces(case)
            case.call_and_validate(base_url=st_server.url, headers=auth, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except BaseException as exc:  # noqa: B036 every operation is tried; all failures are reported
            if not isinstance(exc, Exception) and not hasattr(exc, "exceptions"):
                raise
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
