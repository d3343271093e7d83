#!/usr/bin/env python3
"""Akhrot's MCP server driven by a client no one here wrote: the official MCP Python SDK.

Starts a real `akhrot serve` (run under scripts/with-keyring, as scripts/test does), then talks
to it as MCP clients do: over stdio through `akhrot mcp`, and over Streamable HTTP at `/mcp`.

    tests/python/setup-venv && scripts/with-keyring target/pyenv/bin/python tests/python/test_mcp.py

Set AKHROT_BIN to test another binary (default: target/debug/akhrot).
"""

import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[2]
AKHROT = os.environ.get("AKHROT_BIN") or str(ROOT / "target" / "debug" / "akhrot")
OPENAI_KEY = "sk-mcp-test-4f1c2e9a7b"
STANDIN_KEY = "standin-secret-7d3e1f"


class StandIn:
    """A small local HTTP API the proxy calls, registered as a provider through providers.d.

    It answers only when the request carries the right credential, and echoes what it saw."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                seen.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if self.headers.get("Authorization") != f"Bearer {STANDIN_KEY}":
                    self._send(401, {"message": "bad credentials"})
                elif self.path.startswith("/v1/big"):
                    self._send(200, {"items": ["x" * 1000 for _ in range(300)]})
                else:
                    self._send(200, {"method": self.command, "path": self.path, "body": body, "hello": "from the stand-in"})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-RateLimit-Remaining", "41")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def provider_toml(self):
        return f"""[providers.standin]
name = "Stand-in API"
auth = "api_key"
description = "A local test API"

[[providers.standin.fields]]
name = "apiKey"
label = "API key"
token = true

[providers.standin.inject.headers]
Authorization = "Bearer {{apiKey}}"

