#!/usr/bin/env python3
"""Telethon's side of tests/e2e/telegram.rs: makes and loads StringSessions with the real
library (PyPI telethon, pinned in tests/python/requirements.txt). Nothing connects to Telegram:
no TelegramClient is created.

  check_telethon.py make DC IP PORT   prints {"session", "dcId", "serverAddress", "port", "authKey"}
  check_telethon.py load              reads {"name": "session string", ...} on stdin; prints, per
                                      name, what Telethon loaded ({"dcId", "serverAddress", "port",
                                      "authKey"}) or {"error": "..."}
authKey is hex. The version goes to stderr.
"""
import json
import os
import sys

import telethon
from telethon.crypto import AuthKey
from telethon.sessions import StringSession


def loaded(s):
    return {
        "dcId": s.dc_id,
        "serverAddress": s.server_address,
        "port": s.port,
        "authKey": s.auth_key.key.hex() if s.auth_key else None,
    }


def main():
    print(f"telethon {telethon.__version__}", file=sys.stderr)
    if sys.argv[1:2] == ["make"]:
        dc, ip, port = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        s = StringSession()
        s.set_dc(dc, ip, port)
        s.auth_key = AuthKey(os.urandom(256))
        out = loaded(s)
        out["session"] = s.save()
        print(json.dumps(out))
    elif sys.argv[1:2] == ["load"]:
        out = {}
        for name, string in json.load(sys.stdin).items():
            try:
                out[name] = loaded(StringSession(string))
            except Exception as e:  # the test asserts on which loads fail
                out[name] = {"error": f"{type(e).__name__}: {e}"[:200]}
        print(json.dumps(out))
    else:
        sys.exit(__doc__)


main()
