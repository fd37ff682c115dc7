#!/usr/bin/env python3
"""FAKE SAP Cloud Integration tenant, for tests only. It is not SAP software and not a client.

Written from the contract in `../shared/design/CONNECTORS.md` part A (sections named in the
comments, e.g. "A7"), not from rekey's client, so that tests of the client judge it against
what the tenant documents. Where CONNECTORS.md marks a point unconfirmed (section D), the fake
supports each variant behind a setting (see SETTINGS_HELP and README.md).

What it serves, on 127.0.0.1 only:
- `POST /oauth/token` -- OAuth client-credentials tokens (A1);
- `/api/v1/...` -- the Security Content keystore endpoints (A4-A7) and the Integration Content
  endpoints for externalized parameters, deploy and runtime status (A8), OData V2 style (A2),
  with CSRF (A3) and keystore-lock answers;
- `/fake/...` -- FAKE-ONLY control endpoints for tests (settings, fault injection, changes made
  "by hand" as a person in the tenant UI would, the audit of calls received) and the fake
  runtime, which signs a payload as the deployed PKCS#7/CMS Signer step would (A9): with the
  *deployed* configuration and the keystore's *current* keys.

Once it listens it prints one JSON line on stdout:
`{"fake": "sap-ci", "url": ..., "api": ..., "tokenurl": ..., "control": ..., "service_key": ...}`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import datetime as dt
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape as xml_escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

API = "/api/v1"
TOKEN_PATH = "/oauth/token"
FAKE = "/fake"

# A1: the role templates a call needs.
ROLE_READ = "MonitoringDataRead"
ROLE_KEYSTORE_EDIT = "SecurityMaterialEdit"
ROLE_CONFIGURE = "WorkspacePackagesConfigure"
ROLE_DEPLOY = "WorkspaceArtifactsDeploy"
ALL_ROLES = [ROLE_READ, ROLE_KEYSTORE_EDIT, ROLE_CONFIGURE, ROLE_DEPLOY]

# Settings a test may change at run time (POST /fake/settings) or on the command line.
# Each unconfirmed point of CONNECTORS.md D is one setting; the first value listed is the default.
SETTINGS_HELP = {
    "csrf": ("required", "optional"),  # A3, D1: token + session cookie enforced, or not for Bearer
    "csrf_failure": ("required-header", "plain"),  # D1: 403 with `X-CSRF-Token: Required` or without
    "forbidden_body": ("wrapped", "bare"),  # A2: 403 body with or without the `error` wrapper
    "keygen_algorithms": ("both", "dash", "nodash"),  # D4: `SHA-256/RSA` and/or `SHA256/RSA`
    "signer_cell_params": ("reject", "accept"),  # D2: `{{param}}` in the signer alias cell
    "missing_signer_alias": ("skip", "fail"),  # D3: a row whose alias is not in the keystore
    "service_key_form": ("flat", "nested"),  # D5: service key with or without an `oauth` object
    "keystore_limit_bytes": (1048576, 6291456),  # D6: 1 MB (spec) or 6 MB (docs); any integer
    "keystore_sync_seconds": (0.0,),  # D6: delay before the runtime sees a keystore change
    "deploy_response": ("text", "json"),  # D7: task id as plain text, or {"d":{"TaskId":...}}
    "deploy_status_case": ("upper", "title"),  # A8: `SUCCESS` or the docs' `Success`
    "csr_format": ("pem", "der"),  # A7: SigningRequest/$value body encoding (not stated)
    "unknown_parameter": ("404", "ignore"),  # A8: PUT of a parameter that is not externalized
    "encoded_quotes": ("reject", "accept"),  # A8: `%27` instead of `'` in key predicates
    "chain_trust_check": (True, False),  # A7: 409 notTrusted unless the chain reaches a known cert
    "runtime_during_redeploy": ("refuse", "previous"),  # A8: does the runtime sign while STARTING
    "deploy_seconds": (0.3,),  # A8: DEPLOYING time of a deploy task
    "start_seconds": (0.3,),  # A8: STARTING time after the task succeeded
    "stale_runtime_seconds": (0.0,),  # A8: runtime still shows the previous deployment this long
    "stop_seconds": (0.3,),  # A8: STOPPING time of an undeploy
}


def now_wall() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def hexalias(alias: str) -> str:
    """A4: UTF-8 bytes of the alias as hex; the tenant returns uppercase."""
    return alias.encode("utf-8").hex().upper()


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


_DATE_MS = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_date(value) -> dt.datetime:
    """A2: `/Date(ms)/`, `/Date(ms+0000)/` and ISO-8601 are all accepted."""
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    m = _DATE_MS.match(value)
    if m:
        return dt.datetime.fromtimestamp(int(m.group(1)) / 1000, dt.timezone.utc)
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


class ODataError(Exception):
    """An answer in SAP's error shape (A2)."""

    def __init__(self, status: int, message, code: str | None = None, headers=None, body=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            405: "Method Not Allowed",
            409: "Conflict",
            413: "Request Entity Too Large",
            415: "Unsupported Media Type",
            423: "Locked",
            429: "Too Many Requests",
            500: "Internal Server Error",
            501: "Not Implemented",
            503: "Service Unavailable",
        }.get(status, "Error")
        self.headers = headers or {}
        self.body = body  # a prepared JSON body (409 notTrusted carries a KeystoreEntry)


# ---------------------------------------------------------------------------------------------
# Keystore (A5-A7)


@dataclass(frozen=True)
class Entry:
    alias: str
    type: str  # "Key Pair" or "Certificate"
    owner: str  # "Tenant Administrator" or "SAP"
    cert: x509.Certificate
    chain: tuple = ()  # issuer certificates after `cert`
    key: object = None  # private key of a Key Pair; never leaves the fake over the API
    created_by: str = "fake"
    created: dt.datetime = field(default_factory=now_wall)
    modified_by: str = "fake"
    modified: dt.datetime = field(default_factory=now_wall)
    status: str = "unchanged"

    def size(self) -> int:
        n = len(self.cert.public_bytes(serialization.Encoding.DER))
        n += sum(len(c.public_bytes(serialization.Encoding.DER)) for c in self.chain)
        if self.key is not None:
            n += len(
                self.key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return n


def key_description(key) -> tuple[str, int, str | None]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    return "DSA", getattr(key, "key_size", 0), None


def java_signature_name(cert: x509.Certificate) -> str:
    h = cert.signature_hash_algorithm
    digest = (h.name if h else "none").upper().replace("-", "")
    kind = "ECDSA" if isinstance(cert.public_key(), ec.EllipticCurvePublicKey) else "RSA"
    return f"{digest}with{kind}"


def dn(name: x509.Name) -> str:
    # A6 shows `CN=…, OU=…, O=SAP, C=DE`: most specific first, comma and space.
    return ", ".join(reversed(name.rfc4514_string().split(",")))


def cert_props(cert: x509.Certificate) -> dict:
    key_type, key_size, curve = key_description(cert.public_key())
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "KeyType": ("Edm.String", key_type),
        "KeySize": ("Edm.Int32", key_size),
        "ValidNotBefore": ("Edm.DateTimeOffset", cert.not_valid_before_utc),
        "ValidNotAfter": ("Edm.DateTimeOffset", cert.not_valid_after_utc),
        "SerialNumber": ("Edm.String", "0x%X" % cert.serial_number),
        "SignatureAlgorithm": ("Edm.String", java_signature_name(cert)),
        "EllipticCurve": ("Edm.String", curve),
        "Validity": ("Edm.String", None),
        "SubjectDN": ("Edm.String", dn(cert.subject)),
        "IssuerDN": ("Edm.String", dn(cert.issuer)),
        "Version": ("Edm.Int32", 3),
        "FingerprintSha1": ("Edm.String", colon_hex(hashlib.sha1(der).digest())),
        "FingerprintSha256": ("Edm.String", colon_hex(hashlib.sha256(der).digest())),
        "FingerprintSha512": ("Edm.String", colon_hex(hashlib.sha512(der).digest())),
    }


def entry_props(e: Entry) -> dict:
    props = {
        "Hexalias": ("Edm.String", hexalias(e.alias)),
        "Alias": ("Edm.String", e.alias),
    }
    props.update(cert_props(e.cert))
    props.update(
        {
            "Type": ("Edm.String", e.type),
            "Owner": ("Edm.String", e.owner),
            "LastModifiedBy": ("Edm.String", e.modified_by),
            "LastModifiedTime": ("Edm.DateTimeOffset", e.modified),
            "CreatedBy": ("Edm.String", e.created_by),
            "CreatedTime": ("Edm.DateTimeOffset", e.created),
            "Status": ("Edm.String", e.status),
        }
    )
    return props


SIG_HASHES = {"SHA1": hashes.SHA1, "SHA224": hashes.SHA224, "SHA256": hashes.SHA256,
              "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}


def parse_algorithm(text: str, spellings: str) -> tuple[type, str]:
    """A7 and D4: `SHA256/RSA` (examples) or `SHA-256/RSA` (docs table), per the setting."""
    m = re.fullmatch(r"(SHA)(-?)(1|224|256|384|512)/(RSA|ECDSA|EC|DSA)", text or "")
    if not m:
        raise ODataError(400, f"Signature algorithm '{text}' is not supported")
    dash = m.group(2) == "-"
    if (spellings == "dash" and not dash) or (spellings == "nodash" and dash):
        raise ODataError(400, f"Signature algorithm '{text}' is not supported")
    return SIG_HASHES["SHA" + m.group(3)], m.group(4)


def self_signed(key, subject: x509.Name, not_before, not_after, digest) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, digest())
    )


