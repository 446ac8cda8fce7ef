"""A small client of a running Jupyter server's kernels, as a notebook's browser is one.

``running_kernel(server_url, token, spec)`` starts a kernel of the kernelspec
``spec`` through the server's REST API (``POST /api/kernels``), connects to
its websocket channels, and yields a :class:`Kernel`; on leaving, the kernel
is shut down (``DELETE /api/kernels/<id>``), even when the test failed.
``Kernel.execute(code)`` sends an ``execute_request`` on the shell channel,
collects the ``stream``, ``execute_result`` and ``error`` messages the
kernel publishes on iopub for it, and returns them with the
``execute_reply`` once the kernel is idle again (Jupyter messaging protocol
5.x, the websocket's default JSON framing).

``server_url`` is the server's base URL (through the hub's proxy:
``<hub>/user/<name>/``); ``token`` is one the server accepts (a hub API token
of the user, :func:`user_token`).
"""

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

PROTOCOL_VERSION = "5.3"


@dataclass
class Execution:
    """What one ``execute_request`` came to."""

    stdout: str = ""
    stderr: str = ""
    results: list = field(default_factory=list)  # text/plain of each execute_result
    errors: list = field(default_factory=list)  # (ename, evalue, traceback) of each error
    reply: dict = field(default_factory=dict)  # the execute_reply's content

    @property
    def ok(self):
        return self.reply.get("status") == "ok" and not self.errors

    def describe(self):
        """Everything the kernel said, for an assertion message."""
        tracebacks = "\n".join("\n".join(tb) for _, _, tb in self.errors)
        return (
            f"reply: {self.reply.get('status')}\nstdout:\n{self.stdout}\nstderr:\n"
            f"{self.stderr[-6000:]}\nresults: {self.results}\nerrors:\n{tracebacks}"
        )


def user_token(hub, name, note="kerbauth tests: the kernel client"):
    """A new API token of user ``name``, made with the hub's admin service token."""
    response = hub.api("POST", f"/users/{name}/tokens", json={"note": note})
    assert response.status_code == 201, (response.status_code, response.text)
    return response.json()["token"]


def _message(msg_type, content, session, channel="shell"):
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "kerbauth-tests",
            "session": session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": PROTOCOL_VERSION,
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


class Kernel:
    """One kernel of the server, its websocket open (use through :func:`running_kernel`)."""

    def __init__(self, server_url, token, kernel_id, loop):
        self.server_url = server_url.rstrip("/") + "/"
        self.token = token
        self.id = kernel_id
        self.session = uuid.uuid4().hex
        self._loop = loop
        self._ws = None

    def _run(self, coroutine, timeout):
        return self._loop.run_until_complete(asyncio.wait_for(coroutine, timeout))

    def connect(self, timeout=120):
        # The server answers the upgrade once the kernel answers it, or after its
        # kernel_info_timeout (60 s): a kernel running pyspark's start-up is slow.
        ws_url = self.server_url.replace("http", "ws", 1)
        request = HTTPRequest(
            f"{ws_url}api/kernels/{self.id}/channels?session_id={self.session}",
            headers={"Authorization": f"token {self.token}"},
            connect_timeout=timeout,
            request_timeout=timeout,
        )

        async def connect():  # the connection's futures belong to the loop running it
            return await websocket_connect(request)

        self._ws = self._run(connect(), timeout)

    def close(self):
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    async def _send(self, message):
        await self._ws.write_message(json.dumps(message))

    async def _receive(self):
        text = await self._ws.read_message()
        if text is None:
            raise ConnectionError(f"the websocket of kernel {self.id} closed")
        return json.loads(text)

    async def _request(self, msg_type, content, on_iopub=None):
        """Send a shell request; the reply's content once iopub says idle for it too."""
        message = _message(msg_type, content, self.session)
        msg_id = message["header"]["msg_id"]
        await self._send(message)
        reply = idle = None
        while reply is None or not idle:
            incoming = await self._receive()
            if incoming.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # another request's (the server's own kernel_info nudges)
            channel, kind = incoming.get("channel"), incoming["header"]["msg_type"]
            if channel == "shell" and kind == msg_type.replace("_request", "_reply"):
                reply = incoming["content"]
            elif channel == "iopub" and kind == "status":
                idle = incoming["content"]["execution_state"] == "idle"
            elif channel == "iopub" and on_iopub is not None:
                on_iopub(kind, incoming["content"])
        return reply

    def wait_ready(self, deadline=180):
        """Until the kernel answers a kernel_info_request on shell and iopub (its start-up ran)."""
        end = time.monotonic() + deadline
        while True:
            try:
                return self._run(self._request("kernel_info_request", {}), 5)
            except (asyncio.TimeoutError, TimeoutError):
                if time.monotonic() > end:
                    raise AssertionError(
                        f"kernel {self.id} did not answer within {deadline} s"
                    ) from None

    def execute(self, code, timeout=120):
        """Run ``code`` in the kernel; the :class:`Execution` it came to."""
        execution = Execution()

        def on_iopub(kind, content):
            if kind == "stream":
                name = content["name"]
                setattr(execution, name, getattr(execution, name) + content["text"])
            elif kind == "execute_result":
                execution.results.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                execution.errors.append(
                    (content["ename"], content["evalue"], content.get("traceback", []))
                )

        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        try:
            execution.reply = self._run(
                self._request("execute_request", content, on_iopub), timeout
            )
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(
                f"kernel {self.id}: no reply within {timeout} s\n{execution.describe()}"
            ) from None
        return execution


def _api(method, server_url, token, path, **kwargs):
    return requests.request(
        method,
        f"{server_url.rstrip('/')}/api/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kwargs,
    )


@contextlib.contextmanager
def running_kernel(server_url, token, spec, ready_deadline=180):
    """A started kernel of kernelspec ``spec`` in the server at ``server_url``, ready to run code.

    The kernel is shut down on leaving (and its websocket closed), whatever happened.
    """
    response = _api("POST", server_url, token, "kernels", json={"name": spec})
    assert response.status_code == 201, (response.status_code, response.text)
    kernel_id = response.json()["id"]
    loop = asyncio.new_event_loop()
    kernel = Kernel(server_url, token, kernel_id, loop)
    try:
        kernel.connect()
        kernel.wait_ready(ready_deadline)
        yield kernel
    finally:
        try:
            kernel.close()
            _api("DELETE", server_url, token, f"kernels/{kernel_id}")
        finally:
            loop.close()
