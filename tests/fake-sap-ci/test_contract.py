"""Contract tests of the FAKE SAP Cloud Integration tenant, written from CONNECTORS.md part A.

They drive the fake over real HTTP with only urllib, as any client would, and check each
documented behaviour (the section of CONNECTORS.md is named in each test). CMS output of the
fake runtime is checked by `openssl cms -verify`, not by this file.

The fake under test is the one whose ready line is in the environment variable
FAKE_SAP_CI_READY (the Rust test `tests/fake_sap_ci.rs` starts it once); without it, this file
starts its own. Run: `python -m unittest -v test_contract` in this directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client as httpclient
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_sap_ci.py"
FLOW = "Fake_Outbound_Signer"
DATE_RE = re.compile(r"^/Date\((\d+)\)/$")
M = "{http://schemas.microsoft.com/ado/2007/08/dataservices/metadata}"
D = "{http://schemas.microsoft.com/ado/2007/08/dataservices}"


def stop_fake(proc: subprocess.Popen):
    proc.terminate()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def start_fake(*args: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, str(FAKE), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the fake did not start: " + proc.stderr.read())
    return proc, json.loads(line)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8")


def http(method, url, body=None, headers=None) -> Response:
    """One request with exactly the headers given (http.client adds no Content-Type)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    u = urllib.parse.urlsplit(url)
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, u.path + ("?" + u.query if u.query else ""), body=data, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