def new_key(key_type: str, key_size: int):
    if key_type == "RSA":
        if key_size not in (1024, 2048, 3072, 4096):
            raise ODataError(400, f"Key size {key_size} is not supported for RSA")
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if key_type == "EC":
        curves = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}
        if key_size not in curves:
            raise ODataError(400, f"Key size {key_size} is not supported for EC")
        return ec.generate_private_key(curves[key_size]())
    raise ODataError(400, f"Key type '{key_type}' is not supported by the fake")


def check_alias(alias) -> str:
    """A4: at most 250 characters, no slashes; reserved names and `sap…` give 403."""
    if not isinstance(alias, str) or not alias.strip():
        raise ODataError(400, "Alias must not be empty")
    if len(alias) > 250:
        raise ODataError(400, f"Alias '{alias}' is longer than 250 characters")
    if "/" in alias or "\\" in alias:
        raise ODataError(400, f"Alias '{alias}' must not contain slashes or backslashes")
    lower = alias.lower()
    if lower.startswith("sap") or lower in ("hcicertificate", "hcicertificate1", "hcimsgcertificate"):
        raise ODataError(403, None)
    return alias


def decode_hex(hexkey: str) -> str:
    """A4: hex compared case-insensitively; odd length gives SAP's 500 text."""
    if len(hexkey) % 2:
        raise ODataError(500, f"hexBinary needs to be even-length: {hexkey}")
    try:
        return bytes.fromhex(hexkey).decode("utf-8")
    except ValueError:
        raise ODataError(500, f"contains illegal character for hexBinary: {hexkey}") from None


def name_from_request(body: dict) -> x509.Name:
    attrs = [
        (NameOID.COUNTRY_NAME, "Country"),
        (NameOID.STATE_OR_PROVINCE_NAME, "State"),
        (NameOID.LOCALITY_NAME, "Locality"),
        (NameOID.ORGANIZATION_NAME, "Organization"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "OrganizationUnit"),
        (NameOID.COMMON_NAME, "CommonName"),
        (NameOID.EMAIL_ADDRESS, "Email"),
    ]
    return x509.Name(
        [x509.NameAttribute(oid, str(body[k])) for oid, k in attrs if body.get(k)]
    )


def split_der_sequence(data: bytes) -> list[bytes]:
    """The elements of a DER SEQUENCE (for a PkiPath: SEQUENCE OF Certificate)."""

    def read_len(buf, i):
        first = buf[i]
        if first < 0x80:
            return first, i + 1
        n = first & 0x7F
        return int.from_bytes(buf[i + 1 : i + 1 + n], "big"), i + 1 + n

    if not data or data[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    length, i = read_len(data, 1)
    end = i + length
    out = []
    while i < end:
        start = i
        elen, j = read_len(data, i + 1)
        i = j + elen
        out.append(data[start:i])
    return out


def parse_chain(body: bytes, content_type: str) -> list[x509.Certificate]:
    """A7: PKCS#7 (binary, PEM or base64), a PEM chain, or a PkiPath."""
    ctype = content_type.split(";")[0].strip().lower()
    try:
        if ctype in ("application/pkcs7-mime", "application/x-pkcs7-certificates"):
            if body.lstrip().startswith(b"-----BEGIN"):
                return pkcs7.load_pem_pkcs7_certificates(body)
            if body[:1] == b"\x30":
                return pkcs7.load_der_pkcs7_certificates(body)
            return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))
        if ctype == "application/pkix-pkipath":
            # PkiPath lists the certificates from the trust anchor down to the entry.
            return [x509.load_der_x509_certificate(c) for c in reversed(split_der_sequence(body))]
        if ctype in ("", "application/x-pem-file", "text/plain", "application/octet-stream"):
            return x509.load_pem_x509_certificates(body)
    except (ValueError, binascii.Error) as e:
        raise ODataError(400, f"The certificate chain cannot be read: {e}") from None
    raise ODataError(415, f"Content type '{content_type}' is not supported")


def parse_certificate(body: bytes) -> x509.Certificate:
    """A7: DER, base64 DER, or PEM."""
    try:
        if body.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(body)
        if body[:1] == b"\x30":
            return x509.load_der_x509_certificate(body)
        return x509.load_der_x509_certificate(base64.b64decode(body, validate=False))
    except (ValueError, binascii.Error):
        raise ODataError(415, "The resource is not an X.509 certificate (DER, base64 DER or PEM)") from None


def same_key(a, b) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


# ---------------------------------------------------------------------------------------------
# Integration flows (A8, A9)


@dataclass
class IFlow:
    id: str
    version: str
    package_id: str
    name: str
    params: dict  # ParameterKey -> {"value", "type", "description"}: the designtime configuration
    properties: dict  # Content Modifier exchange properties: name -> value, may hold {{PARAM}}
    signer: dict  # {"rows": [...], "payload_included": bool}
    deployed: dict | None = None  # the configuration the runtime uses (a snapshot at deploy)
    runtime: dict | None = None  # {"status", "version", "deployed_on", "deployed_by", "error"}
    pending: dict | None = None  # a deploy or undeploy under way


@dataclass
class Task:
    id: str
    iflow: str
    t0: float  # monotonic start
    fails: bool  # an injected build failure
    status: str = "DEPLOYING"


