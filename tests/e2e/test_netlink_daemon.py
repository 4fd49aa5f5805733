#!/usr/bin/python3
"""End-to-end test of the network link in the real daemon: tinybms-gw runs in a network namespace
of its own (unshare -n) with a veth pair made there; the test takes the link down and up and
removes and adds the address from outside (nsenter), and checks what an operator sees: the
network log lines, the WIFI_DISCONNECTED alert raised after its delay and cleared, and the
network counters in the metrics. Skipped, with the reason, where namespaces cannot be made.
Addresses come from the documentation range 198.51.100.0/24; nothing is sent anywhere."""
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

    def test_start_without_the_interface(self):
        self.write_config({"schema_version": 1, "network": {"interface": "wlan7"}})
        sim = self.start_sim()
        gw = self.start_in_namespace(["--uart", sim.link])
        gw.wait_log(r"net_link: not connected: wlan7 \(interface absent\)", 60)
        gw.wait_summaries(2, 60)  # the battery side runs on
        self.stop_daemon_cleanly(gw)


if __name__ == "__main__":
    gwtest.main()
