#!/usr/bin/python3
"""Faults on the gateway's outputs, against the real daemon: HTTP clients that connect and never
send (slowloris), WebSocket clients that never read, and the MQTT broker killed (SIGKILL) and
restarted. Throughout, the gateway keeps polling the BMS (samples keep coming), the API answers,
the idle connections are closed by the server, and MQTT publishing resumes by itself.
The CAN adapter gone and back is tests/e2e/test_can_daemon.py (test_slcan_adapter_unplugged_
and_plugged_back); a D-Bus daemon restart is not covered here (see docs/reliability.md)."""
import os
import signal
import socket
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultCase, figure, wait_for  # noqa: E402
from gwtest import Mosquitto, Subscriber  # noqa: E402
from webclient import WebSocket  # noqa: E402

SLOW_CLIENTS = 24
WS_CLIENTS = 3


@unittest.skipUnless(os.path.exists(faultlib.gwtest.GW_MOSQUITTO), "mosquitto not installed")
class OutputFaults(FaultCase):
    def test_slowloris_stuck_websockets_and_broker_restart(self):
        broker = self.track(Mosquitto(self.tmp))
        sim = self.start_sim(["--speed", "0", "--current", "10", "--no-sleep"])
        gw = self.start_gateway([sim.link], {"web": {"request_timeout_ms": 2000, "ws_queue_len": 4}},
                                args=["--poll-ms", "200", "--mqtt", "mqtt://127.0.0.1:%d" % broker.port])
        sub = self.track(Subscriber(self.tmp, broker.port, ["tinybms/#"], qos=0))
        sub.wait(lambda m: m[3].startswith("tinybms/"), 60, "a first MQTT message")
        self.wait_samples(gw, 3)

        # --- Slowloris: connections that send nothing, or half a request line, and stay.
        idle = []
        for i in range(SLOW_CLIENTS):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            if i % 2:
                s.sendall(b"GET /api/data HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            idle.append(s)
        # --- WebSocket clients that never read: a tiny receive buffer, live data pushed at them.
        stuck = []
        for _ in range(WS_CLIENTS):
            ws = WebSocket(self.port, "/ws/live", auth=(faultlib.USER, faultlib.PASSWORD), rcvbuf=2048)
            self.assertEqual(ws.status, 101, ws.body)
            stuck.append(ws)
        t0 = time.monotonic()
        # The API answers and the BMS is polled while they hang on.
        for _ in range(5):
            self.assertIn("bank", self.api("/api/data", timeout=20))
        self.wait_samples(gw, 10, what="samples while slow clients hang on")
        figure("slowloris.api_answers_with_clients", SLOW_CLIENTS + WS_CLIENTS)

        # The server closes the idle connections (web.request_timeout_ms = 2 s).
        def closed(s):
            s.settimeout(0.2)
            try:
                return s.recv(4096) == b""
            except socket.timeout:
                return False
            except OSError:
                return True
        for s in idle:
            wait_for(lambda s=s: closed(s), 60, "an idle connection closed by the server")
        figure("slowloris.all_closed_after_s", "%.1f" % (time.monotonic() - t0))
        for s in idle:
            s.close()
        status = self.api("/api/status")["web"]
        figure("ws.dropped", status["ws_dropped"])
        for ws in stuck:
            ws.close()
        self.assert_alive(gw)

        # --- The broker killed and restarted on the same port: polling goes on meanwhile,
        # publishing resumes by itself.
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait()
        broker.proc = None
        t_kill = time.monotonic()
        wait_for(lambda: self.metrics(fresh=False)["mqtt"]["connected"] == 0, 60, "MQTT seen disconnected")
        self.wait_samples(gw, 10, what="samples with the broker gone")
        self.assert_alive(gw)
        sub.stop()
        self._children.remove(sub)
        broker.start()
        t_back = time.monotonic()
        sub = self.track(Subscriber(self.tmp, broker.port, ["tinybms/#"], qos=0, name="sub2"))
        sub.wait(lambda m: m[3].startswith("tinybms/") and not m[1], 90, "a live MQTT message after the restart")
        figure("mqtt.republished_after_restart_s", "%.1f" % (time.monotonic() - t_back))
        figure("mqtt.broker_down_s", "%.1f" % (t_back - t_kill))
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    faultlib.gwtest.main()