class State:
    """Everything the fake tenant holds; one lock guards it."""

    def __init__(self, cfg: dict, settings: dict):
        self.lock = threading.RLock()
        self.settings = settings
        self.client_id = cfg["client_id"]
        self.client_secret = cfg["client_secret"]
        self.roles = list(cfg.get("roles", ALL_ROLES))
        self.token_ttl = float(cfg.get("token_ttl", 43200))
        self.tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self.sessions: dict[str, str] = {}  # session cookie -> CSRF token
        self.keystores: dict[str, dict[str, Entry]] = {
            "system": {},
            "backup_admin_system": {},
            "KeyRenewal": {},
        }
        self.keystore_modified = now_wall()
        self.keystore_modified_by = "fake"
        self.snapshots: list[tuple[float, dict]] = []  # what the runtime sees, over time (D6)
        self.iflows: dict[str, IFlow] = {}
        self.tasks: dict[str, Task] = {}
        self.faults: list[dict] = []  # injected answers: {"status", "calls", "scope", "message"}
        self.deploy_failures: list[dict] = []
        self.audit: list[dict] = []
        self.seq = 0
        self._seed(cfg)

    # -- seeding ------------------------------------------------------------------------------

    def _seed(self, cfg: dict):
        sap_key = ec.generate_private_key(ec.SECP256R1())
        sap_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake SAP Cloud Integration")])
        later = now_wall() + dt.timedelta(days=3650)
        sap_cert = self_signed(sap_key, sap_name, now_wall() - dt.timedelta(days=1), later, hashes.SHA256)
        # An SAP-owned entry, so that the 403 on SAP entries and backups that skip them show.
        self.keystores["system"]["sap_cloudintegrationcertificate"] = Entry(
            alias="sap_cloudintegrationcertificate", type="Certificate", owner="SAP",
            cert=sap_cert, created_by="SAP", modified_by="SAP",
        )
        for spec in cfg.get("keystore", []):
            key = new_key(spec.get("key_type", "RSA"), int(spec.get("key_size", 2048)))
            days = int(spec.get("valid_days", 365))
            subject = x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, spec.get("common_name", spec["alias"]))]
            )
            cert = self_signed(key, subject, now_wall() - dt.timedelta(minutes=5),
                               now_wall() + dt.timedelta(days=days), hashes.SHA256)
            self.keystores["system"][spec["alias"]] = Entry(
                alias=spec["alias"], type="Key Pair", owner="Tenant Administrator", cert=cert, key=key
            )
        self.snapshot_keystore()
        for f in cfg.get("iflows", []):
            params = {
                p["key"]: {
                    "value": p.get("value", ""),
                    "type": p.get("type", "xsd:string"),
                    "description": p.get("description", ""),
                }
                for p in f.get("parameters", [])
            }
            flow = IFlow(
                id=f["id"],
                version=f.get("version", "1.0.0"),
                package_id=f.get("package_id", "FakePackage"),
                name=f.get("name", f["id"]),
                params=params,
                properties=dict(f.get("properties", {})),
                signer=copy.deepcopy(f.get("signer", {"rows": [], "payload_included": True})),
            )
            if f.get("deployed", True):
                flow.deployed = self.designtime_snapshot(flow)
                flow.runtime = {
                    "status": "STARTED", "version": flow.version, "deployed_on": now_wall(),
                    "deployed_by": "fake", "error": None,
                }
            self.iflows[flow.id] = flow

    # -- keystore -----------------------------------------------------------------------------

    def system(self) -> dict[str, Entry]:
        return self.keystores["system"]

    def snapshot_keystore(self):
        """Record the keystore as it is now; the runtime reads it after keystore_sync_seconds."""
        self.snapshots.append((time.monotonic(), dict(self.system())))
        delay = float(self.settings["keystore_sync_seconds"])
        cutoff = time.monotonic() - delay - 60
        while len(self.snapshots) > 2 and self.snapshots[1][0] < cutoff:
            self.snapshots.pop(0)

    def runtime_keystore(self) -> dict[str, Entry]:
        delay = float(self.settings["keystore_sync_seconds"])
        seen = time.monotonic() - delay
        current = self.snapshots[0][1]
        for t, ks in self.snapshots:
            if t <= seen:
                current = ks
        return current

    def changed(self, who: str):
        self.keystore_modified = now_wall()
        self.keystore_modified_by = who
        limit = int(self.settings["keystore_limit_bytes"])
        if sum(e.size() for e in self.system().values()) > limit:
            raise ODataError(
                413,
                f"The keystore exceeds the maximum size of the keystore, which is restricted to "
                f"{limit} bytes",
            )
        self.snapshot_keystore()

    def entry(self, alias: str, keystore: str = "system") -> Entry:
        ks = self.keystore(keystore)
        if alias not in ks:
            raise ODataError(404, f"Alias '{alias}' not found in the keystore")
        return ks[alias]

    def keystore(self, name: str) -> dict[str, Entry]:
        if name not in self.keystores:
            raise ODataError(400, f"Keystore name '{name}' is not valid")
        return self.keystores[name]

    def put_entry(self, e: Entry, who: str):
        """Writes one entry, undoing it when the keystore would grow over its limit (413)."""
        before = self.system().get(e.alias)
        self.system()[e.alias] = replace(e, status="unchanged")
        try:
            self.changed(who)
        except ODataError:
            if before is None:
                del self.system()[e.alias]
            else:
                self.system()[e.alias] = before
            raise

    def generate(self, body: dict, who: str) -> Entry:
        """A7: KeyPairGenerationRequests, for the API and for a change made by hand."""
        alias = check_alias(body.get("Alias"))
        if not body.get("Hexalias"):
            raise ODataError(400, "Property 'Hexalias' is mandatory")
        if not body.get("CommonName"):
            raise ODataError(400, "Common name must not be empty")
        country = body.get("Country")
        if not isinstance(country, str) or len(country) != 2:
            raise ODataError(400, "Country must be 2 characters")
        if alias in self.system():
            raise ODataError(400, f'Keystore entry with alias "{alias}" already exists')
        digest, _ = parse_algorithm(
            body.get("SignatureAlgorithm", "SHA-512/RSA"),
            "both" if who != "api" else self.settings["keygen_algorithms"],
        )
        key_type = body.get("KeyType", "RSA")
        key = new_key(key_type, int(body.get("KeySize", 4096 if key_type == "RSA" else 256)))
        try:
            nb = parse_date(body["ValidNotBefore"]) if body.get("ValidNotBefore") else now_wall()
            na = (parse_date(body["ValidNotAfter"]) if body.get("ValidNotAfter")
                  else nb + dt.timedelta(days=3 * 365))
        except ValueError as e:
            raise ODataError(400, f"Invalid validity date: {e}") from None
        if na <= nb:
            raise ODataError(400, "ValidNotAfter must be after ValidNotBefore")
        cert = self_signed(key, name_from_request(body), nb, na, digest)
        now = now_wall()
        e = Entry(alias=alias, type="Key Pair", owner="Tenant Administrator", cert=cert, key=key,
                  created_by=who, created=now, modified_by=who, modified=now, status="new")
        self.put_entry(e, who)
        return e

    def delete(self, alias: str, who: str) -> Entry:
        e = self.entry(alias)
        if e.owner == "SAP":
            raise ODataError(403, None)
        del self.system()[alias]
        self.changed(who)
        return replace(e, status="removed")

    def rename(self, alias: str, new_alias: str, who: str) -> Entry:
        e = self.entry(alias)
        if e.owner == "SAP":
            raise ODataError(403, None)
        check_alias(new_alias)
        if new_alias in self.system():
            raise ODataError(400, f'Keystore entry with alias "{new_alias}" already exists')
        del self.system()[alias]
        renamed = replace(e, alias=new_alias, modified_by=who, modified=now_wall(), status="changed")
        self.system()[new_alias] = replace(renamed, status="unchanged")
        self.changed(who)
        return renamed

    def trusted(self, chain: list[x509.Certificate], own_alias: str) -> bool:
        """A7 409: the chain must reach a certificate the keystore already holds."""
        known = {
            e.cert.fingerprint(hashes.SHA256())
            for a, e in self.system().items()
            if a != own_alias
        }
        for c in chain:
            if c.fingerprint(hashes.SHA256()) in known:
                return True
        top = chain[-1]
        for a, e in self.system().items():
            if a != own_alias and e.cert.subject == top.issuer:
                try:
                    top.verify_directly_issued_by(e.cert)
                    return True
                except Exception:  # noqa: BLE001 - any failure means: not issued by it
                    continue
        return False

    # -- integration flows --------------------------------------------------------------------

    def designtime_snapshot(self, flow: IFlow) -> dict:
        return {
            "version": flow.version,
            "params": copy.deepcopy(flow.params),
            "properties": dict(flow.properties),
            "signer": copy.deepcopy(flow.signer),
        }

    def flow(self, iflow_id: str) -> IFlow:
        if iflow_id not in self.iflows:
            raise ODataError(404, f"Integration design time artifact '{iflow_id}' not found")
        return self.iflows[iflow_id]

    def advance(self):
        """Moves deploy tasks and runtime states on; called before every answer."""
        s = self.settings
        now = time.monotonic()
        for task in self.tasks.values():
            # Each task ends on its own, even when a later deploy superseded its flow's start.
            if task.status == "DEPLOYING" and now >= task.t0 + float(s["deploy_seconds"]):
                task.status = "FAIL" if task.fails else "SUCCESS"
        for flow in self.iflows.values():
            p = flow.pending
            if p is None:
                continue
            if p["kind"] == "deploy":
                done_build = p["t0"] + float(s["deploy_seconds"])
                done_start = done_build + float(s["start_seconds"])
                if now >= p["t0"] + float(s["stale_runtime_seconds"]) or now >= done_start:
                    if not p["shown"]:
                        p["shown"] = True
                        previous = flow.deployed
                        flow.runtime = {
                            "status": "STARTING", "version": p["snapshot"]["version"],
                            "deployed_on": p["wall"], "deployed_by": p["who"], "error": None,
                        }
                        if s["runtime_during_redeploy"] == "refuse":
                            flow.deployed = None
                        else:
                            flow.deployed = previous
                if now >= done_start:
                    if p["failure"]:
                        flow.runtime["status"] = "ERROR"
                        flow.runtime["error"] = p["failure"]["message"]
                        flow.deployed = None
                    else:
                        flow.runtime["status"] = "STARTED"
                        flow.deployed = p["snapshot"]
                    flow.pending = None
            elif p["kind"] == "undeploy":
                if now >= p["t0"] + float(s["stop_seconds"]):
                    flow.runtime = None
                    flow.deployed = None
                    flow.pending = None

    def deploy(self, flow: IFlow, who: str) -> Task:
        failure = self.deploy_failures.pop(0) if self.deploy_failures else None
        task = Task(id=secrets.token_hex(16), iflow=flow.id, t0=time.monotonic(),
                    fails=bool(failure and failure["stage"] == "build"))
        self.tasks[task.id] = task
        snapshot = self.designtime_snapshot(flow)
        if failure is None:
            problem = signer_problem(snapshot, self.settings)
            if problem:
                failure = {"stage": "runtime", "message": problem}
        flow.pending = {
            "kind": "deploy", "task": task.id, "t0": time.monotonic(), "wall": now_wall(),
            "who": who, "snapshot": snapshot, "failure": failure, "shown": False,
        }
        return task


def resolve(expr: str, deployed: dict, settings: dict) -> str:
    """A9: a signer alias cell is a literal, `${property.x}` (x set by an externalized Content
    Modifier property `{{PARAM}}`), or -- D2, behind `signer_cell_params` -- `{{PARAM}}`."""
    params = {k: v["value"] for k, v in deployed["params"].items()}

    def fill(text: str) -> str:
        return re.sub(r"\{\{([^}]+)\}\}", lambda m: params.get(m.group(1), ""), text)

    m = re.fullmatch(r"\$\{property\.([^}]+)\}", expr)
    if m:
        return fill(deployed["properties"].get(m.group(1), ""))
    return fill(expr)


def signer_problem(snapshot: dict, settings: dict) -> str | None:
    if settings["signer_cell_params"] == "reject":
        for row in snapshot["signer"].get("rows", []):
            if "{{" in row.get("alias", ""):
                return (
                    "Externalized parameters are not supported in the Signer Parameters table "
                    f"(alias cell '{row['alias']}'); use a Content Modifier property"
                )
    return None


# ---------------------------------------------------------------------------------------------
# OData V2 serialisation (A2)

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_M = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
NS_D = "http://schemas.microsoft.com/ado/2007/08/dataservices"


def json_value(edm: str, v):
    if v is None:
        return None
    if edm in ("Edm.DateTimeOffset", "Edm.DateTime"):
        return f"/Date({ms(v)})/"
    return v


def xml_value(edm: str, v) -> str:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(v, bool):
        return "true" if v else "false"
    return xml_escape(str(v))


@dataclass
class Entity:
    set_name: str
    type_name: str
    key: str  # the key predicate, e.g. `('313233')`
    props: dict  # name -> (edm, value)
    deferred: tuple = ()  # navigation properties shown as `__deferred`
    expanded: dict = field(default_factory=dict)  # name -> list[Entity]


def select(props: dict, query: dict) -> dict:
    """`$select=A,B` keeps the named properties (A2); names the entity lacks are ignored."""
    sel = query.get("$select")
    if not sel:
        return props
    names = {s.strip() for s in sel.split(",")}
    return {k: v for k, v in props.items() if k in names}