[[providers.standin.services]]
code = "api"
name = "Stand-in API"
base_url = "http://127.0.0.1:{self.port}/v1"
"""


class Owner:
    """A real `akhrot serve` on a free port with its own directories."""

    def __init__(self, root: Path, providers_toml: str | None):
        self.data, self.config = root / "data", root / "config"
        (self.config / "providers.d").mkdir(parents=True)
        if providers_toml:
            (self.config / "providers.d" / "standin.toml").write_text(providers_toml)
        self.log = open(root / "serve.log", "w")
        self.proc = subprocess.Popen(
            [AKHROT, *self.dirs(), "serve", "--port", "0", "--approval-timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, f"akhrot serve did not start: {line!r}; see {root / 'serve.log'}"
        self.base, self.port = m.group(0), int(m.group(1))
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def dirs(self):
        return ["--data-dir", str(self.data), "--config-dir", str(self.config)]

    def cli(self, *args, input=None, check=True):
        r = subprocess.run([AKHROT, *self.dirs(), *args], input=input, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"akhrot {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def stop(self):
        if self.log.closed:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def data_of(result) -> dict:
    assert not result.is_error, f"tool error: {text_of(result)}"
    return result.structured_content if result.structured_content is not None else json.loads(text_of(result))


async def check_session(session: ClientSession, owner: Owner, standin: StandIn | None, transport: str):
    """The same checks over either transport."""
    init = await session.initialize()
    assert init.server_info.name == "akhrot", init.server_info
    tools = {t.name: t for t in (await session.list_tools()).tools}
    for name in ["list_connections", "describe", "get_token", "start_connection", "check_connection", "call_api"]:
        assert name in tools, f"{transport}: missing tool {name}: {sorted(tools)}"
    assert tools["get_token"].input_schema["required"] == ["provider"]

    summary = data_of(await session.call_tool("list_connections", {}))
    connected = {c["provider"] for c in summary["connected"]}
    assert "openai" in connected, summary
    assert "github" in summary["available"], summary

    desc = data_of(await session.call_tool("describe", {"provider": "openai"}))
    assert desc["provider"] == "openai" and desc["connected"] is True, desc

    token = data_of(await session.call_tool("get_token", {"provider": "openai", "reason": f"mcp test over {transport}"}))
    assert token["accessToken"] == OPENAI_KEY, token

    # Errors from the API are tool errors carrying the API's code and message.
    r = await session.call_tool("get_token", {"provider": "github"})
    assert r.is_error, r
    assert "INTEGRATION_NOT_FOUND" in text_of(r), text_of(r)
    assert r.structured_content["error"]["code"] == "INTEGRATION_NOT_FOUND", r.structured_content
    r = await session.call_tool("describe", {"provider": "no-such-provider"})
    assert r.is_error and "PROVIDER_NOT_FOUND" in text_of(r), text_of(r)
    r = await session.call_tool("get_token", {})
    assert r.is_error and "BAD_REQUEST" in text_of(r), text_of(r)

    if standin is not None:
        before = len(standin.seen)
        r = data_of(await session.call_tool("call_api", {
            "provider": "standin", "method": "POST", "path": "/things",
            "query": {"q": "a b", "n": 2}, "body": {"name": "widget"}, "reason": "mcp proxy test",
        }))
        assert r["status"] == 200, r
        answer = json.loads(r["body"])
        assert answer["hello"] == "from the stand-in" and answer["method"] == "POST", answer
        assert answer["path"].startswith("/v1/things?"), answer
        assert json.loads(answer["body"]) == {"name": "widget"}, answer
        assert r["headers"]["content-type"].startswith("application/json"), r
        assert r["headers"].get("x-ratelimit-remaining") == "41", r
        assert standin.seen[before]["auth"] == f"Bearer {STANDIN_KEY}"
        # The agent never sees the credential.
        assert STANDIN_KEY not in json.dumps(r)
        big = data_of(await session.call_tool("call_api", {"provider": "standin", "method": "GET", "path": "/big"}))
        assert big["truncated"] is True and "bytes" in big["note"], {k: v for k, v in big.items() if k != "body"}
        assert len(big["body"]) <= 100 * 1024


async def approval_flow(owner: Owner, make_session, transport: str, tool: str = "get_token"):
    """A request that needs the user's approval (a token, or a proxied call) is reported while it
    waits, then completes when the user approves it with the admin CLI; a denial is a tool error."""
    progress, logs = [], []
    if tool == "get_token":
        args = {"provider": "openai", "reason": f"approval over {transport}"}
        provider = "openai"
    else:
        args = {"provider": "standin", "method": "GET", "path": "/whoami", "reason": f"approval over {transport}"}
        provider = "standin"

    async def on_progress(p, total, message):
        progress.append(message)

    async def on_log(params):
        logs.append(params.data)

    async with make_session(on_log) as session:
        await session.initialize()
        result = {}

        async def call():
            result["r"] = await session.call_tool(tool, args, progress_callback=on_progress)

        async def user():
            # The user looks at `akhrot approvals` only once the agent has been told it waits.
            with anyio.fail_after(30):
                while not progress:
                    await anyio.sleep(0.1)
            pending = json.loads(owner.cli("approvals", "--json").stdout)
            assert len(pending) == 1, pending
            assert pending[0]["reason"] == f"approval over {transport}", pending
            assert pending[0]["provider"] == provider, pending
            owner.cli("approvals", "approve", pending[0]["id"])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(user)
        done = data_of(result["r"])
        if tool == "get_token":
            assert done["accessToken"] == OPENAI_KEY, done
        else:
            assert done["status"] == 200 and json.loads(done["body"])["path"] == "/v1/whoami", done
            assert pending_request(owner) is None
        assert any(f"waiting for the user to approve asking-agent -> {provider} in Akhrot" in (m or "") for m in progress), progress
        assert any("waiting for the user to approve" in json.dumps(l) for l in logs), logs

        # A denial is a tool error with the API's code.
        result.clear()
        progress.clear()

        async def deny():
            with anyio.fail_after(30):
                while not progress:
                    await anyio.sleep(0.1)
            pending = json.loads(owner.cli("approvals", "--json").stdout)
            owner.cli("approvals", "deny", pending[0]["id"])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(deny)
        r = result["r"]
        assert r.is_error and "APPROVAL_DENIED" in text_of(r), text_of(r)


async def cancel_flow(owner: Owner, make_session):
    """A client that gives up on a waiting request: the prompt is withdrawn from the user."""
    progress = []

    async def on_progress(p, total, message):
        progress.append(message)

    async with make_session() as session:
        await session.initialize()
        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as tg:
                async def call():
                    await session.call_tool("get_token", {"provider": "openai", "reason": "to be cancelled"},
                                            progress_callback=on_progress)

                async def give_up():
                    while not progress:
                        await anyio.sleep(0.1)
                    assert pending_request(owner) is not None
                    tg.cancel_scope.cancel()

                tg.start_soon(call)
                tg.start_soon(give_up)
        assert not scope.cancelled_caught, "the request never reported that it waits"
        with anyio.fail_after(15):
            while pending_request(owner) is not None:
                await anyio.sleep(0.1)
        # The session is still usable.
        data_of(await session.call_tool("list_connections", {}))


def pending_request(owner: Owner):
    pending = json.loads(owner.cli("approvals", "--json").stdout)
    return pending[0] if pending else None


def stdio_params(owner: Owner, key: str) -> StdioServerParameters:
    return StdioServerParameters(command=AKHROT, args=[*owner.dirs(), "mcp"], env={"AKHROT_API_KEY": key})


def stdio_session(owner: Owner, key: str):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(on_log=None):
        async with stdio_client(stdio_params(owner, key)) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log) as session:
                yield session

    return make


def http_session(owner: Owner, key: str):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(on_log=None):
        client = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300)
        )
        async with client:
            async with streamable_http_client(f"{owner.base}/mcp", http_client=client) as (read, write):
                async with ClientSession(read, write, logging_callback=on_log) as session:
                    yield session

    return make


async def http_hygiene(owner: Owner, key: str):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as c:
        r = await c.post(f"{owner.base}/mcp", json=init, headers=headers)
        assert r.status_code == 401, (r.status_code, r.text)
        assert r.json()["error"]["code"] == "UNAUTHORIZED", r.text
        r = await c.post(f"{owner.base}/mcp", json=init, headers={**headers, "Authorization": "Bearer akhrot_nope_00"})
        assert r.status_code == 401, (r.status_code, r.text)
        auth = {**headers, "Authorization": f"Bearer {key}"}
        r = await c.post(f"{owner.base}/mcp", json=init, headers={**auth, "Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN_HOST", r.text
        r = await c.post(f"{owner.base}/mcp", json=init, headers={**auth, "Host": f"evil.example:{owner.port}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN_HOST", r.text
        r = await c.post(f"{owner.base}/mcp", content=json.dumps(init), headers={**auth, "Content-Type": "text/plain"})
        assert r.status_code == 400, (r.status_code, r.text)
        r = await c.post(f"{owner.base}/mcp", json=init, headers=auth)
        assert r.status_code == 200, (r.status_code, r.text)


def main() -> int:
    with_proxy = os.environ.get("AKHROT_MCP_PROXY", "1") != "0"
    failures = 0
    with tempfile.TemporaryDirectory(prefix="akhrot-mcp-") as tmp:
        standin = StandIn() if with_proxy else None
        owner = Owner(Path(tmp), standin.provider_toml() if standin else None)
        try:
            owner.cli("add", "openai", input=OPENAI_KEY)
            if standin:
                owner.cli("add", "standin", input=STANDIN_KEY)
            allowed = ["--allow", "openai"] + (["--allow", "standin"] if standin else [])
            key = owner.cli("keys", "create", "--name", "mcp-agent", *allowed).stdout.strip()
            asker = owner.cli("keys", "create", "--name", "asking-agent").stdout.strip()

            async def stdio_checks():
                async with stdio_session(owner, key)() as s:
                    await check_session(s, owner, standin, "stdio")

            async def http_checks():
                async with http_session(owner, key)() as s:
                    await check_session(s, owner, standin, "http")

            checks = [
                ("stdio: tools, tokens, errors" + (", proxy" if standin else ""), stdio_checks),
                ("http: tools, tokens, errors" + (", proxy" if standin else ""), http_checks),
                ("stdio: a pending approval is reported, then approved", lambda: approval_flow(owner, stdio_session(owner, asker), "stdio")),
                ("http: a pending approval is reported, then approved", lambda: approval_flow(owner, http_session(owner, asker), "http")),
                *([("stdio: a proxied call waiting for approval is reported, then approved",
                    lambda: approval_flow(owner, stdio_session(owner, asker), "stdio", "call_api"))] if standin else []),
                ("stdio: a cancelled request withdraws its prompt", lambda: cancel_flow(owner, stdio_session(owner, asker))),
                ("http: /mcp needs an agent key, Host/Origin/JSON rules", lambda: http_hygiene(owner, key)),
            ]
            for name, check in checks:
                started = time.monotonic()
                try:
                    anyio.run(check)
                    print(f"ok   {name} ({time.monotonic() - started:.1f} s)")
                except BaseException:
                    failures += 1
                    print(f"FAIL {name}")
                    traceback.print_exc()

            # `akhrot mcp` with no owner running, or no key: a clear error and its exit code.
            r = subprocess.run([AKHROT, "--data-dir", str(Path(tmp) / "nowhere"), "mcp"], env={**os.environ, "AKHROT_API_KEY": key},
                               capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
            ok = r.returncode == 3 and "no Akhrot owner is running" in r.stderr
            r2 = subprocess.run([AKHROT, *owner.dirs(), "mcp"], env={k: v for k, v in os.environ.items() if k != "AKHROT_API_KEY"},
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
            ok = ok and r2.returncode == 2 and "AKHROT_API_KEY" in r2.stderr
            print(f"{'ok  ' if ok else 'FAIL'} akhrot mcp without an owner (3) or a key (2)")
            if not ok:
                failures += 1
                print(r.returncode, r.stderr, r2.returncode, r2.stderr)
            # An owner that stops under an open `akhrot mcp` session: tool errors that say so.
            async def owner_goes_away():
                async with stdio_session(owner, key)() as session:
                    await session.initialize()
                    data_of(await session.call_tool("list_connections", {}))
                    await anyio.to_thread.run_sync(owner.stop)
                    r = await session.call_tool("list_connections", {})
                    assert r.is_error and "OWNER_NOT_RUNNING" in text_of(r), text_of(r)
                    assert "akhrot serve" in text_of(r), text_of(r)

            try:
                anyio.run(owner_goes_away)
                print("ok   stdio: the owner stopping mid-session is a clear tool error")
            except BaseException:
                failures += 1
                print("FAIL stdio: the owner stopping mid-session is a clear tool error")
                traceback.print_exc()
            # No token in the owner's log.
            if owner.proc.poll() is None:
                owner.stop()
            log = (Path(tmp) / "serve.log").read_text()
            leaked = OPENAI_KEY in log or STANDIN_KEY in log
            print(f"{'FAIL' if leaked else 'ok  '} no secret in the owner's log")
            failures += leaked
        finally:
            if owner.proc.poll() is None:
                owner.stop()
            if failures:
                print((Path(tmp) / "serve.log").read_text()[-4000:], file=sys.stderr)
    print(f"{'FAILED' if failures else 'passed'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
