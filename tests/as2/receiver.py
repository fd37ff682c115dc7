"""A loopback AS2 receiver built on pyas2lib, for rekey's tests.

rekey confirms a receiver's trust step by sending an AS2 test message and reading the signed
MDN. To test that against an AS2 implementation not written in this repository, this script
wraps pyas2lib (PyPI) in a small HTTP server on 127.0.0.1:

- ``POST /as2``: an AS2 message. pyas2lib looks up the organization named in ``AS2-To`` and the
  partner named in ``AS2-From``, verifies the signature against that partner's one certificate
  (its trust store) and answers with its synchronous MDN, signed with the organization's key.
- ``POST /admin/<org>``: JSON ``{"key_pem", "cert_pem", "partner", "partner_cert_pem", "mode"}``
  replaces that organization's configuration: its MDN-signing key and certificate, the partner
  it accepts and the certificate it trusts for that partner (what a receiver administrator
  installs), and how it misbehaves (``mode``: ``normal``; ``http-500`` answers an error page;
  ``wrong-mic`` reports a MIC other than the one it computed, still signed; ``hang`` answers
  only after 30 s).

Each test uses its own organization name, so tests sharing one receiver do not interfere.
On start it prints ``listening <port>`` on stdout (the port is chosen by the system).
"""

import json
import logging
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Workaround, visible on purpose: pyas2lib 1.4.4 depends on oscrypto 1.3.0, which finds the
# OpenSSL version with the pattern r'\b(\d\.\d\.\d[a-z]*)\b'. It allows one digit per
# component, so "OpenSSL 3.0.13" (any 3.0.1x and later, as shipped by current distributions)
# does not match and importing oscrypto fails with "Error detecting the version of
# libcrypto". oscrypto's own later fix widens the pattern to several digits per component; we
# apply the same correction while oscrypto is first imported, and only to that one pattern.
_ONE_DIGIT_VERSION = "\\b(\\d\\.\\d\\.\\d[a-z]*)\\b"
_FIXED_VERSION = "\\b(\\d+\\.\\d+\\.\\d+[a-z]*)\\b"
_real_search = re.search


def _search_with_fixed_version(pattern, string, flags=0):
    if pattern == _ONE_DIGIT_VERSION:
        pattern = _FIXED_VERSION
    return _real_search(pattern, string, flags)


re.search = _search_with_fixed_version
try:
    import oscrypto.asymmetric  # noqa: F401  (loads libcrypto and detects its version)
finally:
    re.search = _real_search

from pyas2lib import Mdn, Message, Organization, Partner  # noqa: E402

# pyas2lib logs a traceback for every message it refuses, which the negative tests provoke on
# purpose; REKEY_AS2_DEBUG=1 shows them.
if not os.environ.get("REKEY_AS2_DEBUG"):
    logging.getLogger("pyas2lib").setLevel(logging.CRITICAL)

ORGS = {}
LOCK = threading.Lock()


def configure(name, cfg):
    org = Organization(
        as2_name=name,
        sign_key=(cfg["key_pem"] + "\n" + cfg["cert_pem"]).encode(),
    )
    partner = Partner(
        as2_name=cfg["partner"],
        verify_cert=cfg["partner_cert_pem"].encode(),
        mdn_mode="SYNC",
        mdn_digest_alg="sha256",
    )
    with LOCK:
        ORGS[name] = (org, partner, cfg.get("mode", "normal"))


def lookup(name):
    with LOCK:
        return ORGS.get(name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length)

    def do_POST(self):
        body = self._body()
        if self.path.startswith("/admin/"):
            try:
                configure(self.path[len("/admin/"):], json.loads(body))
            except Exception as e:  # report configuration errors to the test
                return self._answer(400, {}, repr(e).encode())
            return self._answer(204, {}, b"")
        if self.path != "/as2":
            return self._answer(404, {}, b"not found")
        org_name = (self.headers.get("AS2-To") or "").strip('"')
        entry = lookup(org_name)
        mode = entry[2] if entry else "normal"
        if mode == "http-500":
            return self._answer(500, {"Content-Type": "text/plain"}, b"AS2 server error")
        if mode == "hang":
            time.sleep(30)
        raw = b"".join(
            f"{k}: {v}\r\n".encode() for k, v in self.headers.items()
        ) + b"\r\n" + body
        message = Message()
        status, _exc, mdn = message.parse(
            raw,
            find_org_cb=lambda name: entry[0] if entry and name == org_name else None,
            find_partner_cb=lambda name: entry[1] if entry and name == entry[1].as2_name else None,
        )
        if mode == "wrong-mic" and message.mic:
            message.mic = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            mdn = Mdn(mdn_mode="SYNC", digest_alg=mdn.digest_alg)
            mdn.build(message=message, status=status)
        if mdn is None:
            return self._answer(400, {"Content-Type": "text/plain"}, b"no MDN requested")
        headers = dict(mdn.headers)
        return self._answer(200, headers, mdn.content)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    # The test binary holds our stdin; when it exits we stop too.
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