def entity_json(e: Entity, root: str, query: dict) -> dict:
    uri = f"{root}/{e.set_name}{e.key}"
    out = {"__metadata": {"id": uri, "uri": uri, "type": e.type_name}}
    for k, (edm, v) in select(e.props, query).items():
        out[k] = json_value(edm, v)
    sel = query.get("$select")
    for nav in e.deferred:
        if sel and nav not in {x.strip() for x in sel.split(",")}:
            continue
        if nav in e.expanded:
            out[nav] = {"results": [entity_json(x, root, {}) for x in e.expanded[nav]]}
        else:
            out[nav] = {"__deferred": {"uri": f"{uri}/{nav}"}}
    return out


def entity_xml(e: Entity, root: str, query: dict, top: bool) -> str:
    uri = f"{root}/{e.set_name}{e.key}"
    props = "".join(
        f'<d:{k} m:null="true"/>' if v is None
        else f'<d:{k} m:type="{edm}">{xml_value(edm, v)}</d:{k}>' if edm != "Edm.String"
        else f"<d:{k}>{xml_value(edm, v)}</d:{k}>"
        for k, (edm, v) in select(e.props, query).items()
    )
    links = ""
    for nav in e.deferred:
        inline = ""
        if nav in e.expanded:
            inner = "".join(entity_xml(x, root, {}, False) for x in e.expanded[nav])
            inline = f"<m:inline><feed>{inner}</feed></m:inline>"
        links += (
            f'<link href="{e.set_name}{e.key}/{nav}" rel="{NS_D}/related/{nav}" '
            f'title="{nav}" type="application/atom+xml;type=feed">{inline}</link>'
        )
    ns = f' xmlns="{NS_ATOM}" xmlns:m="{NS_M}" xmlns:d="{NS_D}" xml:base="{root}/"' if top else ""
    return (
        f"<entry{ns}><id>{xml_escape(uri)}</id><title type=\"text\">{e.set_name}</title>"
        f"<updated>{xml_value('', now_wall())}</updated>"
        f'<category term="{e.type_name}" scheme="{NS_D}/scheme"/>{links}'
        f'<content type="application/xml"><m:properties>{props}</m:properties></content></entry>'
    )


def feed_xml(set_name: str, items: list[Entity], root: str, query: dict) -> str:
    inner = "".join(entity_xml(x, root, query, False) for x in items)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="{NS_ATOM}" xmlns:m="{NS_M}" '
        f'xmlns:d="{NS_D}" xml:base="{root}/"><id>{root}/{set_name}</id>'
        f'<title type="text">{set_name}</title><updated>{xml_value("", now_wall())}</updated>'
        f"{inner}</feed>"
    )


def entry_entity(e: Entry) -> Entity:
    return Entity(
        "KeystoreEntries", "com.sap.hci.api.KeystoreEntry", f"('{hexalias(e.alias)}')",
        entry_props(e),
        deferred=("ChainCertificates", "Certificate", "Sshkey", "Keystore", "ChainResource", "SigningRequest"),
    )


_FILTER = [
    (re.compile(r"^(\w+) (eq|ne) '(.*)'$"), lambda m, get: (get(m.group(1)) == m.group(3)) == (m.group(2) == "eq")),
    (re.compile(r"^startswith\((\w+),\s*'(.*)'\)( eq true)?$"), lambda m, get: str(get(m.group(1))).startswith(m.group(2))),
    (re.compile(r"^endswith\((\w+),\s*'(.*)'\)( eq true)?$"), lambda m, get: str(get(m.group(1))).endswith(m.group(2))),
    (re.compile(r"^substringof\('(.*)',\s*(\w+)\)( eq true)?$"), lambda m, get: m.group(1) in str(get(m.group(2)))),
]


def apply_filter(items: list[Entity], expr: str | None) -> list[Entity]:
    if not expr:
        return items
    for pattern, test in _FILTER:
        m = pattern.match(expr.strip())
        if m:
            return [x for x in items if test(m, lambda name: x.props.get(name, (None, None))[1])]
    raise ODataError(400, f"The fake does not understand $filter '{expr}'")


# ---------------------------------------------------------------------------------------------
# The runtime (A9): signs as the deployed signer step would, with the current keystore


def runtime_sign(state: State, flow: IFlow, payload: bytes) -> tuple[bytes, list[str]]:
    s = state.settings
    if flow.runtime is None:
        raise ODataError(404, f"Integration flow '{flow.id}' is not deployed")
    deployed = flow.deployed  # None while STARTING (unless runtime_during_redeploy=previous) or ERROR
    if deployed is None:
        status, error = flow.runtime["status"], flow.runtime.get("error")
        raise ODataError(503, f"Integration flow '{flow.id}' is {status}" + (f": {error}" if error else ""))
    keystore = state.runtime_keystore()
    builder = pkcs7.PKCS7SignatureBuilder().set_data(payload)
    used, include_certs = [], False
    for row in deployed["signer"].get("rows", []):
        alias = resolve(row.get("alias", ""), deployed, s)
        entry = keystore.get(alias)
        if entry is None or entry.key is None:
            if s["missing_signer_alias"] == "fail":
                raise ODataError(500, f"Private key alias '{alias}' not found in the keystore")
            continue
        digest, _ = parse_algorithm(row.get("algorithm", "SHA256/RSA"), "both")
        builder = builder.add_signer(entry.cert, entry.key, digest())
        for c in entry.chain:
            builder = builder.add_certificate(c)
        include_certs = include_certs or bool(row.get("include_certificates", True))
        used.append(alias)
    if not used:
        raise ODataError(500, "No private key alias of the signer step is in the keystore")
    options = [pkcs7.PKCS7Options.Binary]
    if not include_certs:
        options.append(pkcs7.PKCS7Options.NoCerts)
    if not deployed["signer"].get("payload_included", True):
        options.append(pkcs7.PKCS7Options.DetachedSignature)
    return builder.sign(serialization.Encoding.DER, options), used


