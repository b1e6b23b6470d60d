#!/usr/bin/env python3
"""A loopback SMTP server for the mail tests (aiosmtpd's Controller).

Listens on 127.0.0.1:PORT, requires AUTH (PLAIN or LOGIN, allowed without TLS on
loopback) with --user/--password when given, and writes every accepted message to
DIR as one JSON file: envelope, headers, the decoded text and HTML parts, and whether
it came over TLS. With --tls starttls (STARTTLS offered and required before any other
command) or --tls implicit (TLS from the first byte), --cert and --key name the
server's PEM certificate chain and key; the default, --tls none, is plain SMTP.
Prints "ready" once listening; stops when stdin closes or on SIGTERM.
"""

import argparse
import email
import json
import os
import ssl
import sys
import time
import uuid
from email import policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": bool(session.authenticated),
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.json"
        tmp = os.path.join(self.out, "." + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, name))
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    kwargs = {}
    if a.user is not None:
        kwargs = dict(
            authenticator=authenticator(a.user, a.password or ""),
            auth_required=True,
            auth_require_tls=False,
        )
    tls = None
    if a.tls != "none":
        if not (a.cert and a.key):
            p.error("--tls starttls|implicit needs --cert and --key")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.cert, a.key)
    if a.tls == "starttls":
        kwargs.update(require_starttls=True, tls_context=tls)
    if a.tls == "implicit":
        kwargs["ssl_context"] = tls
    c = Controller(Handler(a.dir), hostname="127.0.0.1", port=a.port, **kwargs)
    c.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        c.stop()


if __name__ == "__main__":
    main()
