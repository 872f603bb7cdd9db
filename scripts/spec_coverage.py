"""Which operations of the Matrix client-server API v1.19 a running homeserver does not serve.

    scripts/spec-coverage http://127.0.0.1:8008 [--json]

The operations (method and path) are in spec_coverage_v1.19.json beside this file,
extracted from the matrix-spec repository's data/api/client-server at tag v1.19 (see
--extract). The probe registers a throwaway user (m.login.dummy; or give --token), then
sends each operation once, with the path's parameters filled with ids on the server
itself (so nothing goes over federation) and an empty JSON object as body. An operation is
served unless the answer is the server's "unknown endpoint": 404/405 with errcode
M_UNRECOGNIZED, or a 404/405 that is not a Matrix error at all. A 404 M_NOT_FOUND (no such
room) means the endpoint is there. Logout runs last, so the token works throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
DATA = HERE / "spec_coverage_v1.19.json"
LAST = ("/_matrix/client/v3/logout", "/_matrix/client/v3/logout/all")


def fill(path: str, server: str, user_id: str) -> str:
    values = {
        "roomId": f"!specprobe:{server}", "roomIdOrAlias": f"!specprobe:{server}",
        "roomAlias": f"#specprobe:{server}", "userId": user_id, "eventId": "$specprobe",
        "serverName": server, "mediaId": "specprobe", "deviceId": "SPECPROBE",
        "txnId": secrets.token_hex(4), "filterId": "0", "type": "m.specprobe",
        "eventType": "m.specprobe", "stateKey": "", "tag": "m.specprobe", "version": "1",
        "sessionId": "specprobe", "kind": "override", "ruleId": "specprobe", "protocol": "specprobe",
        "loginType": "m.login.sso", "idpId": "specprobe", "relType": "m.annotation", "keyId": "specprobe",
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "threadId": "$specprobe",
        "receiptType": "m.read", "field": "displayname", "keyName": "displayname",
        "fileName": "specprobe", "eventIdOrThreadId": "$specprobe",
    }
    out = path
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        name = out[start + 1:end]
        out = out[:start] + _quote(values.get(name, "specprobe")) + out[end + 1:]
    return out


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def unserved(status: int, body: Any) -> bool:
    if status not in (404, 405):
        return False
    if not isinstance(body, dict) or "errcode" not in body:
        return True
    return body["errcode"] == "M_UNRECOGNIZED"


async def register(s: aiohttp.ClientSession, base: str) -> str:
    body: dict[str, Any] = {"username": f"specprobe{secrets.token_hex(4)}", "password": secrets.token_hex(12)}
    for _ in range(2):
        async with s.post(f"{base}/_matrix/client/v3/register", json=body) as r:
            got = await r.json(content_type=None)
            if r.status == 200:
                return got["access_token"]
            if r.status == 401 and "session" in got:
                body["auth"] = {"type": "m.login.dummy", "session": got["session"]}
                continue
            raise SystemExit(f"cannot register a probe user: {r.status} {got}")
    raise SystemExit("cannot register a probe user")


async def probe(base: str, token: str | None) -> list[dict[str, Any]]:
    ops = json.loads(DATA.read_text())["operations"]
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        token = token or await register(s, base)
        headers = {"Authorization": f"Bearer {token}"}
        async with s.get(f"{base}/_matrix/client/v3/account/whoami", headers=headers) as r:
            user_id = (await r.json())["user_id"]
        server = user_id.split(":", 1)[1]
        missing = []
        ordered = sorted(ops, key=lambda o: o["path"] in LAST)
        for op in ordered:
            url = base + fill(op["path"].strip(), server, user_id)
            kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
            if op["method"] in ("PUT", "POST"):
                kwargs["json"] = {}
            if op["path"].strip().endswith(("/events", "/sync")):
                kwargs["params"] = {"timeout": "0"}  # long polls answer at once
            try:
                async with s.request(op["method"], url, **kwargs) as r:
                    try:
                        body = await r.json(content_type=None)
                    except ValueError:
                        body = None
                    if unserved(r.status, body):
                        missing.append({**op, "status": r.status})
            except (aiohttp.ClientError, TimeoutError) as e:
                missing.append({**op, "status": f"error: {e}"})
        return missing


def extract(repo: str, ref: str) -> None:
    """Rebuild the data file from a matrix-spec checkout (bare is fine)."""
    import yaml

    names = subprocess.run(
        ["git", "-C", repo, "ls-tree", "-r", "--name-only", ref, "data/api/client-server"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    ops = []
    for name in names:
        if not name.endswith(".yaml") or "/definitions/" in name or "/examples/" in name:
            continue
        doc = yaml.safe_load(subprocess.run(
            ["git", "-C", repo, "show", f"{ref}:{name}"], capture_output=True, text=True, check=True,
        ).stdout)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        base = ""
        for srv in doc.get("servers", []):
            base = srv.get("variables", {}).get("basePath", {}).get("default", "")
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method in ("get", "put", "post", "delete", "head", "patch"):
                    ops.append({
                        "method": method.upper(), "path": base + path, "operation_id": op.get("operationId"),
                        "file": name.rsplit("/", 1)[-1], "deprecated": bool(op.get("deprecated")),
                    })
    ops.sort(key=lambda o: (o["path"], o["method"]))
    data = {"spec": "Matrix client-server API v1.19", "source": f"matrix-org/matrix-spec {ref} data/api/client-server",
            "operations": ops}
    DATA.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(ops)} operations written to {DATA}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_url", nargs="?", help="the homeserver's client API base, e.g. http://127.0.0.1:8008")
    ap.add_argument("--token", help="an access token to use instead of registering a probe user")
    ap.add_argument("--json", action="store_true", help="print the unserved operations as JSON")
    ap.add_argument("--extract", metavar="SPEC_REPO", help="rebuild the data file from a matrix-spec repository")
    ap.add_argument("--ref", default="v1.19")
    args = ap.parse_args()
    if args.extract:
        extract(args.extract, args.ref)
        return
    if not args.base_url:
        ap.error("base_url is required")
    missing = asyncio.run(probe(args.base_url.rstrip("/"), args.token))
    total = len(json.loads(DATA.read_text())["operations"])
    if args.json:
        json.dump({"total": total, "unserved": missing}, sys.stdout, indent=1)
        print()
        return
    for op in missing:
        print(f"{op['method']:6} {op['path']}  ({op['operation_id']}, {op['status']})")
    print(f"{len(missing)} of {total} client-server operations not served")


if __name__ == "__main__":
    main()