# ---------------------------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeSapCloudIntegration/1.0"
    protocol_version = "HTTP/1.1"
    state: State = None  # set by main()

    def log_message(self, fmt, *args):  # keep stdout for the ready line; stderr quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def dispatch(self, method: str):
        self.method = method
        raw_path, _, raw_query = self.path.partition("?")
        self.raw_path = raw_path
        self.query = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.out_headers: dict[str, str] = {}
        self.audit_extra: dict = {}
        status = 500
        try:
            with self.state.lock:
                self.state.advance()
                status, ctype, body = self.route(method)
                self.state.advance()
        except ODataError as e:
            status = e.status
            self.out_headers.update(e.headers)
            ctype, body = self.error_body(e)
        except Exception as e:  # noqa: BLE001 - a fake bug must answer, not hang the client
            status = 500
            ctype, body = "text/plain;charset=utf-8", f"fake internal error: {e!r}".encode()
            print(f"fake_sap_ci: {method} {self.path}: {e!r}", file=sys.stderr)
        self.record(method, raw_path, status)
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in self.out_headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def record(self, method, path, status):
        if path.startswith(FAKE + "/audit"):
            return
        st = self.state
        with st.lock:
            st.seq += 1
            cookie = self.headers.get("Cookie") or ""
            st.audit.append({
                "seq": st.seq,
                "time": now_wall().isoformat(),
                "method": method,
                "path": path,
                "query": {k: v for k, v in self.query.items() if k not in ("client_secret",)},
                "status": status,
                "bearer": (self.headers.get("Authorization") or "").lower().startswith("bearer "),
                "csrf_token": self.headers.get("X-CSRF-Token"),
                "session_cookie": "JSESSIONID=" in cookie,
                "accept": self.headers.get("Accept"),
                "content_type": self.headers.get("Content-Type"),
                **self.audit_extra,
            })

    def wants_json(self) -> bool:
        """A2: JSON only on `Accept: application/json` or `$format=json`; XML otherwise."""
        fmt = self.query.get("$format")
        if fmt:
            return fmt.lower() == "json"
        return "application/json" in (self.headers.get("Accept") or "").lower()

    def error_body(self, e: ODataError) -> tuple[str, bytes]:
        if e.body is not None:
            return "application/json;charset=utf-8", json.dumps(e.body).encode()
        if self.raw_path.startswith(FAKE) or self.raw_path == TOKEN_PATH:
            return "application/json;charset=utf-8", json.dumps(
                {"error": {"code": e.code, "message": {"lang": "en", "value": e.message}}}
            ).encode()
        if self.wants_json() or not self.raw_path.startswith(API):
            inner = {"code": e.code, "message": {"lang": "en", "value": e.message}}
            if e.status == 403 and self.state.settings["forbidden_body"] == "bare":
                return "application/json;charset=utf-8", json.dumps(inner).encode()
            return "application/json;charset=utf-8", json.dumps({"error": inner}).encode()
        text = "" if e.message is None else xml_escape(str(e.message))
        return "application/xml;charset=utf-8", (
            f'<?xml version="1.0" encoding="utf-8"?><error xmlns="{NS_M}"><code>{e.code}</code>'
            f'<message xml:lang="en">{text}</message></error>'
        ).encode()

    def root(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}{API}"

    def json_body(self) -> dict:
        try:
            data = json.loads(self.body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ODataError(400, f"The request body is not valid JSON (UTF-8): {e}") from None
        if not isinstance(data, dict):
            raise ODataError(400, "The request body must be a JSON object")
        return data

    def one(self, e: Entity, status: int = 200):
        root = self.root()
        self.out_headers["DataServiceVersion"] = "2.0"
        if self.wants_json():
            return status, "application/json;charset=utf-8", json.dumps({"d": entity_json(e, root, self.query)}).encode()
        xml = '<?xml version="1.0" encoding="utf-8"?>' + entity_xml(e, root, self.query, True)
        return status, "application/atom+xml;type=entry;charset=utf-8", xml.encode()

    def many(self, set_name: str, items: list[Entity], status: int = 200):
        root = self.root()
        self.out_headers["DataServiceVersion"] = "2.0"
        if self.wants_json():
            body = {"d": {"results": [entity_json(x, root, self.query) for x in items]}}
            return status, "application/json;charset=utf-8", json.dumps(body).encode()
        return status, "application/atom+xml;type=feed;charset=utf-8", feed_xml(set_name, items, root, self.query).encode()

    def written(self, touched: list[Entry], default_return: bool = False):
        """A7: 204, or with `returnKeystoreEntries=true` 200 and "the current keystore entries"
        (S-SPEC-SC), the ones this call touched marked `new`, `changed` or `removed`."""
        flag = self.query.get("returnKeystoreEntries", "true" if default_return else "false")
        if flag.lower() != "true":
            return 204, None, b""
        marked = {e.alias: e for e in touched}
        current = [marked.get(a, e) for a, e in self.state.system().items()]
        removed = [e for e in touched if e.status == "removed"]
        return self.many("KeystoreEntries", [entry_entity(e) for e in current + removed])

    # -- authentication, CSRF, faults (A1, A3, A7) --------------------------------------------

    def authenticate(self, *roles: str):
        st = self.state
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        expiry = st.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or expiry < time.monotonic():
            raise ODataError(401, "Unauthorized: a valid Bearer token is required",
                             headers={"WWW-Authenticate": 'Bearer realm="fake-sap-ci"'})
        if roles and not any(r in st.roles for r in roles):
            self.out_headers["X-Fake-Missing-Role"] = " or ".join(roles)
            raise ODataError(403, None)

    def cookies(self) -> dict:
        out = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k:
                out[k] = v
        return out

    def check_csrf(self):
        st = self.state
        if st.settings["csrf"] != "required":
            return
        sent = self.headers.get("X-CSRF-Token") or ""
        session = self.cookies().get("JSESSIONID", "")
        if sent and sent.lower() != "fetch" and st.sessions.get(session) == sent:
            return
        headers = {"X-CSRF-Token": "Required"} if st.settings["csrf_failure"] == "required-header" else {}
        raise ODataError(403, "CSRF token validation failed", headers=headers)

    def check_faults(self, scope: str):
        """Injected 503 keystore lock / 429 answers (A3, A7) for the next N matching calls."""
        st = self.state
        for f in st.faults:
            if f["calls"] > 0 and (f["scope"] == "all" or f["scope"] == scope):
                f["calls"] -= 1
                headers = {"Retry-After": str(f.get("retry_after", 1))} if f["status"] == 429 else {}
                raise ODataError(f["status"], f["message"], headers=headers)

    def guarded(self, method: str, scope: str, *roles: str):
        """Order of checks on an API call: token, role, CSRF (writes), injected faults."""
        self.authenticate(*roles)
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            self.check_csrf()
        self.check_faults(scope if method != "GET" else "reads")

    # -- routing ------------------------------------------------------------------------------

    def route(self, method: str):
        path = self.raw_path
        if path == TOKEN_PATH:
            return self.token(method)
        if path.startswith(FAKE + "/") or path == FAKE:
            return self.fake(method, path[len(FAKE):])
        if path in (API, API + "/", "/"):
            return self.csrf_fetch(method)
        if not path.startswith(API + "/"):
            raise ODataError(404, f"No resource at '{path}'")
        rest = path[len(API) + 1:]
        if "%27" in rest.upper() and self.state.settings["encoded_quotes"] == "reject":
            raise ODataError(400, "Single quotes in key predicates must not be percent-encoded")
        rest = urllib.parse.unquote(rest)
        for pattern, handler in self.ROUTES:
            m = pattern.fullmatch(rest)
            if m:
                return handler(self, method, *m.groups())
        raise ODataError(404, f"Resource not found for the segment '{rest}'")

    def token(self, method: str):
        """A1: POST {tokenurl}?grant_type=client_credentials, client auth by Basic or form."""
        st = self.state
        if method != "POST":
            raise ODataError(405, "Use POST")
        form = dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace")))
        grant = self.query.get("grant_type") or form.get("grant_type")
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                cid = secret = None
        if grant != "client_credentials":
            body = {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"}
            return 400, "application/json;charset=utf-8", json.dumps(body).encode()
        if cid != st.client_id or secret != st.client_secret:
            body = {"error": "unauthorized", "error_description": "Bad credentials"}
            self.out_headers["WWW-Authenticate"] = 'Basic realm="fake-sap-ci"'
            return 401, "application/json;charset=utf-8", json.dumps(body).encode()
        token = "fake-" + secrets.token_urlsafe(32)
        st.tokens[token] = time.monotonic() + st.token_ttl
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(st.token_ttl),
            "scope": " ".join(st.roles),
            "jti": secrets.token_hex(16),
        }
        return 200, "application/json;charset=utf-8", json.dumps(body).encode()

    def csrf_fetch(self, method: str):
        """A3: GET {root}/ with `X-CSRF-Token: Fetch` gives a token bound to a session cookie."""
        if method != "GET":
            raise ODataError(405, "Only GET is allowed on the service root")
        self.authenticate()
        st = self.state
        session = self.cookies().get("JSESSIONID")
        if session not in st.sessions:
            session = secrets.token_hex(16)
            st.sessions[session] = secrets.token_urlsafe(24)
            self.out_headers["Set-Cookie"] = f"JSESSIONID={session}; Path=/; HttpOnly"
        if (self.headers.get("X-CSRF-Token") or "").lower() == "fetch":
            self.out_headers["X-CSRF-Token"] = st.sessions[session]
        body = {"d": {"EntitySets": [
            "KeystoreEntries", "Keystores", "KeyPairGenerationRequests", "KeyPairResources",
            "CertificateResources", "CertificateChainResources", "KeystoreResources",
            "IntegrationDesigntimeArtifacts", "BuildAndDeployStatus", "IntegrationRuntimeArtifacts",
        ]}}
        return 200, "application/json;charset=utf-8", json.dumps(body).encode()

    # -- Security Content (A7) ----------------------------------------------------------------

    def keystore_entries(self, method: str):
        if method != "GET":
            raise ODataError(405, "Method not allowed on KeystoreEntries")
        self.guarded(method, "keystore", ROLE_READ)
        ks = self.state.keystore(self.query.get("keystoreName", "system"))
        return self.many("KeystoreEntries", [entry_entity(e) for e in ks.values()])

    def keystore_entry(self, method: str, hexkey: str, nav: str | None):
        st = self.state
        alias = decode_hex(hexkey)
        if method == "GET":
            self.guarded(method, "keystore", ROLE_READ)
            e = st.entry(alias, self.query.get("keystoreName", "system"))
            if nav is None:
                return self.one(entry_entity(e))
            return self.entry_nav(e, nav)
        if nav is not None:
            raise ODataError(405, f"{method} not allowed on {nav}")
        self.guarded(method, "keystore", ROLE_KEYSTORE_EDIT)
        if method == "DELETE":
            if self.query.get("keystoreName") == "KeyRenewal":
                raise ODataError(403, None)
            removed = st.delete(alias, "api")
            return self.written([removed])
        if method == "PUT":
            new_alias = self.query.get("renameAlias")
            if new_alias is None:
                raise ODataError(400, "Only renameAlias is supported on KeystoreEntries")
            body = self.json_body()
            if not body or any(v is not None for v in body.values()):
                raise ODataError(400, "The body must contain a property of the KeystoreEntry entity type with a null value")
            renamed = st.rename(alias, new_alias, "api")
            if self.query.get("returnHexAlias", "").lower() == "true":
                return 200, "text/plain;charset=utf-8", f"[{hexalias(renamed.alias)}]".encode()
            return self.written([renamed])
        raise ODataError(405, f"{method} not allowed on KeystoreEntries")

    def entry_nav(self, e: Entry, nav: str):
        if nav == "Certificate/$value":
            return 200, "application/pkix-cert", e.cert.public_bytes(serialization.Encoding.PEM)
        if nav == "ChainResource/$value":
            der = pkcs7.serialize_certificates([e.cert, *e.chain], serialization.Encoding.DER)
            return 200, "application/pkcs7-mime", der
        if nav == "ChainCertificates":
            if e.type != "Key Pair":
                raise ODataError(400, f'Alias "{e.alias}" does not represent a Key Pair')
            items = []
            for i, c in enumerate([e.cert, *e.chain]):
                props = {"Hexalias": ("Edm.String", hexalias(e.alias)), "Index": ("Edm.Int32", i)}
                props.update(cert_props(c))
                items.append(Entity("ChainCertificates", "com.sap.hci.api.ChainCertificate",
                                    f"(Hexalias='{hexalias(e.alias)}',Index={i})", props))
            return self.many("ChainCertificates", items)
        if nav == "SigningRequest/$value":
            if e.key is None:
                raise ODataError(400, f'Alias "{e.alias}" does not represent a Key Pair')
            h = e.cert.signature_hash_algorithm or hashes.SHA256()
            csr = x509.CertificateSigningRequestBuilder().subject_name(e.cert.subject).sign(e.key, type(h)())
            if self.state.settings["csr_format"] == "der":
                return 200, "application/pkcs10", csr.public_bytes(serialization.Encoding.DER)
            return 200, "application/pkcs10", csr.public_bytes(serialization.Encoding.PEM)
        raise ODataError(404, f"Resource not found for the segment '{nav}'")

    def keystores(self, method: str, name: str, nav: str | None):
        if method != "GET":
            raise ODataError(405, "Method not allowed on Keystores")
        self.guarded(method, "keystore", ROLE_READ)
        st = self.state
        if name not in ("system", "backup_admin_system", "KeyRenewal"):
            raise ODataError(400, f"Keystore name '{name}' is not valid")
        ks = st.keystore(name)
        if nav == "Size/$value":
            return 200, "text/plain;charset=utf-8", str(len(ks)).encode()
        if nav is not None:
            raise ODataError(404, f"Resource not found for the segment '{nav}'")
        e = Entity("Keystores", "com.sap.hci.api.Keystore", f"('{name}')", {
            "Name": ("Edm.String", name),
            "LastModifiedBy": ("Edm.String", st.keystore_modified_by),
            "LastModifiedTime": ("Edm.DateTimeOffset", st.keystore_modified),
            "Size": ("Edm.Int32", len(ks)),
            "RuntimeIds": ("Edm.String", None),
            "AggregatedStatus": ("Edm.String", None),
            "AggregatedErrors": ("Edm.String", None),
        }, deferred=("Entries",))
        if "Entries" in (self.query.get("$expand") or ""):
            e.expanded["Entries"] = [entry_entity(x) for x in ks.values()]
        return self.one(e)

    def key_pair_generation(self, method: str):
        if method != "POST":
            raise ODataError(405, "Method not allowed on KeyPairGenerationRequests")
        self.guarded(method, "keystore", ROLE_KEYSTORE_EDIT)
        e = self.state.generate(self.json_body(), "api")
        return self.written([e])

    def chain_resource(self, method: str, hexkey: str):
        """A7: PUT CertificateChainResources('{hex}')/$value -- the CA's signing response."""
        if method != "PUT":
            raise ODataError(405, "Method not allowed on CertificateChainResources")
        self.guarded(method, "keystore", ROLE_KEYSTORE_EDIT)
        st = self.state
        alias = decode_hex(hexkey)
        e = st.entry(alias)
        if e.type != "Key Pair" or e.key is None:
            raise ODataError(400, f'Alias "{alias}" does not represent a Key Pair')
        if len(self.body) > 30072:
            raise ODataError(413, "The certificate chain exceeds 30072 bytes")
        chain = parse_chain(self.body, self.headers.get("Content-Type") or "")
        leaf = next((c for c in chain if same_key(c.public_key(), e.key.public_key())), None)
        if leaf is None:
            raise ODataError(400, "The public key of the certificate chain does not match the key pair")
        rest = [c for c in chain if c is not leaf]
        verified = self.query.get("fingerprintVerified", "false").lower() == "true"
        if st.settings["chain_trust_check"] and not verified and not st.trusted([leaf, *rest], alias):
            body_entry = entry_entity(replace(e, cert=leaf, chain=tuple(rest)))
            body = entity_json(body_entry, self.root(), {})
            body["Validity"] = "notTrusted"
            raise ODataError(409, "Trust path not established", body={"d": body})
        updated = replace(e, cert=leaf, chain=tuple(rest), modified_by="api", modified=now_wall(), status="changed")
        st.put_entry(updated, "api")
        return self.written([updated])

    def certificate_resource(self, method: str, hexkey: str):
        """A7: PUT CertificateResources('{hex}')/$value -- a trusted certificate."""
        if method != "PUT":
            raise ODataError(405, "Method not allowed on CertificateResources")
        self.guarded(method, "keystore", ROLE_KEYSTORE_EDIT)
        st = self.state
        alias = check_alias(decode_hex(hexkey))
        if len(self.body) > 10240:
            raise ODataError(413, "The certificate exceeds 10 kB")
        update = self.query.get("update", "false").lower() == "true"
        exists = alias in st.system()
        if update and not exists:
            raise ODataError(400, f"Alias '{alias}' not found in the keystore")
        if not update and exists:
            raise ODataError(400, f'Keystore entry with alias "{alias}" already exists')
        cert = parse_certificate(self.body)
        now = now_wall()
        created = st.system()[alias].created if exists else now
        e = Entry(alias=alias, type="Certificate", owner="Tenant Administrator", cert=cert,
                  created_by="api", created=created, modified_by="api", modified=now,
                  status="changed" if exists else "new")
        st.put_entry(e, "api")
        return self.written([e])

    def key_pair_resources(self, method: str):
        """A7: POST KeyPairResources -- a PKCS#12; `update=true` keeps the alias."""
        if method != "POST":
            raise ODataError(405, "Method not allowed on KeyPairResources")
        self.guarded(method, "keystore", ROLE_KEYSTORE_EDIT)
        st = self.state
        body = self.json_body()
        if not body.get("Hexalias"):
            raise ODataError(400, "Property 'Hexalias' is mandatory")
        alias = check_alias(body.get("Alias"))
        update = self.query.get("update", "false").lower() == "true"
        exists = alias in st.system()
        if update and not exists:
            raise ODataError(400, f"Alias '{alias}' not found in the keystore")
        if not update and exists:
            raise ODataError(400, f'Keystore entry with alias "{alias}" already exists')
        try:
            der = base64.b64decode(body.get("Resource") or "", validate=True)
        except binascii.Error:
            raise ODataError(415, "The resource is not a PKCS#12 keystore (base64)") from None
        if len(der) > 30072:
            raise ODataError(413, "The PKCS#12 keystore exceeds 30072 bytes")
        if der[:1] != b"\x30":
            raise ODataError(415, "The resource is not a PKCS#12 keystore")
        password = body.get("Password")
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(
                der, password.encode("utf-8") if password else None
            )
        except ValueError:
            raise ODataError(400, "The PKCS#12 keystore cannot be opened: wrong password or damaged") from None
        if key is None or cert is None:
            raise ODataError(400, "The PKCS#12 keystore holds no key pair with a certificate")
        if not same_key(cert.public_key(), key.public_key()):
            raise ODataError(400, "The certificate does not match the private key")
        now = now_wall()
        created = st.system()[alias].created if exists else now
        e = Entry(alias=alias, type="Key Pair", owner="Tenant Administrator", cert=cert,
                  chain=tuple(extra or ()), key=key, created_by="api", created=created,
                  modified_by="api", modified=now, status="changed" if exists else "new")
        st.put_entry(e, "api")
        return self.written([e])

    def keystore_resources(self, method: str, name: str | None):
        """A7: backup (POST), restore and mass delete (PUT ...('system'))."""
        st = self.state
        self.guarded(method, "keystore", ROLE_KEYSTORE_EDIT if method != "GET" else ROLE_READ)
        if method == "POST" and name is None:
            body = self.json_body()
            if body.get("Name") == "backup_admin_system" and "Resource" not in body:
                # "The backup overwrites the old backup keystore"; SAP entries are not backed up.
                st.keystores["backup_admin_system"] = {
                    a: e for a, e in st.system().items() if e.owner != "SAP"
                }
                return self.written(list(st.keystores["backup_admin_system"].values()))
            raise ODataError(501, "The fake supports only the backup form of POST KeystoreResources")
        if method == "PUT" and name == "system":
            if self.query.get("deleteEntries", "").lower() == "true":
                aliases = split_aliases(self.json_body().get("Aliases") or "")
                removed = []
                for a in aliases:
                    e = st.system().get(a)
                    if e is None:
                        continue
                    if e.owner == "SAP":
                        raise ODataError(403, None)
                    removed.append(replace(e, status="removed"))
                for e in removed:
                    del st.system()[e.alias]
                st.changed("api")
                return self.written(removed, default_return=True)
            if self.query.get("retrieveBackup") == "backup_admin_system":
                backup = st.keystores["backup_admin_system"]
                if not backup:
                    raise ODataError(404, "No backup of the keystore found")
                option = self.query.get("importOption", "overwrite")
                if option == "replace":
                    for a in [a for a, e in st.system().items() if e.owner != "SAP"]:
                        del st.system()[a]
                for a, e in backup.items():
                    st.system()[a] = replace(e, status="unchanged", modified=now_wall(), modified_by="api")
                st.changed("api")
                return self.written([replace(st.system()[a], status="changed") for a in backup], default_return=True)
        if method == "GET" and name in ("system", "backup_admin_system"):
            raise ODataError(501, "The fake does not export JCEKS keystores")
        raise ODataError(405, f"{method} not supported on KeystoreResources by the fake")

    # -- Integration Content (A8) -------------------------------------------------------------

    def designtime(self, method: str, iflow_id: str, version: str, nav: str | None, key: str | None):
        st = self.state
        flow = st.flow(iflow_id)
        if version not in ("active", flow.version):
            raise ODataError(404, f"Integration design time artifact '{iflow_id}' version '{version}' not found")
        if nav is None:
            if method != "GET":
                raise ODataError(405, "Method not allowed on IntegrationDesigntimeArtifacts")
            self.guarded(method, "content", ROLE_CONFIGURE, ROLE_READ)
            return self.one(Entity(
                "IntegrationDesigntimeArtifacts", "com.sap.hci.api.IntegrationDesigntimeArtifact",
                f"(Id='{flow.id}',Version='{flow.version}')", {
                    "Id": ("Edm.String", flow.id), "Version": ("Edm.String", flow.version),
                    "PackageId": ("Edm.String", flow.package_id), "Name": ("Edm.String", flow.name),
                    "Description": ("Edm.String", ""), "Sender": ("Edm.String", ""),
                    "Receiver": ("Edm.String", ""), "ArtifactContent": ("Edm.Binary", None),
                }, deferred=("Configurations", "Resources")))
        if nav == "Configurations" or nav == "Configurations/$count":
            if method != "GET":
                raise ODataError(405, "Method not allowed on Configurations")
            self.guarded(method, "content", ROLE_CONFIGURE)
            items = apply_filter([config_entity(flow, k) for k in flow.params], self.query.get("$filter"))
            if nav.endswith("$count"):
                return 200, "text/plain;charset=utf-8", str(len(items)).encode()
            return self.many("Configurations", items)
        if nav == "$links/Configurations":
            if method != "PUT":
                raise ODataError(405, "Method not allowed on $links/Configurations")
            self.guarded(method, "content", ROLE_CONFIGURE)
            body = self.json_body()
            if "ParameterValue" not in body:
                raise ODataError(400, "Property 'ParameterValue' is mandatory")
            if key not in flow.params:
                if st.settings["unknown_parameter"] == "404":
                    raise ODataError(404, f"Parameter '{key}' is not externalized in '{iflow_id}'")
                return 202, None, b""  # "it is ignored"
            p = flow.params[key]
            p["value"] = str(body["ParameterValue"])
            if body.get("DataType"):
                p["type"] = body["DataType"]
            if "Description" in body:
                p["description"] = body["Description"]
            self.audit_extra["parameter"] = {key: p["value"]}
            return 202, None, b""
        raise ODataError(404, f"Resource not found for the segment '{nav}'")

    def deploy(self, method: str):
        if method != "POST":
            raise ODataError(405, "Method not allowed on DeployIntegrationDesigntimeArtifact")
        self.guarded(method, "content", ROLE_DEPLOY)
        st = self.state
        raw_id, raw_version = self.query.get("Id", ""), self.query.get("Version", "")
        m_id, m_v = re.fullmatch(r"'(.+)'", raw_id), re.fullmatch(r"'(.+)'", raw_version)
        if not m_id or not m_v:
            raise ODataError(400, "Id and Version must be given in single quotes, e.g. Id='flow'")
        flow = st.flow(m_id.group(1))
        if m_v.group(1) not in ("active", flow.version):
            raise ODataError(404, f"Version '{m_v.group(1)}' of '{flow.id}' not found")
        task = st.deploy(flow, "api")
        self.audit_extra["task"] = task.id
        if st.settings["deploy_response"] == "json":
            return 202, "application/json;charset=utf-8", json.dumps({"d": {"TaskId": task.id}}).encode()
        return 202, "text/plain;charset=utf-8", task.id.encode()

    def deploy_status(self, method: str, task_id: str):
        if method != "GET":
            raise ODataError(405, "Method not allowed on BuildAndDeployStatus")
        self.guarded(method, "content", ROLE_DEPLOY, ROLE_READ)
        task = self.state.tasks.get(task_id)
        if task is None:
            raise ODataError(404, f"Task '{task_id}' not found")
        status = task.status if self.state.settings["deploy_status_case"] == "upper" else task.status.title()
        return self.one(Entity("BuildAndDeployStatus", "com.sap.hci.api.BuildAndDeployStatus",
                               f"(TaskId='{task.id}')",
                               {"TaskId": ("Edm.String", task.id), "Status": ("Edm.String", status)}))

    def runtime_artifacts(self, method: str, iflow_id: str | None, nav: str | None):
        st = self.state
        if iflow_id is None:
            if method != "GET":
                raise ODataError(405, "Deploying through IntegrationRuntimeArtifacts is NOT SUPPORTED in CF")
            self.guarded(method, "content", ROLE_READ)
            items = [runtime_entity(f) for f in st.iflows.values() if f.runtime is not None]
            return self.many("IntegrationRuntimeArtifacts", apply_filter(items, self.query.get("$filter")))
        flow = st.iflows.get(iflow_id)
        if method == "DELETE" and nav is None:
            self.guarded(method, "content", ROLE_DEPLOY)
            if flow is None or flow.runtime is None:
                raise ODataError(404, f"Integration runtime artifact '{iflow_id}' not found")
            flow.runtime["status"] = "STOPPING"
            flow.deployed = None
            flow.pending = {"kind": "undeploy", "t0": time.monotonic()}
            return 202, None, b""
        if method != "GET":
            raise ODataError(405, "Method not allowed on IntegrationRuntimeArtifacts")
        self.guarded(method, "content", ROLE_READ)
        if flow is None or flow.runtime is None:
            raise ODataError(404, f"Integration runtime artifact '{iflow_id}' not found")
        if nav == "ErrorInformation/$value":
            if flow.runtime["status"] != "ERROR":
                raise ODataError(404, f"No error information for '{iflow_id}'")
            text = json.dumps({"message": {"subsystemName": "fake", "messageId": "FAKE_DEPLOY_ERROR",
                                           "parameter": [flow.runtime["error"]]},
                               "parameter": [flow.runtime["error"]]})
            return 200, "application/json;charset=utf-8", text.encode()
        if nav is not None:
            raise ODataError(404, f"Resource not found for the segment '{nav}'")
        return self.one(runtime_entity(flow))

    ROUTES = [
        (re.compile(r"KeystoreEntries"), keystore_entries),
        (re.compile(r"KeystoreEntries\('([^']*)'\)(?:/(Certificate/\$value|ChainResource/\$value|ChainCertificates|SigningRequest/\$value|[^?]*))?"), keystore_entry),
        (re.compile(r"Keystores\('([^']*)'\)(?:/(.*))?"), keystores),
        (re.compile(r"KeyPairGenerationRequests"), key_pair_generation),
        (re.compile(r"CertificateChainResources\('([^']*)'\)/\$value"), chain_resource),
        (re.compile(r"CertificateResources\('([^']*)'\)/\$value"), certificate_resource),
        (re.compile(r"KeyPairResources"), key_pair_resources),
        (re.compile(r"KeystoreResources(?:\('([^']*)'\))?"), keystore_resources),
        (re.compile(r"IntegrationDesigntimeArtifacts\(Id='([^']*)',Version='([^']*)'\)(?:/(Configurations/\$count|Configurations|\$links/Configurations)(?:\('([^']*)'\))?)?"), designtime),
        (re.compile(r"DeployIntegrationDesigntimeArtifact"), deploy),
        (re.compile(r"BuildAndDeployStatus\(TaskId='([^']*)'\)"), deploy_status),
        (re.compile(r"IntegrationRuntimeArtifacts(?:\('([^']*)'\))?(?:/(.*))?"), runtime_artifacts),
    ]

    # -- FAKE-ONLY control endpoints ----------------------------------------------------------

    def fake(self, method: str, path: str):
        st = self.state
        ok = lambda obj: (200, "application/json;charset=utf-8", json.dumps(obj).encode())  # noqa: E731
        if path == "/settings":
            if method == "POST":
                for k, v in self.json_body().items():
                    if k not in st.settings:
                        raise ODataError(400, f"unknown setting '{k}'; known: {sorted(st.settings)}")
                    st.settings[k] = check_setting(k, v)
            return ok(st.settings)
        if path == "/faults" and method == "POST":
            body = self.json_body()
            status = int(body.get("status", 503))
            default = {503: "Keystore is locked by another user", 423: "Keystore is locked",
                       429: "Rate limit exceeded"}.get(status, "Injected by the fake")
            scope = body.get("scope", "keystore")
            if scope not in ("keystore", "content", "reads", "all"):
                raise ODataError(400, "scope must be keystore, content, reads or all")
            st.faults.append({"status": status, "calls": int(body.get("calls", 1)), "scope": scope,
                              "message": body.get("message", default)})
            return ok({"faults": st.faults})
        if path == "/deploy-failure" and method == "POST":
            body = self.json_body()
            stage = body.get("stage", "runtime")
            if stage not in ("runtime", "build"):
                raise ODataError(400, "stage must be runtime or build")
            st.deploy_failures.append({"stage": stage, "message": body.get("message", "Injected deploy failure")})
            return ok({"deploy_failures": st.deploy_failures})
        if path == "/csrf/invalidate" and method == "POST":
            st.sessions.clear()
            return ok({"sessions": 0})
        if path == "/tokens/expire" and method == "POST":
            st.tokens.clear()
            return ok({"tokens": 0})
        if path == "/audit":
            if method == "DELETE":
                st.audit.clear()
                return ok({"calls": []})
            since = int(self.query.get("since", 0))
            return ok({"calls": [a for a in st.audit if a["seq"] > since]})
        if path == "/state" and method == "GET":
            return ok(state_summary(st))
        if path.startswith("/keystore/") and method == "POST":
            return ok(self.by_hand(path[len("/keystore/"):]))
        m = re.fullmatch(r"/iflows/([^/]+)/parameters", path)
        if m and method == "POST":
            flow = st.flow(m.group(1))
            for k, v in self.json_body().items():
                flow.params.setdefault(k, {"value": "", "type": "xsd:string", "description": ""})["value"] = str(v)
            return ok({k: v["value"] for k, v in flow.params.items()})
        m = re.fullmatch(r"/iflows/([^/]+)/signer", path)
        if m and method == "POST":
            flow = st.flow(m.group(1))
            body = self.json_body()
            flow.signer = {"rows": body.get("rows", []), "payload_included": body.get("payload_included", True)}
            flow.properties.update(body.get("properties", {}))
            return ok({"signer": flow.signer, "properties": flow.properties})
        m = re.fullmatch(r"/runtime/([^/]+)/sign", path)
        if m and method == "POST":
            flow = st.flow(m.group(1))
            cms, used = runtime_sign(st, flow, self.body)
            self.out_headers["X-Fake-Signer-Aliases"] = ",".join(used)
            self.out_headers["X-Fake-Deployed-Version"] = flow.deployed["version"]
            self.audit_extra["signers"] = used
            return 200, "application/pkcs7-mime", cms
        raise ODataError(404, f"no fake control endpoint {method} {FAKE}{path}")

    def by_hand(self, action: str) -> dict:
        """A change a person makes in the tenant UI: no token, no CSRF, audited as `tenant UI`."""
        st = self.state
        body = self.json_body()
        who = "tenant UI (by hand)"
        self.audit_extra["by_hand"] = action
        if action == "generate":
            e = st.generate({
                "Hexalias": "00", "Alias": body.get("alias"), "CommonName": body.get("common_name", body.get("alias")),
                "Country": body.get("country", "DE"), "KeyType": body.get("key_type", "RSA"),
                "KeySize": body.get("key_size", 2048), "SignatureAlgorithm": "SHA-256/RSA",
                **({"ValidNotAfter": body["valid_not_after"]} if body.get("valid_not_after") else {}),
            }, who)
            return entity_json(entry_entity(e), "", {})
        if action == "delete":
            st.delete(body.get("alias", ""), who)
            return {"deleted": body.get("alias")}
        if action == "rename":
            e = st.rename(body.get("alias", ""), body.get("new_alias", ""), who)
            return entity_json(entry_entity(e), "", {})
        if action == "replace":
            # A new key pair under the same alias (as a PKCS#12 upload with update=true in the UI).
            old = st.entry(body.get("alias", ""))
            if old.owner == "SAP":
                raise ODataError(403, None)
            key = new_key("RSA", int(body.get("key_size", 2048)))
            cert = self_signed(key, old.cert.subject, now_wall() - dt.timedelta(minutes=1),
                               now_wall() + dt.timedelta(days=int(body.get("valid_days", 365))), hashes.SHA256)
            e = replace(old, type="Key Pair", cert=cert, chain=(), key=key, modified_by=who,
                        modified=now_wall(), status="changed")
            st.put_entry(e, who)
            return entity_json(entry_entity(e), "", {})
        if action == "add-certificate":
            # A trusted certificate (a CA's, say) added in the Keystore view (A7: type Certificate).
            alias = check_alias(body.get("alias"))
            if alias in st.system():
                raise ODataError(400, f'Keystore entry with alias "{alias}" already exists')
            cert = parse_certificate((body.get("pem") or "").encode())
            now = now_wall()
            e = Entry(alias=alias, type="Certificate", owner="Tenant Administrator", cert=cert,
                      created_by=who, created=now, modified_by=who, modified=now, status="new")
            st.put_entry(e, who)
            return entity_json(entry_entity(e), "", {})
        raise ODataError(404, f"no change by hand named '{action}' (generate, replace, delete, rename, add-certificate)")


def split_aliases(text: str) -> list[str]:
    """A4: `;` separates aliases in a mass delete; `\\;` and `\\\\` are escapes."""
    out, cur, i = [], "", 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur += text[i + 1]
            i += 2
            continue
        if c == ";":
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    out.append(cur)
    return [a for a in out if a]


def config_entity(flow: IFlow, key: str) -> Entity:
    p = flow.params[key]
    return Entity("Configurations", "com.sap.hci.api.Configuration", f"('{key}')", {
        "ParameterKey": ("Edm.String", key), "ParameterValue": ("Edm.String", p["value"]),
        "DataType": ("Edm.String", p["type"]), "Description": ("Edm.String", p["description"]),
    })


def runtime_entity(flow: IFlow) -> Entity:
    r = flow.runtime
    return Entity("IntegrationRuntimeArtifacts", "com.sap.hci.api.IntegrationRuntimeArtifact", f"('{flow.id}')", {
        "Id": ("Edm.String", flow.id), "Version": ("Edm.String", r["version"]),
        "Name": ("Edm.String", flow.name), "Type": ("Edm.String", "INTEGRATION_FLOW"),
        "DeployedBy": ("Edm.String", r["deployed_by"]),
        "DeployedOn": ("Edm.DateTimeOffset", r["deployed_on"]), "Status": ("Edm.String", r["status"]),
    }, deferred=("ErrorInformation",))


def state_summary(st: State) -> dict:
    def entries(ks):
        return {
            a: {"type": e.type, "owner": e.owner, "status": e.status,
                "fingerprint_sha256": colon_hex(e.cert.fingerprint(hashes.SHA256())),
                "not_after": e.cert.not_valid_after_utc.isoformat(), "chain_length": 1 + len(e.chain)}
            for a, e in ks.items()
        }

    flows = {}
    for f in st.iflows.values():
        flows[f.id] = {
            "designtime": {k: v["value"] for k, v in f.params.items()},
            "deployed": None if f.deployed is None else {k: v["value"] for k, v in f.deployed["params"].items()},
            "deployed_signer_aliases": None if f.deployed is None else [
                resolve(r.get("alias", ""), f.deployed, st.settings) for r in f.deployed["signer"].get("rows", [])
            ],
            "runtime": None if f.runtime is None else {**f.runtime, "deployed_on": f.runtime["deployed_on"].isoformat()},
        }
    return {
        "keystores": {n: entries(ks) for n, ks in st.keystores.items()},
        "runtime_keystore": sorted(st.runtime_keystore()),
        "iflows": flows,
        "tasks": {t.id: {"iflow": t.iflow, "status": t.status} for t in st.tasks.values()},
        "faults": st.faults,
        "deploy_failures": st.deploy_failures,
    }


def check_setting(name: str, value):
    allowed = SETTINGS_HELP[name]
    if isinstance(allowed[0], bool):
        if not isinstance(value, bool):
            raise ODataError(400, f"setting '{name}' takes true or false")
        return value
    if isinstance(allowed[0], (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ODataError(400, f"setting '{name}' takes a number >= 0")
        return value
    if value not in allowed:
        raise ODataError(400, f"setting '{name}' takes one of {list(allowed)}")
    return value


DEFAULT_CONFIG = {
    "client_id": "fake-client",
    "client_secret": "fake-secret",
    "keystore": [{"alias": "signer", "key_size": 2048, "common_name": "Fake signer", "valid_days": 30}],
    "iflows": [{
        "id": "Fake_Outbound_Signer",
        "version": "1.0.0",
        "package_id": "FakePackage",
        "name": "Fake outbound flow with a PKCS#7/CMS Signer",
        # A9: the documented route -- an externalized Content Modifier property read by the row.
        "parameters": [{"key": "SIGNER_ALIAS", "value": "signer", "type": "xsd:string",
                        "description": "Private Key Alias of the PKCS#7/CMS Signer"}],
        "properties": {"signerAlias": "{{SIGNER_ALIAS}}"},
        "signer": {"rows": [{"alias": "${property.signerAlias}", "algorithm": "SHA256/RSA",
                             "include_certificates": True, "include_signing_time": True}],
                   "payload_included": True},
        "deployed": True,
    }],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="FAKE SAP Cloud Integration tenant for tests (not SAP software)")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    ap.add_argument("--config", help="JSON file: client_id, client_secret, roles, token_ttl, keystore, iflows, settings")
    ap.add_argument("--client-id")
    ap.add_argument("--client-secret")
    ap.add_argument("--token-ttl", type=float, help="seconds a token lives (default 43200, A1)")
    ap.add_argument("--roles", help="comma-separated role templates the client has (default: all four of A1)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="initial value of a setting (JSON value or bare word); see README.md")
    args = ap.parse_args(argv)

    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            cfg.update(json.load(f))
    if args.client_id:
        cfg["client_id"] = args.client_id
    if args.client_secret:
        cfg["client_secret"] = args.client_secret
    if args.token_ttl is not None:
        cfg["token_ttl"] = args.token_ttl
    if args.roles is not None:
        cfg["roles"] = [r for r in args.roles.split(",") if r]
    settings = {k: v[0] for k, v in SETTINGS_HELP.items()}
    try:
        for k, v in cfg.get("settings", {}).items():
            if k not in settings:
                raise ODataError(400, f"unknown setting '{k}'")
            settings[k] = check_setting(k, v)
        for item in args.set:
            k, _, v = item.partition("=")
            if k not in settings:
                raise ODataError(400, f"unknown setting '{k}'")
            try:
                value = json.loads(v)
            except json.JSONDecodeError:
                value = v
            settings[k] = check_setting(k, value)
    except ODataError as e:
        print(f"fake_sap_ci: {e.message}", file=sys.stderr)
        return 2

    state = State(cfg, settings)
    Handler.state = state
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    key = {"clientid": state.client_id, "clientsecret": state.client_secret, "url": base,
           "tokenurl": base + TOKEN_PATH}
    service_key = {"oauth": key} if settings["service_key_form"] == "nested" else key
    print(json.dumps({"fake": "sap-ci", "url": base, "api": base + API, "tokenurl": base + TOKEN_PATH,
                      "control": base + FAKE, "service_key": service_key}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
