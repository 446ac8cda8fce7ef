"""docs/nginx.md works as written: one hub under two host names, through a real nginx with TLS.

The page's nginx site and hub lines are its two included files,
examples/nginx/jupyterhub.conf and examples/nginx/jupyterhub_config.py. The
site runs as it stands in a real nginx (support.nginx), with only the listen
ports (on 127.0.0.1), the certificate paths (a throwaway CA's certificate
for both names, support.tls) and the upstream port replaced; the hub is the
PAM edge-node example (support.edge) with the page's lines, and a user with a
keytab. Through each name over HTTPS, verified against the CA, with the names
resolved by the test's own mapping, the client does what a browser does:
logs in with the form, is sent through the spawn and the server's OAuth to
JupyterLab, and with its cookies and the page's Origin opens a kernel's and a
terminal's websocket, where ``klist`` shows the user's ticket. The hub's
cookie is Secure and its log has the client's address, whatever the client
put in ``X-Real-IP``. A websocket
and an API POST from a foreign Origin are still refused. Then headless
Chromium (``--host-resolver-rules``, the certificate accepted by its key)
logs in through the second name and runs ``klist`` in a JupyterLab terminal. Two variants of the
site show the page's explanation of the Origin problem: without
``proxy_set_header Host`` the server refuses the page's own websocket, and
with ``Origin`` blanked it accepts a foreign page's.
"""

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import get_cookie_header
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import OverrideResolver, Resolver
from tornado.websocket import websocket_connect
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

import support.browser
from support.edge import server_environment
from support.kernel import Kernel
from support.ports import free_port
from support.realm import add_principal
from support.served import PRINCIPAL, wait_for_ticket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples", "nginx")
NAMES = ("hub.bank.example", "hub-mgmt.bank.example")
EVIL = "https://evil.example"


def page_files():
    """The site file and hub lines, as docs/nginx.md includes them (one copy of each)."""
    with open(os.path.join(REPO, "docs", "nginx.md")) as f:
        page = f.read()
    included = re.findall(r"^```\{literalinclude\} \.\./examples/nginx/(\S+)$", page, re.MULTILINE)
    assert sorted(included) == ["jupyterhub.conf", "jupyterhub_config.py"], included
    texts = []
    for name in ("jupyterhub.conf", "jupyterhub_config.py"):
        with open(os.path.join(EXAMPLES, name)) as f:
            texts.append(f.read())
    return texts


def site_for_test(page_site, tls, https_port, http_port, upstream_port):
    """The page's site with the test's ports and certificate: nothing else changed."""
    site, count = re.subn(r"\blisten 443\b", f"listen 127.0.0.1:{https_port}", page_site)
    assert count == 2, "the page's site listens on 443 twice (its names, and the others)"
    site, count = re.subn(r"\blisten 80\b", f"listen 127.0.0.1:{http_port}", site)
    assert count == 2
    site, count = re.subn(r"(ssl_certificate\s+)\S+;", rf"\g<1>{tls.cert};", site)
    assert count == 1
    site, count = re.subn(r"(ssl_certificate_key\s+)\S+;", rf"\g<1>{tls.key};", site)
    assert count == 1
    site, count = re.subn(r"http://127\.0\.0\.1:8000;", f"http://127.0.0.1:{upstream_port};", site)
    assert count == 1
    return site


