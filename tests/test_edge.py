"""The edge's middlewares (ui/edge/), each in-process with Starlette's TestClient against a tiny app."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from services.ratelimit import RequestRate
from ui.edge import (
    CONTENT_SECURITY_POLICY,
    BodyLimit,
    CallerForwarding,
    ClientAddress,
    CrossOriginPolicy,
    LoginThrottle,
    RateLimit,
    SecurityHeaders,
    connection_address,
)

pytestmark = pytest.mark.unit


async def echo(request: Request) -> Response:
    """What the app behind the middleware sees of the request."""
    body = await request.body()
    return JSONResponse(
        {
            "client": request.client.host if request.client else None,
            "connection": connection_address(request.scope),
            "cookies": dict(request.cookies),
            "session": dict(request.session) if "session" in request.scope else None,
            "headers": {name: value for name, value in request.headers.items() if name.startswith("x-")},
            "body": len(body),
        },
        # What Gradio's CORS middleware used to add: the policy must take it out for another site.
        headers={"access-control-allow-credentials": "true"},
    )


async def login(request: Request) -> Response:
    form = await request.form()
    return PlainTextResponse(
        "ok" if form.get("password") == "right" else "no", 200 if form.get("password") == "right" else 400
    )


async def set_session(request: Request) -> Response:
    request.session["oauth_info"] = {"user": "ada"}
    return PlainTextResponse("signed in")


def app_with(*middleware: Middleware) -> Starlette:
    routes = [
        Route("/{path:path}", echo, methods=["GET", "POST", "OPTIONS"]),
    ]
    return Starlette(
        routes=[Route("/login", login, methods=["POST"]), Route("/sign-in", set_session), *routes],
        middleware=list(middleware),
    )


def client(*middleware: Middleware, host: str = "space.test", peer: str = "203.0.113.5") -> TestClient:
    return TestClient(app_with(*middleware), base_url=f"https://{host}", client=(peer, 50000))


class TestSecurityHeaders:
    def test_every_response_says_what_the_page_may_do(self):
        """The CSP keeps images and media to the app, forms posting to it, framing to it and huggingface.co."""
        response = client(Middleware(SecurityHeaders)).get("/anything")
        policy = response.headers["content-security-policy"]
        assert policy == CONTENT_SECURITY_POLICY
        for directive in (
            "img-src 'self' data: blob:",
            "form-action 'self'",
            "frame-ancestors 'self' https://huggingface.co",
            "base-uri 'self'",
            "object-src 'none'",
        ):
            assert directive in policy
        assert response.headers["x-content-type-options"] == "nosniff"

    def test_refusals_inside_carry_them_too(self):
        """A 413 from a middleware inside still says what the page may load."""
        http = client(Middleware(SecurityHeaders), Middleware(BodyLimit, max_bytes=10))
        refused = http.post("/x", content=b"y" * 100)
        assert refused.status_code == 413
        assert "frame-ancestors" in refused.headers["content-security-policy"]


POLICY = Middleware(CrossOriginPolicy, credentialed=("/gradio_api/token", "/login", "/login/"))
COOKIE = {"access-token-1": "visitor-secret"}


class TestCrossOrigin:
    def http(self, *outer: Middleware, host: str = "space.test", trust_forwarded_host: bool = False) -> TestClient:
        policy = Middleware(
            CrossOriginPolicy,
            credentialed=("/gradio_api/token", "/login", "/login/"),
            trust_forwarded_host=trust_forwarded_host,
        )
        http = client(*outer, policy, host=host)
        http.cookies.update(COOKIE)
        return http

    def test_the_own_origin_keeps_its_cookies(self):
        """The page's own requests (Origin is this host) are untouched, and get no CORS headers."""
        response = self.http().post("/gradio_api/call/ask", headers={"origin": "https://space.test"})
        assert response.json()["cookies"] == COOKIE
        assert "access-control-allow-origin" not in response.headers

    def test_the_own_origin_behind_a_tls_proxy(self):
        """Behind a proxy that ends TLS the app sees http and no port: https://space.test is still its own."""
        http = TestClient(app_with(POLICY), base_url="http://space.test")
        http.cookies.update(COOKIE)
        response = http.get("/x", headers={"origin": "https://space.test"})
        assert response.json()["cookies"] == COOKIE

    def test_another_site_is_an_anonymous_caller(self):
        """A request from another site reaches the app without cookies, readable, never with credentials."""
        response = self.http().post("/gradio_api/call/ask", headers={"origin": "https://evil.test"})
        assert response.status_code == 200
        assert response.json()["cookies"] == {}
        assert response.headers["access-control-allow-origin"] == "https://evil.test"
        assert "access-control-allow-credentials" not in response.headers
        assert "Origin" in response.headers["vary"]

    @pytest.mark.parametrize(
        "origin",
        [
            "https://space.test.evil.test",  # a suffix
            "https://evil.test/space.test",
            "http://space.test:8443",  # another port
            "null",  # a sandboxed frame, a data: URL
            "space.test",  # not an origin at all
        ],
    )
    def test_what_only_looks_like_this_host_is_another_site(self, origin):
        assert self.http().get("/x", headers={"origin": origin}).json()["cookies"] == {}

    def test_the_sign_in_session_is_gone_too(self):
        """A session a middleware outside decoded from its cookie (Gradio's OAuth) is empty for another site, and
        the visitor's own session is not ended by that request."""
        http = self.http(Middleware(SessionMiddleware, secret_key="k" * 32, same_site="none", https_only=True))
        http.get("/sign-in")
        own = http.get("/x", headers={"origin": "https://space.test"})
        assert own.json()["session"] == {"oauth_info": {"user": "ada"}}
        foreign = http.get("/x", headers={"origin": "https://evil.test"})
        assert foreign.json()["session"] == {}
        assert "null" not in foreign.headers.get("set-cookie", "")  # the visitor's cookie is not deleted
        assert http.get("/x").json()["session"] == {"oauth_info": {"user": "ada"}}

    @pytest.mark.parametrize("path", ["/gradio_api/token", "/login", "/login/callback"])
    def test_routes_that_act_on_the_sign_in_refuse_other_sites(self, path):
        refused = self.http().get(path, headers={"origin": "https://evil.test"})
        assert refused.status_code == 403
        assert "another site may not call it" in refused.json()["detail"]

    def test_a_navigation_from_another_site_cannot_sign_the_visitor_in_or_out(self):
        """A link or a form on another site that leads to logout or login is refused (the page's own links are
        not); the identity provider's redirect back to the callback is a navigation from its site, and passes."""
        policy = Middleware(
            CrossOriginPolicy, credentialed=("/logout", "/login", "/login/"), callbacks=("/login/callback",)
        )
        http = client(policy)
        cross = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
        assert http.get("/logout", headers=cross).status_code == 403
        assert http.post("/login", headers={**cross, "origin": "https://evil.test"}).status_code == 403
        assert (
            http.get("/logout", headers={"sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate"}).status_code
            == 200
        )
        assert http.get("/login/callback", headers=cross).status_code == 200

    def test_a_preflight_allows_no_credentials(self):
        """Another site's preflight is answered for the public API, without Allow-Credentials, so a credentialed
        request with custom headers never follows."""
        response = self.http().options(
            "/gradio_api/call/ask",
            headers={
                "origin": "https://evil.test",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://evil.test"
        assert response.headers["access-control-allow-headers"] == "content-type"
        assert "access-control-allow-credentials" not in response.headers

    def test_without_origin_the_fetch_metadata_decides(self):
        """A no-cors request from another site (an <img>, a <script>) has no Origin: Sec-Fetch-Site tells it; a
        navigation (a link, the OAuth callback, the Space's iframe on huggingface.co) keeps its cookies."""
        http = self.http()
        cross = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}
        assert http.get("/gradio_api/queue/data", headers=cross).json()["cookies"] == {}
        navigation = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
        assert http.get("/", headers=navigation).json()["cookies"] == COOKIE
        assert http.get("/", headers={"sec-fetch-site": "same-origin"}).json()["cookies"] == COOKIE

    def test_a_local_app_is_not_readable_from_the_web(self):
        """On a loopback host, another site gets no CORS header at all (as Gradio does), and no cookies."""
        response = self.http(host="127.0.0.1:7860").get("/x", headers={"origin": "https://evil.test"})
        assert "access-control-allow-origin" not in response.headers
        assert response.json()["cookies"] == {}

    def test_a_trusted_proxys_host_names_the_app(self):
        """Behind a proxy that sets X-Forwarded-Host, that name is the app's own too, when trusted."""
        headers = {"origin": "https://public.test", "x-forwarded-host": "public.test"}
        assert self.http(trust_forwarded_host=True).get("/x", headers=headers).json()["cookies"] == COOKIE
        assert self.http().get("/x", headers=headers).json()["cookies"] == {}


class TestClientAddress:
    def test_the_peer_without_proxies(self):
        http = client(Middleware(ClientAddress, trusted_proxies=0))
        assert http.get("/x", headers={"x-forwarded-for": "10.0.0.1"}).json()["client"] == "203.0.113.5"

    def test_through_one_trusted_proxy(self):
        http = client(Middleware(ClientAddress, trusted_proxies=1))
        assert http.get("/x", headers={"x-forwarded-for": "6.6.6.6, 10.0.0.1"}).json()["client"] == "10.0.0.1"


class TestCallerForwarding:
    FORWARDING = CallerForwarding(paths=("/gradio_api/mcp",), secret=b"s" * 32)

    def http(self, peer: str) -> TestClient:
        return client(Middleware(ClientAddress, trusted_proxies=0, forwarding=self.FORWARDING), peer=peer)

    def test_an_mcp_request_carries_its_caller_signed(self):
        """The MCP server's request gets a header naming the caller, which Gradio forwards on its loopback call."""
        seen = self.http("198.51.100.7").post("/gradio_api/mcp/").json()
        assert seen["headers"]["x-space-caller"] == self.FORWARDING.sign("198.51.100.7").decode()

    def test_the_loopback_call_is_that_callers(self):
        """From loopback, a valid signed header makes the request the caller's; its connection stays loopback's."""
        signed = self.FORWARDING.sign("198.51.100.7").decode()
        seen = self.http("127.0.0.1").post("/gradio_api/queue/join", headers={"x-space-caller": signed}).json()
        assert seen["client"] == "198.51.100.7"
        assert seen["connection"] == "127.0.0.1"
        assert "x-space-caller" not in seen["headers"]

    @pytest.mark.parametrize(
        ("peer", "value"),
        [
            ("127.0.0.1", "198.51.100.7 0000"),  # a forged signature
            ("127.0.0.1", "198.51.100.7"),  # none
            ("203.0.113.9", None),  # a valid one, but not from loopback
        ],
    )
    def test_anything_else_is_ignored_and_removed(self, peer, value):
        value = value or self.FORWARDING.sign("198.51.100.7").decode()
        seen = self.http(peer).get("/x", headers={"x-space-caller": value}).json()
        assert seen["client"] == peer
        assert "x-space-caller" not in seen["headers"]

    def test_another_process_secret_does_not_verify(self):
        other = CallerForwarding(paths=("/gradio_api/mcp",))
        assert other.verify(self.FORWARDING.sign("198.51.100.7")) is None


class TestBodyLimit:
    def http(self) -> TestClient:
        return client(Middleware(BodyLimit, max_bytes=1000, paths={"/gradio_api/upload": 5000}))

    def test_a_declared_length_over_the_limit(self):
        refused = self.http().post("/x", content=b"a" * 1001)
        assert refused.status_code == 413
        assert refused.json()["detail"] == "The request is larger than this Space accepts (1,000 bytes)."

    def test_a_chunked_body_over_the_limit(self):
        """Without Content-Length, the body is counted as it comes."""

        def chunks():
            for _ in range(10):
                yield b"a" * 200

        assert self.http().post("/x", content=chunks()).status_code == 413

    def test_under_the_limit_and_the_upload_limit(self):
        http = self.http()
        assert http.post("/x", content=b"a" * 1000).json()["body"] == 1000
        assert http.post("/gradio_api/upload", content=b"a" * 4000).json()["body"] == 4000
        assert http.post("/gradio_api/upload", content=b"a" * 6000).status_code == 413


class TestRateLimit:
    def http(self, peer: str = "203.0.113.5") -> TestClient:
        rate = RequestRate(3, message="Slow down: {limit} a minute; again in {retry} s.")
        return client(Middleware(RateLimit, rate=rate, applies=lambda method, path: path != "/free"), peer=peer)

    def test_past_the_rate_429_with_retry_after(self):
        http = self.http()
        assert [http.get("/x").status_code for _ in range(5)] == [200, 200, 200, 429, 429]
        refused = http.get("/x")
        assert refused.json()["detail"].startswith("Slow down: 3 a minute")
        assert 1 <= int(refused.headers["retry-after"]) <= 20

    def test_what_it_does_not_apply_to_passes(self):
        http = self.http()
        assert [http.get("/free").status_code for _ in range(5)] == [200] * 5

    def test_the_app_calling_itself_is_not_limited(self):
        """Loopback is the app's own client (Gradio's MCP server) or the machine itself."""
        http = self.http(peer="127.0.0.1")
        assert [http.get("/x").status_code for _ in range(5)] == [200] * 5

    def test_an_ipv6_slash_64_is_one_caller(self):
        """Two addresses of one /64 share a budget; another /64 has its own."""
        rate = RequestRate(2, message="{limit} {retry}")
        stack = app_with(Middleware(RateLimit, rate=rate, applies=lambda method, path: True))
        one = TestClient(stack, client=("2001:db8:0:1::a", 1))
        same = TestClient(stack, client=("2001:db8:0:1::b", 1))
        other = TestClient(stack, client=("2001:db8:0:2::a", 1))
        assert [one.get("/x").status_code, same.get("/x").status_code, same.get("/x").status_code] == [200, 200, 429]
        assert other.get("/x").status_code == 200


class TestLoginThrottle:
    def test_failures_past_the_limit_get_429_and_others_are_not_held_back(self):
        stack = app_with(Middleware(LoginThrottle, attempts=2))
        attacker = TestClient(stack, client=("198.51.100.9", 1))
        statuses = [attacker.post("/login", data={"password": "wrong"}).status_code for _ in range(4)]
        assert statuses == [400, 400, 429, 429]
        assert attacker.post("/login", data={"password": "right"}).status_code == 429
        assert TestClient(stack, client=("192.0.2.44", 1)).post("/login", data={"password": "right"}).text == "ok"