class Client:
    """A client as CONNECTORS.md A1/A3 describe it: Bearer token, CSRF fetch, cookie jar."""

    def __init__(self, ready: dict):
        self.ready = ready
        self.api = ready["api"]
        key = ready["service_key"].get("oauth", ready["service_key"])
        self.cid, self.secret = key["clientid"], key["clientsecret"]
        self.bearer = None
        self.csrf = None
        self.cookie = None

    def token(self) -> dict:
        auth = base64.b64encode(f"{self.cid}:{self.secret}".encode()).decode()
        r = http("POST", self.ready["tokenurl"] + "?grant_type=client_credentials",
                 b"grant_type=client_credentials",
                 {"Authorization": "Basic " + auth, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200, r.body
        self.bearer = r.json()["access_token"]
        return r.json()

    def fetch_csrf(self) -> Response:
        r = http("GET", self.api + "/", None, {"Authorization": "Bearer " + self.bearer, "X-CSRF-Token": "Fetch"})
        self.csrf = r.headers.get("X-CSRF-Token")
        set_cookie = r.headers.get("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";")[0]
        return r

    def call(self, method, path, body=None, *, accept="application/json", csrf=True, headers=None) -> Response:
        if self.bearer is None:
            self.token()
        h = {"Authorization": "Bearer " + self.bearer}
        if accept:
            h["Accept"] = accept
        if isinstance(body, dict):
            h["Content-Type"] = "application/json;charset=utf-8"
        if method != "GET" and csrf:
            if self.csrf is None:
                self.fetch_csrf()
            h["X-CSRF-Token"] = self.csrf
            if self.cookie:
                h["Cookie"] = self.cookie
        h.update(headers or {})
        return http(method, self.api + path, body, h)


def hexa(alias: str) -> str:
    return alias.encode().hex()


def ms_of(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def openssl_verify(cms: bytes, trusted: list[x509.Certificate], content: bytes | None = None) -> subprocess.CompletedProcess:
    """`openssl cms -verify` with exactly `trusted` as anchors: passes only when every signer's
    certificate is one of them."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)
        (p / "m.p7").write_bytes(cms)
        (p / "ca.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in trusted))
        args = ["openssl", "cms", "-verify", "-inform", "DER", "-in", str(p / "m.p7"),
                "-CAfile", str(p / "ca.pem"), "-purpose", "any", "-out", str(p / "out"),
                "-signer", str(p / "signers.pem")]
        if content is not None:
            (p / "content").write_bytes(content)
            args += ["-content", str(p / "content"), "-binary"]
        r = subprocess.run(args, capture_output=True)
        r.content = (p / "out").read_bytes() if (p / "out").exists() else b""
        r.signers = (x509.load_pem_x509_certificates((p / "signers.pem").read_bytes())
                     if (p / "signers.pem").exists() else [])
        return r


class FakeContract(unittest.TestCase):
    proc = None
    ready: dict = {}
    defaults: dict = {}

    @classmethod
    def setUpClass(cls):
        if os.environ.get("FAKE_SAP_CI_READY"):
            cls.ready = json.loads(os.environ["FAKE_SAP_CI_READY"])
        else:
            cls.proc, cls.ready = start_fake()
        cls.defaults = http("GET", cls.ready["control"] + "/settings").json()

    @classmethod
    def tearDownClass(cls):
        if cls.proc:
            stop_fake(cls.proc)

    def setUp(self):
        self.c = Client(self.ready)
        self.control = self.ready["control"]

    def tearDown(self):
        # Each test leaves the fake's settings as it found them.
        http("POST", self.control + "/settings", self.defaults)

    # -- helpers ------------------------------------------------------------------------------

    def set(self, **settings):
        r = http("POST", self.control + "/settings", settings)
        self.assertEqual(r.status, 200, r.body)

    def generate(self, alias, **extra) -> Response:
        body = {"Hexalias": "00", "Alias": alias, "KeyType": "RSA", "KeySize": 2048,
                "SignatureAlgorithm": "SHA256/RSA", "CommonName": alias, "Country": "DE"}
        body.update(extra)
        return self.c.call("POST", "/KeyPairGenerationRequests", body)

    def entry(self, alias) -> dict:
        r = self.c.call("GET", f"/KeystoreEntries('{hexa(alias)}')")
        self.assertEqual(r.status, 200, r.body)
        return r.json()["d"]

    def cert(self, alias) -> x509.Certificate:
        r = self.c.call("GET", f"/KeystoreEntries('{hexa(alias)}')/Certificate/$value", accept=None)
        self.assertEqual(r.status, 200, r.body)
        return x509.load_pem_x509_certificate(r.body)

    def assert_error(self, r: Response, status: int, code: str, value):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.json(), {"error": {"code": code, "message": {"lang": "en", "value": value}}})

    def sign(self, payload=b"probe") -> Response:
        return http("POST", f"{self.control}/runtime/{FLOW}/sign", payload)

    def deploy_and_wait(self) -> tuple[str, list[str]]:
        r = self.c.call("POST", f"/DeployIntegrationDesigntimeArtifact?Id='{FLOW}'&Version='active'", accept=None)
        self.assertEqual(r.status, 202, r.body)
        task = r.text()
        self.task_statuses = [self.c.call("GET", f"/BuildAndDeployStatus(TaskId='{task}')").json()["d"]["Status"]]
        statuses = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = self.c.call("GET", f"/IntegrationRuntimeArtifacts('{FLOW}')?$select=Status")
            status = s.json()["d"]["Status"] if s.status == 200 else str(s.status)
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            if status in ("STARTED", "ERROR"):
                break
            time.sleep(0.05)
        return task, statuses

    def set_signer_alias(self, alias):
        r = self.c.call("PUT", f"/IntegrationDesigntimeArtifacts(Id='{FLOW}',Version='active')"
                        f"/$links/Configurations('SIGNER_ALIAS')",
                        {"ParameterValue": alias, "DataType": "xsd:string"})
        self.assertEqual(r.status, 202, r.body)

    # -- A1: OAuth ----------------------------------------------------------------------------

    def test_a1_token_required_and_issued_for_client_credentials(self):
        r = http("GET", self.c.api + "/KeystoreEntries", None, {"Accept": "application/json"})
        self.assertEqual(r.status, 401)
        r = http("GET", self.c.api + "/KeystoreEntries", None, {"Authorization": "Bearer nonsense"})
        self.assertEqual(r.status, 401)
        bad = http("POST", self.ready["tokenurl"] + "?grant_type=client_credentials", b"",
                   {"Authorization": "Basic " + base64.b64encode(b"fake-client:wrong").decode()})
        self.assertEqual(bad.status, 401)
        # The client id and secret also work as form fields (S-SAPCICD sends both).
        form = f"grant_type=client_credentials&client_id={self.c.cid}&client_secret={self.c.secret}"
        r = http("POST", self.ready["tokenurl"], form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200, r.body)
        tok = self.c.token()
        self.assertEqual(tok["token_type"], "bearer")
        self.assertIsInstance(tok["expires_in"], int)
        self.assertGreater(tok["expires_in"], 0)
        self.assertEqual(self.c.call("GET", "/KeystoreEntries").status, 200)
        # bearer is matched case-insensitively as a scheme
        r = http("GET", self.c.api + "/KeystoreEntries", None, {"Authorization": "bearer " + self.c.bearer})
        self.assertEqual(r.status, 200)

    def test_a1_tokens_expire_roles_are_enforced_and_the_service_key_nests_as_configured(self):
        proc, ready = start_fake("--token-ttl", "1", "--roles", "MonitoringDataRead",
                                 "--client-id", "other", "--client-secret", "s3cret",
                                 "--set", "service_key_form=nested")
        try:
            self.assertIn("oauth", ready["service_key"])
            self.assertEqual(ready["service_key"]["oauth"]["clientid"], "other")
            c = Client(ready)
            tok = c.token()
            self.assertEqual(tok["expires_in"], 1)
            self.assertEqual(tok["scope"], "MonitoringDataRead")
            self.assertEqual(c.call("GET", "/KeystoreEntries").status, 200)
            # SecurityMaterialEdit is missing: 403 in SAP's shape, the fake names the role.
            r = c.call("DELETE", f"/KeystoreEntries('{hexa('signer')}')")
            self.assert_error(r, 403, "Forbidden", None)
            self.assertEqual(r.headers.get("X-Fake-Missing-Role"), "SecurityMaterialEdit")
            time.sleep(1.2)
            self.assertEqual(c.call("GET", "/KeystoreEntries").status, 401)
        finally:
            stop_fake(proc)

    # -- A3: CSRF -----------------------------------------------------------------------------

    def test_a3_csrf_required_mode_wants_token_and_session_cookie(self):
        self.set(csrf="required")
        alias = "csrf_required"
        r = self.c.call("POST", "/KeyPairGenerationRequests", {"Alias": alias}, csrf=False)
        self.assertEqual(r.status, 403)
        self.assertEqual(r.headers.get("X-CSRF-Token"), "Required")
        fetched = self.c.fetch_csrf()
        self.assertEqual(fetched.status, 200)
        self.assertTrue(self.c.csrf)
        self.assertIn("JSESSIONID=", fetched.headers.get("Set-Cookie"))
        # The token without its session cookie is refused.
        cookie, self.c.cookie = self.c.cookie, None
        self.assertEqual(self.generate(alias).status, 403)
        self.c.cookie = cookie
        self.assertEqual(self.generate(alias).status, 204)
        # The sessions end (as a real session would time out): 403, a new fetch, then success.
        http("POST", self.control + "/csrf/invalidate", {})
        self.assertEqual(self.c.call("DELETE", f"/KeystoreEntries('{hexa(alias)}')").status, 403)
        self.c.fetch_csrf()
        self.assertEqual(self.c.call("DELETE", f"/KeystoreEntries('{hexa(alias)}')").status, 204)
        # D1 variant: the 403 without `X-CSRF-Token: Required`.
        self.set(csrf_failure="plain")
        r = self.c.call("DELETE", f"/KeystoreEntries('{hexa(alias)}')", csrf=False)
        self.assertEqual(r.status, 403)
        self.assertIsNone(r.headers.get("X-CSRF-Token"))

    def test_a3_csrf_optional_mode_accepts_bearer_only_writes(self):
        self.set(csrf="optional")
        r = self.generate("csrf_optional")
        self.assertEqual(r.status, 204, r.body)
        r = self.c.call("DELETE", f"/KeystoreEntries('{hexa('csrf_optional')}')", csrf=False)
        self.assertEqual(r.status, 204, r.body)
        audit = http("GET", self.control + "/audit").json()["calls"]
        last = [a for a in audit if a["method"] == "DELETE"][-1]
        self.assertTrue(last["bearer"])
        self.assertIsNone(last["csrf_token"])
        self.assertFalse(last["session_cookie"])

    # -- A4: hex aliases ----------------------------------------------------------------------

    def test_a4_hex_alias_is_case_insensitive_and_returned_uppercase(self):
        lower = self.c.call("GET", "/KeystoreEntries('7369676e6572')")
        upper = self.c.call("GET", "/KeystoreEntries('7369676E6572')")
        self.assertEqual(lower.status, 200)
        self.assertEqual(lower.json()["d"]["Hexalias"], "7369676E6572")
        self.assertEqual(lower.json()["d"]["Alias"], "signer")
        self.assertEqual(upper.json()["d"]["FingerprintSha256"], lower.json()["d"]["FingerprintSha256"])
        self.assert_error(self.c.call("GET", "/KeystoreEntries('736')"), 500, "Internal Server Error",
                          "hexBinary needs to be even-length: 736")
        self.assert_error(self.c.call("GET", f"/KeystoreEntries('{hexa('absent')}')"), 404, "Not Found",
                          "Alias 'absent' not found in the keystore")
        # The docs' example: `my alias` -> 6D7920616C696173.
        self.assertEqual(self.generate("my alias").status, 204)
        self.assertEqual(self.entry("my alias")["Hexalias"], "6D7920616C696173")
        self.c.call("DELETE", "/KeystoreEntries('6d7920616c696173')")
        # UTF-8 bytes, not code points.
        self.assertEqual(self.generate("schlüssel").status, 204)
        self.assertEqual(self.entry("schlüssel")["Hexalias"], "7363686CC3BC7373656C")
        self.c.call("DELETE", "/KeystoreEntries('7363686cc3bc7373656c')")

    def test_a7_keystore_size_limit_gives_413_and_writes_nothing(self):
        size = len(self.c.call("GET", "/KeystoreEntries").json()["d"]["results"])
        self.set(keystore_limit_bytes=1000)
        r = self.generate("too_big")
        self.assertEqual(r.status, 413, r.body)
        self.assertEqual(r.json()["error"]["code"], "Request Entity Too Large")
        self.set(keystore_limit_bytes=self.defaults["keystore_limit_bytes"])
        self.assertEqual(self.c.call("GET", f"/KeystoreEntries('{hexa('too_big')}')").status, 404)
        self.assertEqual(len(self.c.call("GET", "/KeystoreEntries").json()["d"]["results"]), size)

    def test_a4_reserved_and_bad_aliases(self):
        r = self.generate("sap_mine")
        self.assert_error(r, 403, "Forbidden", None)
        self.set(forbidden_body="bare")
        r = self.generate("hcicertificate")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json(), {"code": "Forbidden", "message": {"lang": "en", "value": None}})
        self.assertEqual(self.generate("a" * 251).status, 400)
        self.assertEqual(self.generate("with/slash").status, 400)

    # -- A2: formats --------------------------------------------------------------------------

    def test_a2_xml_by_default_json_on_accept_or_format(self):
        xml = self.c.call("GET", f"/KeystoreEntries('{hexa('signer')}')", accept=None)
        self.assertEqual(xml.status, 200)
        self.assertTrue(xml.headers["Content-Type"].startswith("application/atom+xml"))
        props = ET.fromstring(xml.body).find(".//" + M + "properties")
        self.assertEqual(props.find(D + "Alias").text, "signer")
        self.assertEqual(props.find(D + "Hexalias").text, "7369676E6572")
        self.assertRegex(props.find(D + "ValidNotAfter").text, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        feed = self.c.call("GET", "/KeystoreEntries", accept="application/xml")
        self.assertIn("<feed", feed.text())
        js = self.c.call("GET", f"/KeystoreEntries('{hexa('signer')}')")
        self.assertTrue(js.headers["Content-Type"].startswith("application/json"))
        d = js.json()["d"]
        cert = self.cert("signer")
        self.assertEqual(DATE_RE.match(d["ValidNotAfter"]).group(1), str(ms_of(cert.not_valid_after_utc)))
        self.assertEqual(DATE_RE.match(d["ValidNotBefore"]).group(1), str(ms_of(cert.not_valid_before_utc)))
        self.assertRegex(d["LastModifiedTime"], DATE_RE)
        self.assertEqual(d["FingerprintSha256"],
                         ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256())))
        self.assertEqual(d["SerialNumber"], "0x%X" % cert.serial_number)
        self.assertEqual((d["Type"], d["Owner"], d["KeyType"], d["KeySize"]), ("Key Pair", "Tenant Administrator", "RSA", 2048))
        self.assertEqual(d["ChainCertificates"], {"__deferred": {"uri": d["__metadata"]["uri"] + "/ChainCertificates"}})
        fmt = self.c.call("GET", "/KeystoreEntries?$format=json&$select=Alias,Hexalias", accept=None)
        results = fmt.json()["d"]["results"]
        self.assertIn("signer", [x["Alias"] for x in results])
        self.assertEqual({k for k in results[0] if k != "__metadata"}, {"Alias", "Hexalias"})
        ks = self.c.call("GET", "/Keystores('system')?$expand=Entries&$select=LastModifiedTime,Entries").json()["d"]
        self.assertRegex(ks["LastModifiedTime"], DATE_RE)
        self.assertIn("signer", [x["Alias"] for x in ks["Entries"]["results"]])
        size = self.c.call("GET", "/Keystores('system')/Size/$value", accept=None)
        self.assertEqual(int(size.text()), len(self.c.call("GET", "/KeystoreEntries").json()["d"]["results"]))

    def test_a2_error_bodies_in_json_and_xml(self):
        self.assertEqual(self.generate("dup_alias").status, 204)
        self.assert_error(self.generate("dup_alias"), 400, "Bad Request",
                          'Keystore entry with alias "dup_alias" already exists')
        xml = self.c.call("GET", f"/KeystoreEntries('{hexa('absent')}')", accept=None)
        self.assertEqual(xml.status, 404)
        root = ET.fromstring(xml.body)
        self.assertEqual(root.tag, M + "error")
        self.assertEqual(root.find(M + "code").text, "Not Found")
        self.assertEqual(root.find(M + "message").text, "Alias 'absent' not found in the keystore")
        self.c.call("DELETE", f"/KeystoreEntries('{hexa('dup_alias')}')")

    # -- A3/A7: keystore lock -----------------------------------------------------------------

    def test_a7_injected_keystore_lock_then_success(self):
        r = http("POST", self.control + "/faults", {"status": 503, "calls": 2})
        self.assertEqual(r.status, 200)
        for _ in range(2):
            self.assert_error(self.generate("after_lock"), 503, "Service Unavailable",
                              "Keystore is locked by another user")
        # Reads are not locked; the third write goes through.
        self.assertEqual(self.c.call("GET", "/KeystoreEntries").status, 200)
        self.assertEqual(self.generate("after_lock").status, 204)
        http("POST", self.control + "/faults", {"status": 429, "calls": 1})
        r = self.c.call("DELETE", f"/KeystoreEntries('{hexa('after_lock')}')")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.headers.get("Retry-After"), "1")
        self.assertEqual(self.c.call("DELETE", f"/KeystoreEntries('{hexa('after_lock')}')").status, 204)

    # -- A7: key pair generation, CSR, chain --------------------------------------------------

    def test_a7_key_pair_generation_request(self):
        nb = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        na = dt.datetime(2028, 1, 1, tzinfo=dt.timezone.utc)
        r = self.c.call("POST", "/KeyPairGenerationRequests?returnKeystoreEntries=true", {
            "Hexalias": "any dummy hex encoded value", "Alias": "gen_one", "KeyType": "RSA",
            "SignatureAlgorithm": "SHA-256/RSA", "KeySize": 2048, "CommonName": "gen.example",
            "OrganizationUnit": "Unit", "Organization": "Org", "Locality": "Loc", "State": "St",
            "Country": "DE", "Email": "a@b.example",
            "ValidNotBefore": f"/Date({ms_of(nb)})/", "ValidNotAfter": f"/Date({ms_of(na)})/"})
        self.assertEqual(r.status, 200, r.body)
        results = r.json()["d"]["results"]
        self.assertIn("signer", [x["Alias"] for x in results])  # the current entries, all of them
        e = next(x for x in results if x["Alias"] == "gen_one")
        self.assertEqual((e["Alias"], e["Hexalias"], e["Type"], e["KeySize"]), ("gen_one", hexa("gen_one").upper(), "Key Pair", 2048))
        self.assertEqual(e["ValidNotAfter"], f"/Date({ms_of(na)})/")
        self.assertIn("CN=gen.example", e["SubjectDN"])
        self.assertEqual(e["SignatureAlgorithm"], "SHA256withRSA")
        self.assertEqual(e["Status"], "new")
        self.assertEqual(self.entry("gen_one")["Status"], "unchanged")
        # Both spellings by default (D4); each switch refuses the other.
        self.assertEqual(self.generate("gen_two", SignatureAlgorithm="SHA256/RSA").status, 204)
        self.set(keygen_algorithms="dash")
        self.assertEqual(self.generate("gen_three", SignatureAlgorithm="SHA256/RSA").status, 400)
        self.set(keygen_algorithms="nodash")
        self.assertEqual(self.generate("gen_three", SignatureAlgorithm="SHA-256/RSA").status, 400)
        self.assertEqual(self.generate("gen_four", Country="").status, 400)
        self.assertEqual(self.generate("gen_four", CommonName="").status, 400)
        for a in ("gen_one", "gen_two"):
            self.c.call("DELETE", f"/KeystoreEntries('{hexa(a)}')")

    def test_a7_csr_download_and_signed_chain_upload(self):
        alias = "ca_signed"
        self.assertEqual(self.generate(alias).status, 204)
        r = self.c.call("GET", f"/KeystoreEntries('{hexa(alias)}')/SigningRequest/$value", accept=None)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Content-Type"], "application/pkcs10")
        csr = x509.load_pem_x509_csr(r.body)
        self.assertTrue(csr.is_signature_valid)
        own = self.cert(alias)
        self.assertEqual(csr.public_key().public_numbers(), own.public_key().public_numbers())
        self.set(csr_format="der")
        der = self.c.call("GET", f"/KeystoreEntries('{hexa(alias)}')/SigningRequest/$value", accept=None)
        self.assertEqual(x509.load_der_x509_csr(der.body).public_key().public_numbers(), own.public_key().public_numbers())
        # A CA issues the certificate for the CSR.
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contract Test CA")])
        now = dt.datetime.now(dt.timezone.utc)
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(1)
              .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        leaf = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name)
                .public_key(csr.public_key()).serial_number(2)
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=20))
                .sign(ca_key, hashes.SHA256()))
        pem_chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
        path = f"/CertificateChainResources('{hexa(alias)}')/$value"
        # A chain for another key is refused.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        wrong = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name)
                 .public_key(other.public_key()).serial_number(3)
                 .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
        r = self.c.call("PUT", path, wrong.public_bytes(serialization.Encoding.PEM), accept="application/json")
        self.assertEqual(r.status, 400)
        # The CA is unknown to the keystore: 409 notTrusted, then accepted with fingerprintVerified.
        r = self.c.call("PUT", path, pem_chain)
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(r.json()["d"]["Validity"], "notTrusted")
        r = self.c.call("PUT", path + "?fingerprintVerified=true", pem_chain)
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(self.cert(alias).fingerprint(hashes.SHA256()), leaf.fingerprint(hashes.SHA256()))
        chain = self.c.call("GET", f"/KeystoreEntries('{hexa(alias)}')/ChainCertificates").json()["d"]["results"]
        self.assertEqual([(x["Index"], x["SubjectDN"]) for x in chain], [(0, dn_of(leaf)), (1, "CN=Contract Test CA")])
        # With the CA imported as a trusted certificate, PKCS#7 upload needs no fingerprintVerified.
        r = self.c.call("PUT", f"/CertificateResources('{hexa('contract_ca')}')/$value",
                        ca.public_bytes(serialization.Encoding.DER), headers={"Content-Type": "application/pkix-cert"})
        self.assertEqual(r.status, 204, r.body)
        p7 = self.c.call("GET", f"/KeystoreEntries('{hexa(alias)}')/ChainResource/$value", accept=None).body
        r = self.c.call("PUT", path, p7, headers={"Content-Type": "application/pkcs7-mime"})
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(self.c.call("PUT", path, b"x", headers={"Content-Type": "image/png"}).status, 415)
        for a in (alias, "contract_ca"):
            self.c.call("DELETE", f"/KeystoreEntries('{hexa(a)}')")

    def test_a7_pkcs12_import_and_update_keeps_the_alias(self):
        alias = "p12_alias"

        def p12(password=b"pw"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, alias)])
            now = dt.datetime.now(dt.timezone.utc)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now)
                    .not_valid_after(now + dt.timedelta(days=10)).sign(key, hashes.SHA256()))
            data = pkcs12.serialize_key_and_certificates(alias.encode(), key, cert, None,
                                                         serialization.BestAvailableEncryption(password))
            return cert, base64.b64encode(data).decode()

        first, res1 = p12()
        body = {"Hexalias": "00", "Alias": alias, "Password": "pw", "Resource": res1}
        self.assertEqual(self.c.call("POST", "/KeyPairResources?update=true", body).status, 400)
        self.assertEqual(self.c.call("POST", "/KeyPairResources", body).status, 204)
        self.assertEqual(self.cert(alias), first)
        self.assert_error(self.c.call("POST", "/KeyPairResources", body), 400, "Bad Request",
                          f'Keystore entry with alias "{alias}" already exists')
        second, res2 = p12()
        r = self.c.call("POST", "/KeyPairResources?update=true&returnKeystoreEntries=true", dict(body, Resource=res2))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual([x["Status"] for x in r.json()["d"]["results"] if x["Alias"] == alias], ["changed"])
        self.assertEqual(self.cert(alias), second)
        self.assertEqual(self.entry(alias)["Type"], "Key Pair")
        self.assertEqual(self.c.call("POST", "/KeyPairResources?update=true", dict(body, Password="bad")).status, 400)
        r = self.c.call("POST", "/KeyPairResources?update=true", dict(body, Resource=base64.b64encode(b"not p12").decode()))
        self.assertEqual(r.status, 415)
        self.c.call("DELETE", f"/KeystoreEntries('{hexa(alias)}')")

    def test_a7_rename_delete_and_mass_delete(self):
        self.assertEqual(self.generate("old_name").status, 204)
        before = self.entry("old_name")["FingerprintSha256"]
        path = f"/KeystoreEntries('{hexa('old_name')}')"
        self.assertEqual(self.c.call("PUT", path + "?renameAlias=new_name", {"Status": "x"}).status, 400)
        self.assertEqual(self.c.call("PUT", path + "?renameAlias=signer", {"Status": None}).status, 400)
        self.assertEqual(self.c.call("PUT", path + "?renameAlias=new_name", {"Status": None}).status, 204)
        self.assertEqual(self.c.call("GET", path).status, 404)
        self.assertEqual(self.entry("new_name")["FingerprintSha256"], before)
        r = self.c.call("PUT", f"/KeystoreEntries('{hexa('new_name')}')?renameAlias=third%20name&returnHexAlias=true",
                        {"Status": None})
        self.assertEqual((r.status, r.text()), (200, f"[{hexa('third name').upper()}]"))
        self.assertEqual(self.c.call("DELETE", f"/KeystoreEntries('{hexa('third name')}')").status, 204)
        self.assertEqual(self.c.call("DELETE", f"/KeystoreEntries('{hexa('third name')}')").status, 404)
        sap = hexa("sap_cloudintegrationcertificate")
        self.assert_error(self.c.call("DELETE", f"/KeystoreEntries('{sap}')"), 403, "Forbidden", None)
        for a in ("mass;one", "mass_two"):
            self.assertEqual(self.generate(a).status, 204)
        r = self.c.call("PUT", "/KeystoreResources('system')?deleteEntries=true", {"Aliases": "mass\\;one;mass_two;absent"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(sorted(x["Alias"] for x in r.json()["d"]["results"] if x["Status"] == "removed"),
                         ["mass;one", "mass_two"])
        self.assertEqual(self.c.call("GET", f"/KeystoreEntries('{hexa('mass_two')}')").status, 404)

    def test_a7_keystore_backup_and_restore(self):
        self.assertEqual(self.generate("backed_up").status, 204)
        r = self.c.call("POST", "/KeystoreResources", {"Name": "backup_admin_system"})
        self.assertEqual(r.status, 204, r.body)
        backup = self.c.call("GET", "/KeystoreEntries?keystoreName=backup_admin_system").json()["d"]["results"]
        aliases = [x["Alias"] for x in backup]
        self.assertIn("backed_up", aliases)
        self.assertNotIn("sap_cloudintegrationcertificate", aliases)
        fp = self.entry("backed_up")["FingerprintSha256"]
        self.c.call("DELETE", f"/KeystoreEntries('{hexa('backed_up')}')")
        r = self.c.call("PUT", "/KeystoreResources('system')?retrieveBackup=backup_admin_system", {"Resource": None})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.entry("backed_up")["FingerprintSha256"], fp)
        self.c.call("DELETE", f"/KeystoreEntries('{hexa('backed_up')}')")

    # -- A8/A9: parameters, deploy, runtime ---------------------------------------------------

    def test_a8_parameters_deploy_and_runtime_signing(self):
        cfg = f"/IntegrationDesigntimeArtifacts(Id='{FLOW}',Version='active')/Configurations"
        self.assertEqual(self.generate("signer_next").status, 204)
        old_cert, new_cert = self.cert("signer"), self.cert("signer_next")
        r = self.sign(b"before")
        self.assertEqual(r.status, 200, r.body)
        v = openssl_verify(r.body, [old_cert])
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertEqual(v.content, b"before")

        # Designtime changes; the runtime does not, until a deploy.
        self.set_signer_alias("signer_next")
        params = self.c.call("GET", cfg + "?$filter=ParameterKey eq 'SIGNER_ALIAS'".replace(" ", "%20")).json()["d"]["results"]
        self.assertEqual([(p["ParameterKey"], p["ParameterValue"], p["DataType"]) for p in params],
                         [("SIGNER_ALIAS", "signer_next", "xsd:string")])
        r = self.sign(b"still old")
        self.assertEqual(r.headers["X-Fake-Signer-Aliases"], "signer")
        self.assertEqual(openssl_verify(r.body, [old_cert]).returncode, 0)
        self.assertNotEqual(openssl_verify(r.body, [new_cert]).returncode, 0)
        self.assertEqual(http("GET", self.control + "/state").json()["iflows"][FLOW]["deployed"]["SIGNER_ALIAS"], "signer")
        self.assertEqual(self.c.call("PUT", cfg.replace("/Configurations", "/$links/Configurations('NOT_THERE')"),
                                     {"ParameterValue": "x"}).status, 404)

        # Deploy is asynchronous: a task, DEPLOYING then SUCCESS; the runtime STARTING then STARTED.
        self.set(deploy_seconds=1.0, start_seconds=1.0)
        task, statuses = self.deploy_and_wait()
        self.assertEqual(self.task_statuses[0], "DEPLOYING")
        self.assertEqual(statuses[-1], "STARTED", statuses)
        self.assertIn("STARTING", statuses)
        st = self.c.call("GET", f"/BuildAndDeployStatus(TaskId='{task}')").json()["d"]
        self.assertEqual((st["TaskId"], st["Status"]), (task, "SUCCESS"))
        rt = self.c.call("GET", f"/IntegrationRuntimeArtifacts('{FLOW}')").json()["d"]
        self.assertEqual((rt["Type"], rt["Version"]), ("INTEGRATION_FLOW", "1.0.0"))
        self.assertRegex(rt["DeployedOn"], DATE_RE)
        r = self.sign(b"after deploy")
        self.assertEqual(r.headers["X-Fake-Signer-Aliases"], "signer_next")
        v = openssl_verify(r.body, [new_cert])
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertEqual([c.fingerprint(hashes.SHA256()) for c in v.signers], [new_cert.fingerprint(hashes.SHA256())])

        # A deploy that ends in ERROR: the message is readable and the runtime signs nothing.
        http("POST", self.control + "/deploy-failure", {"message": "Bundle could not be started"})
        _, statuses = self.deploy_and_wait()
        self.assertEqual(statuses[-1], "ERROR")
        err = self.c.call("GET", f"/IntegrationRuntimeArtifacts('{FLOW}')/ErrorInformation/$value", accept=None)
        self.assertIn("Bundle could not be started", err.text())
        errors = self.c.call("GET", "/IntegrationRuntimeArtifacts?$filter=Status%20eq%20'ERROR'").json()["d"]["results"]
        self.assertEqual([x["Id"] for x in errors], [FLOW])
        r = self.sign()
        self.assertEqual(r.status, 503)
        self.assertIn("ERROR", r.json()["error"]["message"]["value"])

        # Back to the original alias, redeployed.
        self.set_signer_alias("signer")
        _, statuses = self.deploy_and_wait()
        self.assertEqual(statuses[-1], "STARTED")
        self.assertEqual(self.sign().headers["X-Fake-Signer-Aliases"], "signer")
        self.c.call("DELETE", f"/KeystoreEntries('{hexa('signer_next')}')")

    def test_a8_deploy_variants_and_not_deployed(self):
        self.set(deploy_response="json", deploy_status_case="title", deploy_seconds=0.0, start_seconds=0.0)
        r = self.c.call("POST", f"/DeployIntegrationDesigntimeArtifact?Id='{FLOW}'&Version='active'")
        self.assertEqual(r.status, 202)
        task = r.json()["d"]["TaskId"]
        self.assertEqual(self.c.call("GET", f"/BuildAndDeployStatus(TaskId='{task}')").json()["d"]["Status"], "Success")
        # A build failure: the task FAILs and the runtime is in ERROR; a clean deploy restores it.
        http("POST", self.control + "/deploy-failure", {"message": "Build failed", "stage": "build"})
        task = self.c.call("POST", f"/DeployIntegrationDesigntimeArtifact?Id='{FLOW}'&Version='active'").json()["d"]["TaskId"]
        self.assertEqual(self.c.call("GET", f"/BuildAndDeployStatus(TaskId='{task}')").json()["d"]["Status"], "Fail")
        self.assertEqual(self.c.call("GET", f"/IntegrationRuntimeArtifacts('{FLOW}')").json()["d"]["Status"], "ERROR")
        self.c.call("POST", f"/DeployIntegrationDesigntimeArtifact?Id='{FLOW}'&Version='active'")
        self.assertEqual(self.c.call("GET", f"/IntegrationRuntimeArtifacts('{FLOW}')").json()["d"]["Status"], "STARTED")
        # Quotes must not be percent-encoded (A8, S-CONTIVA).
        r = self.c.call("GET", f"/IntegrationDesigntimeArtifacts(Id=%27{FLOW}%27,Version=%27active%27)")
        self.assertEqual(r.status, 400)
        self.assertEqual(self.c.call("GET", "/IntegrationRuntimeArtifacts('Never_Deployed')").status, 404)
        self.assertEqual(self.c.call("POST", "/DeployIntegrationDesigntimeArtifact?Id='Nope'&Version='active'").status, 404)
        # Undeploy: 202, STOPPING, then 404 (polled, as S-SAPCICD does); the runtime signs nothing.
        self.set(stop_seconds=1.0)
        self.assertEqual(self.c.call("DELETE", f"/IntegrationRuntimeArtifacts('{FLOW}')").status, 202)
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.c.call("GET", f"/IntegrationRuntimeArtifacts('{FLOW}')")
            seen.append(r.json()["d"]["Status"] if r.status == 200 else r.status)
            if r.status == 404:
                break
            time.sleep(0.05)
        self.assertEqual((seen[0], seen[-1]), ("STOPPING", 404))
        self.assertEqual(self.sign().status, 404)
        self.c.call("POST", f"/DeployIntegrationDesigntimeArtifact?Id='{FLOW}'&Version='active'")
        self.assertEqual(self.sign().status, 200)

    def test_a9_runtime_signs_with_the_current_keystore(self):
        # A PKCS#12 update keeps the alias: the deployed flow signs with the new key at once.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer replaced")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
                .not_valid_after(now + dt.timedelta(days=10)).sign(key, hashes.SHA256()))
        res = base64.b64encode(pkcs12.serialize_key_and_certificates(
            b"signer", key, cert, None, serialization.BestAvailableEncryption(b"pw"))).decode()
        old = self.cert("signer")
        r = self.c.call("POST", "/KeyPairResources?update=true",
                        {"Hexalias": "00", "Alias": "signer", "Password": "pw", "Resource": res})
        self.assertEqual(r.status, 204, r.body)
        signed = self.sign(b"new key")
        self.assertEqual(openssl_verify(signed.body, [cert]).returncode, 0)
        self.assertNotEqual(openssl_verify(signed.body, [old]).returncode, 0)
        # D6: with a sync delay the runtime keeps the previous key for a while.
        self.set(keystore_sync_seconds=2.0)
        time.sleep(2.1)  # the runtime has seen `cert` by now
        self.c.call("POST", "/KeyPairResources?update=true",
                    {"Hexalias": "00", "Alias": "signer", "Password": "pw", "Resource": self.pkcs12_of_new_key()[1]})
        self.assertEqual(openssl_verify(self.sign().body, [cert]).returncode, 0)
        time.sleep(2.1)
        self.assertNotEqual(openssl_verify(self.sign().body, [cert]).returncode, 0)

    def pkcs12_of_new_key(self):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
                .not_valid_after(now + dt.timedelta(days=10)).sign(key, hashes.SHA256()))
        return cert, base64.b64encode(pkcs12.serialize_key_and_certificates(
            b"signer", key, cert, None, serialization.BestAvailableEncryption(b"pw"))).decode()

    def test_a9_two_signer_rows_and_a_missing_alias(self):
        # Procedure 3's set-up: two rows, the second alias not yet in the keystore (D3).
        rows = {"rows": [
            {"alias": "${property.signerAlias}", "algorithm": "SHA256/RSA"},
            {"alias": "${property.secondAlias}", "algorithm": "SHA-512/RSA"},
        ], "properties": {"secondAlias": "{{SECOND_ALIAS}}"}}
        self.assertEqual(http("POST", f"{self.control}/iflows/{FLOW}/signer", rows).status, 200)
        self.assertEqual(http("POST", f"{self.control}/iflows/{FLOW}/parameters", {"SECOND_ALIAS": "second"}).status, 200)
        try:
            _, statuses = self.deploy_and_wait()
            self.assertEqual(statuses[-1], "STARTED")
            r = self.sign()
            self.assertEqual((r.status, r.headers["X-Fake-Signer-Aliases"]), (200, "signer"))
            self.set(missing_signer_alias="fail")
            r = self.sign()
            self.assertEqual(r.status, 500)
            self.assertIn("'second'", r.json()["error"]["message"]["value"])
            # The second key arrives by hand in the tenant UI: two signatures at once, no deploy.
            r = http("POST", self.control + "/keystore/generate", {"alias": "second", "key_size": 2048})
            self.assertEqual(r.status, 200, r.body)
            r = self.sign(b"two")
            self.assertEqual(r.headers["X-Fake-Signer-Aliases"], "signer,second")
            v = openssl_verify(r.body, [self.cert("signer"), self.cert("second")])
            self.assertEqual(v.returncode, 0, v.stderr)
            self.assertEqual(len(v.signers), 2)
            self.assertNotEqual(openssl_verify(r.body, [self.cert("signer")]).returncode, 0)
            # Someone replaces the key under `second` by hand: same alias, another key, signing at once.
            before = self.cert("second")
            r = http("POST", self.control + "/keystore/replace", {"alias": "second"})
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(self.entry("second")["LastModifiedBy"], "tenant UI (by hand)")
            after = self.cert("second")
            self.assertNotEqual(after, before)
            v = openssl_verify(self.sign().body, [self.cert("signer"), after])
            self.assertEqual(v.returncode, 0, v.stderr)
            audit = http("GET", self.control + "/audit").json()["calls"]
            self.assertLessEqual({"generate", "replace"}, {a.get("by_hand") for a in audit})
        finally:
            http("POST", f"{self.control}/iflows/{FLOW}/signer",
                 {"rows": [{"alias": "${property.signerAlias}", "algorithm": "SHA256/RSA"}]})
            self.deploy_and_wait()
            http("POST", self.control + "/keystore/delete", {"alias": "second"})

    def test_a9_signer_cell_externalization_is_a_switch(self):
        # D2: `{{param}}` directly in the alias cell.
        rows = {"rows": [{"alias": "{{SIGNER_ALIAS}}", "algorithm": "SHA256/RSA"}]}
        http("POST", f"{self.control}/iflows/{FLOW}/signer", rows)
        try:
            _, statuses = self.deploy_and_wait()
            self.assertEqual(statuses[-1], "ERROR")
            self.set(signer_cell_params="accept")
            _, statuses = self.deploy_and_wait()
            self.assertEqual(statuses[-1], "STARTED")
            self.assertEqual(self.sign().headers["X-Fake-Signer-Aliases"], "signer")
        finally:
            http("POST", f"{self.control}/iflows/{FLOW}/signer",
                 {"rows": [{"alias": "${property.signerAlias}", "algorithm": "SHA256/RSA"}]})
            self.deploy_and_wait()

    def test_fake_audit_records_calls(self):
        since = max([a["seq"] for a in http("GET", self.control + "/audit").json()["calls"]] or [0])
        self.c.call("GET", "/KeystoreEntries")
        calls = http("GET", f"{self.control}/audit?since={since}").json()["calls"]
        self.assertEqual([(a["method"], a["path"], a["status"]) for a in calls if a["path"].startswith("/api")][-1:],
                         [("GET", "/api/v1/KeystoreEntries", 200)])


def dn_of(cert: x509.Certificate) -> str:
    return ", ".join(reversed(cert.subject.rfc4514_string().split(",")))


if __name__ == "__main__":
    unittest.main()