class Browser:
    """An HTTPS client of one host name, as a browser of that name is: the names resolved by
    the test (the connection goes to nginx on 127.0.0.1, the name stays for SNI, the
    certificate check and Host), the CA trusted, cookies kept, the page's Origin sent."""

    def __init__(self, name, port, ca, source="127.0.0.1"):
        self.name, self.port, self.ca = name, port, ca
        self.base = f"https://{name}:{port}"
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy, and no CA bundle from the environment
        self.session.verify = ca
        self.session.mount(self.base, _ResolvingAdapter(ca, source))
        self.resolver = OverrideResolver(Resolver(), {(name, port): ("127.0.0.1", port)})
        self.loop = asyncio.new_event_loop()

    def close(self):
        self.session.close()
        self.loop.close()

    def get(self, path, **kwargs):
        return self.session.get(self.base + path, timeout=60, **kwargs)

    def xsrf(self, path):
        """The ``_xsrf`` cookie JupyterHub (path /hub/) or the server (/user/<name>/) set."""
        return next(c.value for c in self.session.cookies if c.name == "_xsrf" and c.path == path)

    def api(self, method, user, path, origin=None, **kwargs):
        """A cookie-authenticated call of the user's server's REST API, as JupyterLab makes it."""
        headers = {"X-XSRFToken": self.xsrf(f"/user/{user}/"), "Origin": origin or self.base}
        return self.session.request(
            method, f"{self.base}/user/{user}/api/{path}", headers=headers, timeout=60, **kwargs
        )

    def login(self, account):
        self.get("/hub/login").raise_for_status()
        return self.session.post(
            f"{self.base}/hub/login",
            data={
                "username": account.name,
                "password": account.password,
                "_xsrf": self.xsrf("/hub/"),
            },
            timeout=60,
        )

    def websocket(self, path, origin=None, timeout=60):
        """A websocket of ``wss://<name>:<port><path>``, with the session's cookies."""
        https = self.base + path
        cookies = get_cookie_header(self.session.cookies, requests.Request("GET", https))
        request = HTTPRequest(
            "wss" + https.removeprefix("https"),
            headers={"Origin": origin or self.base, "Cookie": cookies},
            ca_certs=self.ca,
            validate_cert=True,
            connect_timeout=timeout,
            request_timeout=timeout,
        )

        async def connect():
            return await websocket_connect(request, resolver=self.resolver)

        return self.loop.run_until_complete(asyncio.wait_for(connect(), timeout))

    def refused_websocket(self, path, origin):
        """The status with which the upgrade of ``path`` from ``origin`` was refused."""
        try:
            self.websocket(path, origin=origin).close()
        except HTTPClientError as error:
            return error.code
        return 101


class _ResolvingAdapter(HTTPAdapter):
    """Connects to 127.0.0.1 at the URL's port, keeping the URL's name for SNI, the
    certificate's name check and the Host header; trusts the test's CA only."""

    def __init__(self, ca, source):
        super().__init__()
        self.ca, self.source = ca, (source, 0)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        url = urlparse(request.url)
        if url.scheme == "http":
            return HTTPConnectionPool("127.0.0.1", url.port, source_address=self.source)
        return HTTPSConnectionPool(
            "127.0.0.1",
            url.port,
            source_address=self.source,
            server_hostname=url.hostname,
            assert_hostname=url.hostname,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.ca,
        )

    def send(self, request, **kwargs):
        request.headers["Host"] = urlparse(request.url).netloc
        return super().send(request, **{**kwargs, "verify": self.ca})


class BrowserKernel(Kernel):
    """support.kernel's client on a websocket the :class:`Browser` opened (cookies, Origin)."""

    def __init__(self, browser, user, kernel_id):
        super().__init__(f"{browser.base}/user/{user}/", None, kernel_id, browser.loop)
        self.browser, self.user = browser, user

    def connect(self, timeout=60):
        path = f"/user/{self.user}/api/kernels/{self.id}/channels?session_id={self.session}"
        self._ws = self.browser.websocket(path, timeout=timeout)


def klist_in_kernel(browser, user, kernel_id):
    kernel = BrowserKernel(browser, user, kernel_id)
    try:
        kernel.connect()
        kernel.wait_ready(60)
        # klist's output captured and printed by the kernel's Python: what a subprocess
        # writes to the kernel's own stdout reaches the client only on a thread of
        # ipykernel's, maybe after the execution's reply.
        run = kernel.execute(
            "import subprocess; r = subprocess.run(['klist'], capture_output=True, text=True);"
            " print(r.stdout, r.stderr, r.returncode)"
        )
        assert run.ok, run.describe()
        return run.stdout
    finally:
        kernel.close()


@contextlib.contextmanager
def open_terminal(browser, user):
    """A new terminal of the user's server (``POST api/terminals``), its name; deleted after."""
    response = browser.api("POST", user, "terminals")
    assert response.status_code == 200, (response.status_code, response.text)
    terminal = response.json()["name"]
    try:
        yield terminal
    finally:
        browser.api("DELETE", user, f"terminals/{terminal}")


def klist_in_terminal(browser, user, terminal, principal, deadline=60):
    """What the terminal shows after ``klist``, once it shows ``principal``."""
    ws = browser.websocket(f"/user/{user}/terminals/websocket/{terminal}")

    async def converse():
        await ws.write_message(json.dumps(["stdin", "klist\r"]))
        seen = ""
        while f"Default principal: {principal}" not in seen:
            message = await ws.read_message()
            assert message is not None, f"the terminal closed; it said:\n{seen}"
            kind, *payload = json.loads(message)
            if kind == "stdout":
                seen += payload[0]
        return seen

    try:
        return browser.loop.run_until_complete(asyncio.wait_for(converse(), deadline))
    finally:
        ws.close()


