#!/usr/bin/python3
"""Keeps a running gateway busy for `make valgrind` and `make tsan` (tests/security/run-*): four
threads of web requests (reads, a CSRF-protected write, wrong logins, refused bodies) and two
WebSocket clients, for SECONDS, so that the web workers, the event bus, the services and the
WebSocket writers all run at once. Exit status 1 when the gateway stops answering.

  exercise.py PORT PASSWORD SECONDS"""
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from webclient import WebSocket, http  # noqa: E402

port, password, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
admin = ("admin", password)
end = time.monotonic() + seconds
errors = []
counts = {"requests": 0, "ws_messages": 0}
lock = threading.Lock()


def count(key, n=1):
    with lock:
        counts[key] += n


def reader():
    paths = ("/api/status", "/api/data", "/api/limits", "/api/config", "/api/alerts", "/api/history",
             "/metrics", "/api/metrics", "/api/ota/status", "/index.html", "/api/bms/settings")
    i = 0
    while time.monotonic() < end:
        try:
            s, h, b = http(port, "GET", paths[i % len(paths)], auth=admin, timeout=120)
            if s >= 500:
                errors.append("%s: %d" % (paths[i % len(paths)], s))
            count("requests")
        except OSError as e:
            errors.append("%s: %s" % (paths[i % len(paths)], e))
        i += 1


def writer():
    while time.monotonic() < end:
        try:
            tok = json.loads(http(port, "GET", "/api/security/csrf", auth=admin, timeout=120)[2])["token"]
            http(port, "POST", "/api/alerts/ack", body={}, auth=admin, headers={"X-CSRF-Token": tok}, timeout=120)
            http(port, "POST", "/api/config", body={"history": {"retention_days": 7}}, auth=admin,
                 headers={"X-CSRF-Token": tok}, timeout=120)
            http(port, "POST", "/api/config", body=b"{bad", auth=admin,
                 headers={"X-CSRF-Token": tok, "Content-Type": "application/json"}, timeout=120)
            http(port, "GET", "/api/status", auth=("admin", "wrong"), source="127.0.0.7", timeout=120)
            count("requests", 5)
        except (OSError, ValueError, KeyError) as e:
            errors.append("writer: %s" % e)


def listener(path):
    try:
        ws = WebSocket(port, path, auth=admin, origin="http://127.0.0.1:%d" % port, timeout=120)
        if ws.status != 101:
            errors.append("%s: %d" % (path, ws.status))
            return
        while time.monotonic() < end:
            try:
                ws.recv_json(timeout=max(0.5, end - time.monotonic()))
                count("ws_messages")
            except (OSError, EOFError):
                break
        ws.close()
    except OSError as e:
        errors.append("%s: %s" % (path, e))


threads = [threading.Thread(target=f, args=a) for f, a in ((reader, ()), (reader, ()), (writer, ()),
                                                           (listener, ("/ws/live",)), (listener, ("/ws/can",)))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("exercise: %d requests, %d WebSocket messages in %.0f s, %d errors%s"
      % (counts["requests"], counts["ws_messages"], seconds, len(errors), (": " + "; ".join(errors[:5])) if errors else ""))
sys.exit(1 if errors or counts["requests"] == 0 else 0)
