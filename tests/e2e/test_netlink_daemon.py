#!/usr/bin/python3
"""End-to-end test of the network link in the real daemon: tinybms-gw runs in a network namespace
of its own (unshare -n) with a veth pair made there; the test takes the link down and up and
removes and adds the address from outside (nsenter), and checks what an operator sees: the
network log lines, the WIFI_DISCONNECTED alert raised after its delay and cleared, and the
network counters in the metrics. Skipped, with the reason, where namespaces cannot be made.
Addresses come from the documentation range 198.51.100.0/24; nothing is sent anywhere."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import GatewayTestCase, wait_for  # noqa: E402

SETUP = ("ip link set lo up && ip link add gwe0 type veth peer name gwe1 && "
         "ip addr add 198.51.100.5/24 dev gwe0 && ip link set gwe1 up && ip link set gwe0 up && "
         'exec "$0" "$@"')


def why_no_namespace():
    for tool in ("unshare", "nsenter", "ip"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            return "%s not found (util-linux / iproute2)" % tool
    try:
        r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link add gwp0 type veth peer name gwp1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unshare -n failed: %s" % e
    if r.returncode != 0:
        return "cannot make a network namespace with a veth pair here (%s)" % r.stdout.decode().strip()
    return None


NO_NAMESPACE = why_no_namespace()
PASSPHRASE = "sea-otter-42-battery"


@unittest.skipIf(NO_NAMESPACE, "SKIP: %s" % NO_NAMESPACE)
class NetworkLink(GatewayTestCase):
    def start_in_namespace(self, args):
        """The daemon as the last exec of `unshare -n sh -c SETUP`: its PID is the daemon's, in a
        namespace holding lo and the veth pair gwe0 (198.51.100.5) <-> gwe1."""
        saved = gwtest.TINYBMS_GW
        gwtest.TINYBMS_GW = "unshare"
        try:
            return self.start_daemon(["-n", "sh", "-c", SETUP, saved] + list(args))
        finally:
            gwtest.TINYBMS_GW = saved

    def ns(self, gw, command):
        r = subprocess.run(["nsenter", "-t", str(gw.proc.pid), "-n", "sh", "-c", command],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, "%s: %s" % (command, r.stdout.decode()))

    def test_link_and_address_changes_reach_log_alerts_and_metrics(self):
        self.write_config({"schema_version": 1, "network": {"interface": "gwe0"},
                           "alerts": {"raise_delay_ms": 1000, "clear_delay_ms": 1000}})
        sim = self.start_sim()
        dump = os.path.join(self.tmp, "metrics.prom")
        gw = self.start_in_namespace(["--uart", sim.link, "--metrics-dump", dump])
        gw.wait_log(r"net_link: connected: 198\.51\.100\.5 on gwe0 \(address usable\)", 60)
        gw.wait_log(r"net_link: watching gwe0", 60)

        # the far end goes away: carrier lost -> disconnected, then the alert after its delay
        mark = len(gw.stderr())
        self.ns(gw, "ip link set gwe1 down")
        gw.wait_log(r"net_link: disconnected: gwe0 lost its address 198\.51\.100\.5 \(link down\)", 60, mark)
        gw.wait_log(r"raised WIFI_DISCONNECTED .*Network link gwe0 down", 60, mark)
        mark = len(gw.stderr())
        self.ns(gw, "ip link set gwe1 up")
        gw.wait_log(r"net_link: connected: 198\.51\.100\.5 on gwe0", 60, mark)
        gw.wait_log(r"cleared WIFI_DISCONNECTED", 60, mark)

        # the address removed, another one given (DHCP renewing with a new lease)
        mark = len(gw.stderr())
        self.ns(gw, "ip addr del 198.51.100.5/24 dev gwe0")
        gw.wait_log(r"net_link: disconnected: gwe0 lost its address 198\.51\.100\.5 \(no address\)", 60, mark)
        self.ns(gw, "ip addr add 198.51.100.6/24 dev gwe0")
        gw.wait_log(r"net_link: connected: 198\.51\.100\.6 on gwe0", 60, mark)

        # the counters
        gw.proc.send_signal(signal.SIGUSR2)
        wait_for(lambda: "metrics written to" in gw.stderr(), 60, "the metrics dump")
        with open(dump) as f:
            text = f.read()
        values = {}
        for line in text.splitlines():
            if line.startswith("tinybms_gw_network_"):
                name, v = line.rsplit(" ", 1)
                values[name] = float(v)
        self.assertEqual(values["tinybms_gw_network_watching"], 1)
        self.assertEqual(values["tinybms_gw_network_connected"], 1)
        self.assertEqual(values["tinybms_gw_network_connects_total"], 3)
        self.assertEqual(values["tinybms_gw_network_disconnects_total"], 2)
        self.assertEqual(values["tinybms_gw_network_reconnects_total"], 2)
        self.assertEqual(values["tinybms_gw_network_link_downs_total"], 1)
        self.assertEqual(values["tinybms_gw_network_wireless"], 0)
        self.assertIn('address="198.51.100.6"', gw.stderr())  # the task-stats line of the network module
        self.stop_daemon_cleanly(gw)

    def test_mqtt_starts_over_at_once_when_the_address_changes(self):
        """A new address (a new DHCP lease) leaves the broker connection's socket dead: the
        gateway connects again at once instead of waiting for the keepalive (60 s here) to
        notice. The broker listens in the daemon's namespace on the far end (198.51.100.1)."""
        self.write_config({"schema_version": 1, "network": {"interface": "gwe0"},
                           "mqtt": {"keepalive_s": 60}})
        sim = self.start_sim()
        broker = gwtest.Mosquitto(self.tmp, start=False)
        with open(broker.conf) as f:
            conf = f.read().replace("listener %d 127.0.0.1" % broker.port, "listener %d 198.51.100.1" % broker.port)
        with open(broker.conf, "w") as f:
            f.write(conf)
        gw = self.start_in_namespace(["--uart", sim.link, "--mqtt", "mqtt://198.51.100.1:%d" % broker.port])
        gw.wait_log(r"net_link: connected: 198\.51\.100\.5 on gwe0", 60)
        self.ns(gw, "ip addr add 198.51.100.1/24 dev gwe1")
        log = open(os.path.join(self.tmp, "broker-ns.log"), "wb")
        proc = subprocess.Popen(["nsenter", "-t", str(gw.proc.pid), "-n", gwtest.GW_MOSQUITTO, "-c", broker.conf],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            gw.wait_log(r"mqtt: connected to 198\.51\.100\.1:%d" % broker.port, 60)
            mark = len(gw.stderr())
            # the new address first, then the old one goes: the link never lacks an address (the
            # kernel keeps the second one only with promote_secondaries)
            self.ns(gw, "sysctl -qw net.ipv4.conf.gwe0.promote_secondaries=1 && "
                        "ip addr add 198.51.100.7/24 dev gwe0 && ip addr del 198.51.100.5/24 dev gwe0")
            gw.wait_log(r"net_link: connected: 198\.51\.100\.7 on gwe0", 60, mark)
            gw.wait_log(r"reconnecting now: the network address changed \(198\.51\.100\.5 -> 198\.51\.100\.7\)",
                        60, mark)
            gw.wait_log(r"mqtt: connected to 198\.51\.100\.1:%d" % broker.port, 60, mark)
            wait_for(lambda: gwtest.read_text(log.name).count("New client connected") >= 2, 30,
                     "the broker seeing the gateway's second connection")
            self.assertNotIn("connection lost", gw.stderr()[mark:], "started over before the keepalive noticed")
            self.stop_daemon_cleanly(gw)
        finally:
            gwtest.stop_process(proc)
            log.close()

    def test_asks_wpa_supplicant_to_join_and_reconnect_while_down(self):
        """network.reconnect wpa_supplicant: while the link is down, the gateway joins the
        configured SSID and asks for a reconnection, 1 s after the loss then 2 s later; the
        passphrase never leaves it (the derived WPA2 key does)."""
        ctrl = os.path.join(self.tmp, "wpa")
        os.makedirs(ctrl)
        psk = hashlib.pbkdf2_hmac("sha1", PASSPHRASE.encode(), b"IEEE", 4096, 32).hex()  # WPA2-Personal
        self.write_config({"schema_version": 1,
                           "network": {"interface": "gwe0", "reconnect": "wpa_supplicant", "wpa_ctrl_dir": ctrl,
                                       "wifi_ssid": "IEEE", "wifi_password": PASSPHRASE}})
        sim = self.start_sim()
        gw = self.start_in_namespace(["--uart", sim.link])
        gw.wait_log(r"net_link: watching gwe0", 60)
        # wpa_supplicant answers to the address the request came from, in the daemon's namespace
        log = os.path.join(self.tmp, "wpa.log")
        fake = subprocess.Popen(["nsenter", "-t", str(gw.proc.pid), "-n", sys.executable,
                                 os.path.join(gwtest.SOURCE_DIR, "tests", "e2e", "fake_wpa_supplicant.py"),
                                 ctrl, "gwe0", log], stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(log + ".ready"), 30, "the fake wpa_supplicant")
            mark = len(gw.stderr())
            self.ns(gw, "ip link set gwe1 down")
            gw.wait_log(r"net_link: asked wpa_supplicant to join IEEE and reconnect \(attempt 1; next in 2 s", 60, mark)
            gw.wait_log(r"net_link: asked wpa_supplicant to join IEEE and reconnect \(attempt 2; next in 4 s", 60, mark)
            commands = gwtest.read_text(log).splitlines()
            self.assertEqual(commands[:6], ["LIST_NETWORKS", "ADD_NETWORK", "SET_NETWORK 1 ssid 49454545",
                                            "SET_NETWORK 1 psk " + psk,
                                            "SELECT_NETWORK 1", "RECONNECT"])
            self.assertNotIn(PASSPHRASE, gwtest.read_text(log))
            self.assertNotIn(PASSPHRASE, gw.stderr())
            # back: no more requests once connected (the count is read after the link is up)
            self.ns(gw, "ip link set gwe1 up")
            gw.wait_log(r"net_link: connected: 198\.51\.100\.5 on gwe0", 60, mark)
            self.stop_daemon_cleanly(gw)
            self.assertEqual(gwtest.read_text(log).count("RECONNECT"), gw.stderr().count("asked wpa_supplicant"))
        finally:
            gwtest.stop_process(fake)

    def test_start_without_the_interface(self):
        self.write_config({"schema_version": 1, "network": {"interface": "wlan7"}})
        sim = self.start_sim()
        gw = self.start_in_namespace(["--uart", sim.link])
        gw.wait_log(r"net_link: not connected: wlan7 \(interface absent\)", 60)
        gw.wait_summaries(2, 60)  # the battery side runs on
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