def curl(site_ca, name, port, *args):
    """curl as a client of ``name`` (resolved to 127.0.0.1 by --resolve), trusting the CA."""
    argv = ["curl", "-sS", "--max-time", "30", "--cacert", site_ca,
            "--resolve", f"{name}:{port}:127.0.0.1", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_one_hub_under_two_names_through_nginx(edge_hub, make_user, realm, nginx_factory, tls_site):
    page_site, hub_lines = page_files()
    tls = tls_site(NAMES)

    # The hub: the PAM edge-node example plus the page's lines; a user with a keytab.
    hub = edge_hub(PRINCIPAL + hub_lines)
    account = make_user(groups=("hub-users",))
    user = account.name
    principal = f"{user}@{realm.realm}"
    keytab = os.path.join(account.home, f"{user}.wb1.keytab")
    add_principal(realm, principal, keytab=keytab, uid=account.uid, gid=account.gid)

    https_port, http_port = _free_ports(2)
    site = site_for_test(page_site, tls, https_port, http_port, hub.port)
    nginx = nginx_factory(site)
    assert "test is successful" in nginx.check_output, nginx.check_output

    # Plain HTTP only redirects, on each name to itself; HTTPS is HTTP/2 with HSTS.
    for name in NAMES:
        url = f"http://{name}:{http_port}/hub/login"
        plain = curl(tls.ca, name, http_port, "-o", "/dev/null",
                     "-w", "%{http_code} %{redirect_url}", url)  # fmt: skip
        assert plain.stdout == f"301 https://{name}/hub/login", plain
        url = f"https://{name}:{https_port}/hub/login"
        secure = curl(tls.ca, name, https_port, "--http2", "-o", "/dev/null", "-D", "-",
                      "-w", "%{http_version}", url)  # fmt: skip
        assert secure.returncode == 0, secure.stderr
        assert secure.stdout.endswith("\n2"), secure.stdout
        assert re.search(r"^strict-transport-security: max-age=31536000\r?$", secure.stdout, re.M)
    # Another name gets no certificate at all (the TLS handshake is refused).
    other = curl(tls.ca, "evil.example", https_port, f"https://evil.example:{https_port}/")
    assert other.returncode == 35, other  # CURLE_SSL_CONNECT_ERROR

    # The first browser comes from 127.0.0.2, and claims another address in X-Real-IP.
    browsers = [Browser(NAMES[0], https_port, tls.ca, source="127.0.0.2")]
    browsers.append(Browser(NAMES[1], https_port, tls.ca))
    try:
        first, second = browsers
        first.session.headers["X-Real-IP"] = "10.6.6.6"
        # Log in through the first name: the hub spawns the server (its ticket in the cache).
        response = first.login(account)
        assert response.status_code == 200, (response.status_code, response.text[-2000:])
        assert any(h.status_code == 302 for h in response.history), response.history
        _wait_ready(hub, user)
        env = server_environment(hub, user)
        wait_for_ticket(env["KRB5CCNAME"].removeprefix("FILE:"), principal)
        # The hub's session cookie is Secure: the hub knows the browser came over HTTPS.
        hub_cookie = next(c for c in first.session.cookies if c.name == "jupyterhub-hub-login")
        assert hub_cookie.secure and hub_cookie.domain.endswith(NAMES[0]), hub_cookie

        response = second.login(account)  # the same server, now through the second name
        assert response.status_code == 200, (response.status_code, response.text[-2000:])

        kernel_id = None
        for browser in browsers:
            # JupyterLab, after the server's OAuth with the hub, all on this browser's name.
            lab = browser.get(f"/user/{user}/lab")
            assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.status_code
            assert all(urlparse(r.url).hostname == browser.name for r in lab.history), [
                r.url for r in lab.history
            ]
            assert lab.headers["Strict-Transport-Security"] == "max-age=31536000"

            if kernel_id is None:
                started = browser.api("POST", user, "kernels", json={"name": "python3"})
                assert started.status_code == 201, (started.status_code, started.text)
                kernel_id = started.json()["id"]
            shown = klist_in_kernel(browser, user, kernel_id)
            assert f"Default principal: {principal}" in shown, shown
            assert f"krbtgt/{realm.realm}@{realm.realm}" in shown, shown
            with open_terminal(browser, user) as terminal:
                shown = klist_in_terminal(browser, user, terminal, principal)
                assert f"Ticket cache: {env['KRB5CCNAME']}" in shown, shown
                # A page of another site gets nothing, though the browser sends the cookies.
                socket = f"/user/{user}/terminals/websocket/{terminal}"
                assert browser.refused_websocket(socket, EVIL) == 403
            channels = f"/user/{user}/api/kernels/{kernel_id}/channels"
            assert browser.refused_websocket(channels, EVIL) == 403
            foreign = browser.api("POST", user, "kernels", origin=EVIL, json={"name": "python3"})
            assert foreign.status_code == 404, (foreign.status_code, foreign.text)
        # A real browser through the second name: its own Origin, the terminal's klist.
        resolve_and_trust = (
            f"--host-resolver-rules=MAP {second.name} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={tls.spki_sha256}",
        )
        with support.browser.chromium(*resolve_and_trust) as driver:
            support.browser.log_in(driver, second.base, account.name, account.password)
            shown = support.browser.klist_in_terminal(driver, account.name, principal)
            assert f"Ticket cache: {env['KRB5CCNAME']}" in shown, shown
        # Its pages came over HTTP/2, its terminal's websocket over HTTP/1.1 (nginx logs a
        # request when it ends: the websocket's once the browser has gone).
        _access_log_line(nginx, rf'"GET /user/{user}/lab HTTP/2\.0" 200 .*HeadlessChrome')
        ws = rf'"GET /user/{user}/terminals/websocket/\S+ HTTP/1\.1" 101 .*HeadlessChrome'
        _access_log_line(nginx, ws)

        log = hub.log_text()
        # The hub logs the address nginx saw, not the one the client claimed.
        assert re.search(rf"POST /hub/login\S* -> .*\({user}@127\.0\.0\.2\)", log)
        assert "10.6.6.6" not in log
        assert "Blocking Cross Origin WebSocket Attempt" in log
        assert "Blocking Cross Origin API request" in log

        # Why the page forwards Host: without it the server gets nginx's upstream address
        # as the Host, and refuses the page's own websocket as cross-origin.
        without_host = _variant(page_site, r"\n *proxy_set_header Host \$http_host;", "")
        with _variant_browser(nginx_factory, without_host, tls, hub, first) as browser:
            assert browser.get(f"/user/{user}/lab").status_code == 200  # the page still loads
            assert browser.refused_websocket(channels, browser.base) == 403
            refused = browser.api("POST", user, "kernels", json={"name": "python3"})
            assert refused.status_code == 404, (refused.status_code, refused.text)
        # Why it does not blank Origin: a foreign page's websocket would be let in.
        blank = _variant(
            page_site, r"( *)(proxy_set_header Upgrade)", r'\1proxy_set_header Origin "";\n\1\2'
        )
        with _variant_browser(nginx_factory, blank, tls, hub, first) as browser:
            assert browser.refused_websocket(channels, EVIL) == 101  # not refused: let in

        stopped = first.api("DELETE", user, f"kernels/{kernel_id}")
        assert stopped.status_code == 204, stopped.status_code
    finally:
        for browser in browsers:
            browser.close()


def _free_ports(count):
    return [free_port() for _ in range(count)]


def _access_log_line(nginx, pattern, deadline=30):
    """The first line of nginx's access log matching ``pattern``, once there is one."""
    end = time.monotonic() + deadline
    while True:
        with open(os.path.join(nginx.prefix, "access.log")) as f:
            found = [line for line in f if re.search(pattern, line)]
        if found or time.monotonic() > end:
            assert found, f"no line of nginx's access log matches {pattern!r}"
            return found[0]
        time.sleep(0.1)


def _wait_ready(hub, user, deadline=90):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        server = hub.server(user)
        if server and server.get("ready"):
            return
        time.sleep(0.2)
    raise AssertionError(f"the server of {user} never became ready:\n{hub.log_text()[-6000:]}")


def _variant(site, pattern, replacement):
    changed, count = re.subn(pattern, replacement, site)
    assert count == 1, pattern
    return changed


@contextlib.contextmanager
def _variant_browser(nginx_factory, page_site, tls, hub, browser):
    """``browser``'s cookies, through another nginx serving ``page_site`` on ports of its own."""
    https_port, http_port = _free_ports(2)
    nginx_factory(site_for_test(page_site, tls, https_port, http_port, hub.port))
    other = Browser(browser.name, https_port, tls.ca)
    other.session.cookies.update(browser.session.cookies)
    try:
        yield other
    finally:
        other.close()
