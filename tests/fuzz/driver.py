"""Drive schemathesis over a bundled Matrix OpenAPI document against a running server.

One call, :func:`fuzz`, walks every operation of the document: for each, hypothesis draws
``examples`` requests (schema-valid ones and, with ``negative``, deliberately invalid ones),
most of them with the path's ids replaced by real ids of a fixture world (so handlers get
past "no such room" and reach their logic), sends them and runs the two checks the issue
asks for: ``not_a_server_error`` (no 5xx, ever) and ``response_schema_conformance`` (the
answer matches what the spec says that status returns). Failures are collected, not
raised, so one run reports every operation that misbehaves; the caller asserts none.

Who sends: :class:`World` supplies headers and path ids per operation; the client API's
world (``tests/fuzz/client_world.py``) uses a fixture user for ordinary operations and a
fresh throwaway user for destructive ones; the federation world signs requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance


def server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, except a 5xx other than 500 that the spec documents for this
    operation (a remote server's failure, e.g. 502/504 on media downloads, "where the spec
    allows" in issue 18). A 500 is always a failure: it is what an unexpected exception gives."""
    status = response.status_code
    if status != 500 and str(status) in case.operation.definition.raw.get("responses", {}):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = {"not_a_server_error": server_error, "response_schema_conformance": response_schema_conformance}
REQUEST_TIMEOUT = 30.0


class World(Protocol):
    def path_ids(self, operation: str) -> dict[str, str]:
        """Real ids for an operation's path parameters (those it knows)."""

    def prepare(self, operation: str, case: Any) -> dict[str, Any]:
        """Adjust ``case`` in place (e.g. a throwaway user's ids) and return what to add to the
        request: ``headers`` and/or a requests ``auth`` hook (which sees the final request)."""


@attrs.frozen
class Failure:
    operation: str
    check: str
    status: int | None
    request: str
    detail: str

    def __str__(self) -> str:
        return f"{self.operation} [{self.check}] {self.status}: {self.detail[:400]}\n    request: {self.request[:400]}"


def label(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def _describe(case: Any) -> str:
    body = case.body if not isinstance(case.body, bytes | bytearray) else f"<{len(case.body)} bytes>"
    try:
        body_text = json.dumps(body, default=str)[:300]
    except (TypeError, ValueError):
        body_text = repr(body)[:300]
    return f"{case.method} {case.formatted_path} query={case.query!r} body={body_text}"


def fuzz(
    document: dict[str, Any],
    base_url: str,
    world: World,
    *,
    examples: int,
    derandomize: bool,
    excluded: dict[str, set[str]],
    skip: Callable[[str], bool] = lambda _op: False,
    negative: bool = True,
    progress: Callable[[str], None] = lambda _line: None,
) -> tuple[list[Failure], int]:
    """Fuzz every operation of ``document``; returns the failures and the number of requests.
    ``excluded`` maps an operation label to the checks not run for it (spec errors, each
    explained where the table is defined)."""
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    failures: dict[tuple[str, str, int | None], Failure] = {}
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        name = label(operation.method, operation.path)
        if skip(name):
            continue
        count = _fuzz_operation(
            operation, name, base_url, world, session, failures,
            checks={c: fn for c, fn in CHECKS.items() if c not in excluded.get(name, set())},
            examples=examples, derandomize=derandomize, negative=negative,
        )
        sent += count
        progress(f"{name}: {count} requests")
    return list(failures.values()), sent


def _fuzz_operation(
    operation: Any, name: str, base_url: str, world: World, session: requests.Session,
    failures: dict[tuple[str, str, int | None], Failure], *, checks: dict[str, Any],
    examples: int, derandomize: bool, negative: bool,
) -> int:
    ids = {k: v for k, v in world.path_ids(name).items() if k in {p.name for p in operation.path_parameters}}
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negative else [])
    strategies = []
    for mode in modes:
        strategies.append(operation.as_strategy(generation_mode=mode))
        if ids:  # three in four requests name real ids, so handlers reach their logic
            strategies += [operation.as_strategy(generation_mode=mode, path_parameters=ids)] * 3
    count = 0

    @settings(
        max_examples=examples, deadline=None, derandomize=derandomize, database=None,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
    )
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        nonlocal count
        count += 1
        extra = world.prepare(name, case)
        headers = extra.get("headers", {})
        request = _describe(case)
        try:
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT,
                **({"auth": extra["auth"]} if "auth" in extra else {}),
            )
        except requests.RequestException as e:
            failures.setdefault((name, "answer", None), Failure(name, "answer", None, request, repr(e)))
            return
        for check, fn in checks.items():
            try:
                case.validate_response(response, checks=[fn], headers=headers)
            except (Exception, BaseExceptionGroup) as e:  # schemathesis raises failures and groups of them
                failures.setdefault((name, check, response.status_code), Failure(
                    name, check, response.status_code, request,
                    f"{_first_line(e)} | body: {response.text[:300]}",
                ))

    run()
    return count


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return " ".join(text.split("\n")[:6])[:500]


def flatten(failures: Iterable[Failure]) -> str:
    return "\n".join(str(f) for f in sorted(failures, key=lambda f: (f.operation, f.check)))
