"""Push rules, notifications and pushers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications
"""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from client_api.http import cs, json_body, parse_body, parse_query, requester, services
from homeserver.core.errors import MatrixError
from homeserver.http.responses import ok

routes = web.RouteTableDef()


@attrs.frozen
class RuleQuery:
    """PUT /pushrules/global/{kind}/{ruleId}?before=&after="""

    before: str | None = None
    after: str | None = None


@attrs.frozen
class EnabledBody:
    enabled: bool


@attrs.frozen
class ActionsBody:
    actions: list[Any]


@attrs.frozen
class NotificationsQuery:
    """GET /notifications (spec "Listing Notifications")."""

    from_: str | None = None
    limit: int = 20
    only: str | None = None


@attrs.frozen
class PusherBody:
    """POST /pushers/set; `kind: null` deletes, so the other fields are checked by the
    service once it knows the kind."""

    app_id: str
    pushkey: str
    kind: str | None
    app_display_name: str | None = None
    device_display_name: str | None = None
    profile_tag: str | None = None
    lang: str | None = None
    data: dict[str, Any] | None = None
    append: bool = False
RULE = "/pushrules/{scope}/{kind}/{rule_id}"
ATTRIBUTES = ("enabled", "actions")


def _scope(request: web.Request) -> None:
    if request.match_info["scope"] != "global":
        raise MatrixError(400, "M_INVALID_PARAM", "The only push rule scope is 'global'")


@routes.get(cs("/pushrules"))
async def get_all(request: web.Request) -> web.Response:
    """GET /pushrules/"""
    req = await requester(request)
    return ok({"global": await services(request).push_rules.ruleset(req.user_id)})


@routes.get(cs("/pushrules/{scope}"))
async def get_scope(request: web.Request) -> web.Response:
    """GET /pushrules/global/"""
    req = await requester(request)
    _scope(request)
    return ok(await services(request).push_rules.ruleset(req.user_id))


@routes.get(cs(RULE))
async def get_rule(request: web.Request) -> web.Response:
    """GET /pushrules/global/{kind}/{ruleId}"""
    req = await requester(request)
    _scope(request)
    m = request.match_info
    return ok(await services(request).push_rules.get(req.user_id, m["kind"], m["rule_id"]))


@routes.put(cs(RULE))
async def put_rule(request: web.Request) -> web.Response:
    """PUT /pushrules/global/{kind}/{ruleId}?before=&after= {actions, conditions?, pattern?}"""
    req = await requester(request)
    _scope(request)
    m = request.match_info
    query = parse_query(request, RuleQuery)
    # The rule's shape depends on its kind: core.push_rules.put_rule checks it.
    body = await json_body(request)
    await services(request).push_rules.put(req.user_id, m["kind"], m["rule_id"], body, query.before, query.after)
    return ok()


@routes.delete(cs(RULE))
async def delete_rule(request: web.Request) -> web.Response:
    """DELETE /pushrules/global/{kind}/{ruleId}"""
    req = await requester(request)
    _scope(request)
    m = request.match_info
    await services(request).push_rules.delete(req.user_id, m["kind"], m["rule_id"])
    return ok()


def _attribute(request: web.Request) -> str:
    attr = request.match_info["attr"]
    if attr not in ATTRIBUTES:
        raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown push rule attribute {attr!r}")
    return attr


@routes.get(cs(RULE + "/{attr}"))
async def get_attribute(request: web.Request) -> web.Response:
    """GET /pushrules/global/{kind}/{ruleId}/enabled|actions"""
    req = await requester(request)
    _scope(request)
    attr = _attribute(request)
    m = request.match_info
    rule = await services(request).push_rules.get(req.user_id, m["kind"], m["rule_id"])
    return ok({attr: rule[attr]})


@routes.put(cs(RULE + "/{attr}"))
async def put_attribute(request: web.Request) -> web.Response:
    """PUT /pushrules/global/{kind}/{ruleId}/enabled {enabled} | /actions {actions}"""
    req = await requester(request)
    _scope(request)
    attr = _attribute(request)
    m = request.match_info
    body = await parse_body(request, EnabledBody if attr == "enabled" else ActionsBody)
    value = getattr(body, attr)
    await services(request).push_rules.set_attribute(req.user_id, m["kind"], m["rule_id"], attr, value)
    return ok()


@routes.get(cs("/notifications"))
async def notifications(request: web.Request) -> web.Response:
    """GET /notifications?from=&limit=&only=highlight"""
    req = await requester(request)
    query = parse_query(request, NotificationsQuery)
    return ok(await services(request).notifications.page(
        req, query.from_, min(max(query.limit, 1), 100), query.only,
    ))


@routes.get(cs("/pushers"))
async def get_pushers(request: web.Request) -> web.Response:
    """GET /pushers"""
    req = await requester(request)
    return ok({"pushers": await services(request).pushers.list(req.user_id)})


@routes.post(cs("/pushers/set"))
async def set_pusher(request: web.Request) -> web.Response:
    """POST /pushers/set"""
    req = await requester(request)
    body = await parse_body(request, PusherBody)
    await services(request).pushers.set(req.user_id, attrs.asdict(body))
    return ok()
