#!/usr/bin/python3
"""End-to-end: tinybms-sim -> tinybms-gw --dbus -> a private dbus-daemon started here, read with
Python dbus (Debian python3-dbus), dbus-send and gdbus, as a GX reads a battery service.

A peer process (this file with --peer, GLib main loop) plays com.victronenergy.settings (answers
AddSettings, allocates the device instance, changes it on request) and records every BusItem
signal of the battery service, with a GetItems snapshot taken when the name appears, so the test
can replay the signals over the snapshot: each ItemsChanged must carry only changes, and the
replayed state must equal a fresh GetItems.

Checked: every path against the simulator's state, the limits against the CAN output's 0x351 (a
candump log of the same run), the shapes of GetItems and GetValue/GetText on "/" and on nodes,
introspection, SetValue refused on read-only paths, the limits invalid when the BMS goes silent
and back when it answers again, and on SIGTERM every value invalid before the name goes."""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa: E402
from gwtest import Daemon, GatewayTestCase, read_text, stop_process, wait_for  # noqa: E402

BUSITEM = "com.victronenergy.BusItem"
SETTINGS = "com.victronenergy.settings"
INSTANCE_FROM_SETTINGS = 7


def unwrap(v):
    """dbus-python value -> plain Python; the invalid value (empty int32 array) -> None."""
    import dbus
    if isinstance(v, dbus.Array):
        if len(v) == 0 and v.signature == "i":
            return None
        return [unwrap(x) for x in v]
    if isinstance(v, dbus.Dictionary):
        return {str(k): unwrap(x) for k, x in v.items()}
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16, dbus.UInt32, dbus.UInt64, dbus.Byte)):
        return int(v)
    if isinstance(v, dbus.Double):
        return float(v)
    if isinstance(v, (dbus.String, dbus.ObjectPath)):
        return str(v)
    return v


# ---------------------------------------------------------------------------------------------
# The peer: fake localsettings + signal recorder (runs in its own process, GLib main loop)

def peer_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--settings", action="store_true")
    ap.add_argument("--preset", action="append", default=[], help="PATH=INT: a setting's stored value")
    a = ap.parse_args(argv)

    import dbus
    import dbus.service
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(a.address)
    out = open(a.out, "a")

    def log(doc):
        out.write(json.dumps(doc) + "\n")
        out.flush()

    keep = []
    if a.settings:
        values = {}
        items = {}
        presets = {p.split("=", 1)[0]: int(p.split("=", 1)[1]) for p in a.preset}

        def wrap(v):
            if isinstance(v, bool) or isinstance(v, int):
                return dbus.Int32(int(v), variant_level=1)
            if isinstance(v, float):
                return dbus.Double(v, variant_level=1)
            return dbus.String(str(v), variant_level=1)

        class Setting(dbus.service.Object):
            def __init__(self, path):
                dbus.service.Object.__init__(self, bus, path)
                self.path = path

            @dbus.service.method(BUSITEM, out_signature="v")
            def GetValue(self):
                return wrap(values[self.path])

            @dbus.service.method(BUSITEM, out_signature="s")
            def GetText(self):
                return str(values[self.path])

            @dbus.service.method(BUSITEM, in_signature="v", out_signature="i")
            def SetValue(self, value):
                values[self.path] = unwrap(value)
                log({"event": "SetValue", "path": self.path, "value": values[self.path]})
                self.PropertiesChanged({"Value": wrap(values[self.path]),
                                        "Text": dbus.String(str(values[self.path]), variant_level=1)})
                return 0

            @dbus.service.signal(BUSITEM, signature="a{sv}")
            def PropertiesChanged(self, changes):
                pass

        class Root(dbus.service.Object):
            @dbus.service.method("com.victronenergy.Settings", in_signature="aa{sv}", out_signature="aa{sv}")
            def AddSettings(self, entries):
                reply = []
                for e in entries:
                    path, default = str(e["path"]), unwrap(e["default"])
                    log({"event": "AddSettings", "path": path, "default": default})
                    if path not in values:
                        # localsettings hands out the next free instance of the class.
                        if path.endswith("/ClassAndVrmInstance") and str(default).startswith("battery:"):
                            values[path] = "battery:%d" % INSTANCE_FROM_SETTINGS
                        else:
                            values[path] = presets.get(path, default)
                        items[path] = Setting(path)
                    reply.append({"error": dbus.Int32(0), "path": path, "value": wrap(values[path])})
                return dbus.Array(reply, signature="a{sv}")

            @dbus.service.method("org.tinybms.Test", in_signature="ss")
            def Change(self, path, value):
                items[path].SetValue(value)

        keep.append(Root(bus, "/"))
        keep.append(dbus.service.BusName(SETTINGS, bus))

    state = {"owner": None}

    def on_busitem(*args, **kw):
        if kw.get("sender") != state["owner"] or state["owner"] is None:
            return
        member, path = kw["member"], kw["path"]
        if member == "ItemsChanged":
            log({"event": "ItemsChanged", "t": time.monotonic(),
                 "items": {str(p): unwrap(c["Value"]) for p, c in args[0].items()},
                 "texts": {str(p): unwrap(c.get("Text")) for p, c in args[0].items()}})
        elif member == "PropertiesChanged":
            log({"event": "PropertiesChanged", "path": str(path), "value": unwrap(args[0]["Value"]),
                 "text": unwrap(args[0].get("Text"))})

    def on_snapshot(items):
        log({"event": "snapshot", "items": {str(p): unwrap(v["Value"]) for p, v in items.items()}})

    def on_owner(name, old, new):
        if new:
            state["owner"] = str(new)
            log({"event": "owner", "t": time.monotonic()})
            bus.call_async(a.target, "/", BUSITEM, "GetItems", "", [], reply_handler=on_snapshot,
                           error_handler=lambda e: log({"event": "snapshot_error", "error": str(e)}))
        else:
            log({"event": "gone", "t": time.monotonic()})
            state["owner"] = None

    bus.add_signal_receiver(on_busitem, dbus_interface=BUSITEM, member_keyword="member", path_keyword="path",
                            sender_keyword="sender")
    bus.add_signal_receiver(on_owner, "NameOwnerChanged", "org.freedesktop.DBus", arg0=a.target)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.idle_add(lambda: open(a.ready, "w").close() and False)
    loop.run()
    out.close()
    return 0


# ---------------------------------------------------------------------------------------------
# Test-side helpers

class PrivateBus:
    """dbus-daemon --session on its own socket, for this test only."""

    def __init__(self, workdir):
        self._err = open(os.path.join(workdir, "dbus-daemon.stderr"), "wb")
        self.proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("unix:"):
            raise AssertionError("dbus-daemon printed %r" % line)
        self.address = line
        import dbus
        self.conn = dbus.bus.BusConnection(self.address)

    def env(self):
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    def stop(self):
        try:
            self.conn.close()
        except Exception:
            pass
        stop_process(self.proc)
        self.proc.stdout.close()
        self._err.close()


class Peer:
    def __init__(self, workdir, bus, target, settings, presets=()):
        self.out = os.path.join(workdir, "peer.jsonl")
        ready = os.path.join(workdir, "peer.ready")
        self._err_path = os.path.join(workdir, "peer.stderr")
        self._err = open(self._err_path, "wb")
        args = [gwtest.SYSTEM_PYTHON, os.path.abspath(__file__), "--peer", "--address", bus.address,
                "--target", target, "--out", self.out, "--ready", ready]
        if settings:
            args.append("--settings")
        for p in presets:
            args += ["--preset", p]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("peer exited: %s" % read_text(self._err_path)[-2000:])
            return os.path.exists(ready)
        wait_for(up, 60, "the D-Bus peer")

    def events(self, kind=None):
        out = []
        for line in read_text(self.out).splitlines():
            if not line.endswith("}"):
                continue
            doc = json.loads(line)
            if kind is None or doc["event"] == kind:
                out.append(doc)
        return out

    def stop(self):
        stop_process(self.proc)
        self._err.close()


def last_351(can_log):
    """(CVL V, CCL A, DCL A, discharge V) of the newest 0x351 in a candump -l file, or None."""
    frames = re.findall(r"can0 351#([0-9A-F]{16})", read_text(can_log))
    if not frames:
        return None
    b = bytes.fromhex(frames[-1])
    return (int.from_bytes(b[0:2], "little") / 10.0, int.from_bytes(b[2:4], "little", signed=True) / 10.0,
            int.from_bytes(b[4:6], "little", signed=True) / 10.0, int.from_bytes(b[6:8], "little") / 10.0)


class DbusDaemon(GatewayTestCase):
    def start_bus(self):
        return self.track(PrivateBus(self.tmp))

    def start_gw(self, bus, args, name="gw"):
        d = Daemon(self.tmp, list(args) + ["--data-dir", self.data_dir, "-q"], name, env=bus.env())
        return self.track(d)

    def wait_name(self, bus, name, present=True, timeout=60):
        return wait_for(lambda: bool(bus.conn.name_has_owner(name)) == present, timeout,
                        "%s %s the bus" % (name, "on" if present else "off"))

    def call(self, bus, name, path, member, *args, iface=BUSITEM):
        obj = bus.conn.get_object(name, path, introspect=False)
        return getattr(obj, member)(*args, dbus_interface=iface)

    def value(self, bus, name, path):
        return unwrap(self.call(bus, name, path, "GetValue"))

    def items(self, bus, name):
        return {str(p): unwrap(v["Value"]) for p, v in self.call(bus, name, "/", "GetItems").items()}

    def test_battery_service_values_shapes_changes_staleness_and_stop(self):
        import dbus
        svc = "com.victronenergy.battery.bms"  # the simulator's --link is <tmp>/bms
        bus = self.start_bus()
        peer = self.track(Peer(self.tmp, bus, svc, settings=True))
        can_log = os.path.join(self.tmp, "can.log")
        # Frozen model: the values the service shows must equal the simulator's state.
        sim = self.start_sim(["--speed", "0", "--current", "25"])
        gw = self.start_gw(bus, ["--uart", sim.link, "--dbus", "--can", "log:" + can_log, "--poll-ms", "500"])
        self.wait_name(bus, svc)
        gw.wait_log(r"on D-Bus as %s \(DeviceInstance 7 from com.victronenergy.settings" % re.escape(svc), 30)
        st = sim.state()

        # The capacity comes with the BMS settings, read just after the first live data.
        items = wait_for(lambda: (lambda it: it if it.get("/Dc/0/Voltage") is not None
                                  and it.get("/InstalledCapacity") is not None else None)(self.items(bus, svc)),
                         30, "a measured voltage and the installed capacity")

        with self.subTest("shapes of GetItems, GetValue and GetText on / and on a node"):
            raw = self.call(bus, svc, "/", "GetItems")
            self.assertEqual(raw.signature, "sa{sv}")
            for path, entry in raw.items():
                self.assertTrue(path.startswith("/"), path)
                self.assertEqual(set(entry.keys()), {"Value", "Text"}, path)
                self.assertIsInstance(entry["Text"], dbus.String, path)
            root = unwrap(self.call(bus, svc, "/", "GetValue"))
            self.assertEqual({"/" + k for k in root}, set(items))
            texts = self.call(bus, svc, "/", "GetText")
            self.assertEqual(texts.signature, "ss")
            self.assertEqual(texts["Dc/0/Voltage"], "%.2fV" % items["/Dc/0/Voltage"])
            self.assertEqual(texts["TimeToGo"], "---")  # charging: invalid
            dc = unwrap(self.call(bus, svc, "/Dc", "GetValue"))
            self.assertEqual(set(dc), {"0/Voltage", "0/Current", "0/Power", "0/Temperature"})
            self.assertEqual(unwrap(self.call(bus, svc, "/Dc/0", "GetText"))["Voltage"], texts["Dc/0/Voltage"])
            self.assertEqual(self.call(bus, svc, "/ProductId", "GetText"), "0xFFFF")
            xml = self.call(bus, svc, "/", "Introspect", iface="org.freedesktop.DBus.Introspectable")
            for child in ("Dc", "Info", "Soc", "Mgmt", "Alarms", "System", "Voltages"):
                self.assertIn('<node name="%s"/>' % child, xml)
            leaf = self.call(bus, svc, "/Soc", "Introspect", iface="org.freedesktop.DBus.Introspectable")
            self.assertIn('name="SetValue"', leaf)
            self.assertIn('name="PropertiesChanged"', leaf)

        with self.subTest("identity and the settings service"):
            self.assertEqual(items["/DeviceInstance"], INSTANCE_FROM_SETTINGS)
            self.assertEqual(items["/ProductId"], 0xFFFF)
            self.assertEqual(items["/ProductName"], "TinyBMS")
            self.assertEqual(items["/Mgmt/ProcessName"], "tinybms-gw")
            self.assertEqual(items["/Mgmt/Connection"], "Serial " + sim.link)
            self.assertEqual(items["/Connected"], 1)
            serial = gw.wait_log(r"serial ([0-9A-F]{24})", 30).group(1)
            wait_for(lambda: self.value(bus, svc, "/Serial") == serial, 30, "/Serial = the BMS serial")
            self.assertRegex(self.value(bus, svc, "/FirmwareVersion"), r"^\d+ \(internal \d+\)$")
            added = {e["path"]: e["default"] for e in peer.events("AddSettings")}
            self.assertEqual(added.get("/Settings/Devices/tinybms_bms/ClassAndVrmInstance"), "battery:1")
            self.assertIn("/Settings/Devices/tinybms_bms/CustomName", added)

        with self.subTest("values against the simulator"):
            n = st["cell_count"]
            self.assertAlmostEqual(items["/Dc/0/Voltage"], st["pack_v"], delta=0.0051)
            self.assertAlmostEqual(items["/Dc/0/Current"], st["current_a"], delta=0.051)
            self.assertGreater(items["/Dc/0/Current"], 0, "charging is positive")
            self.assertAlmostEqual(items["/Dc/0/Power"], st["pack_v"] * st["current_a"], delta=1.0)
            self.assertAlmostEqual(items["/Dc/0/Temperature"], st["temp_ext1_c"], delta=0.051)
            self.assertAlmostEqual(items["/Soc"], st["soc_pct"], delta=0.051)
            self.assertAlmostEqual(items["/Soh"], st["soh_pct"], delta=0.051)
            self.assertAlmostEqual(items["/InstalledCapacity"], 280.0, delta=0.01)
            self.assertAlmostEqual(items["/ConsumedAmphours"], -280.0 * (100 - st["soc_pct"]) / 100, delta=0.2)
            self.assertEqual(items["/System/NrOfCellsPerBattery"], n)
            self.assertAlmostEqual(items["/System/MinCellVoltage"], st["min_cell_mv"] / 1000.0, delta=0.0011)
            self.assertAlmostEqual(items["/System/MaxCellVoltage"], st["max_cell_mv"] / 1000.0, delta=0.0011)
            self.assertEqual(items["/System/MinVoltageCellId"], "C%d" % st["min_cell"])
            self.assertEqual(items["/System/MaxVoltageCellId"], "C%d" % st["max_cell"])
            self.assertAlmostEqual(items["/System/MaxCellTemperature"], st["temp_ext1_c"], delta=0.051)
            self.assertEqual(items["/System/MaxTemperatureCellId"], "T1")
            self.assertEqual((items["/System/NrOfModulesOnline"], items["/System/NrOfModulesOffline"]), (1, 0))
            for c in range(1, n + 1):
                self.assertAlmostEqual(items["/Voltages/Cell%d" % c], st["cells_mv"][c - 1] / 1000.0, delta=0.0006)
            self.assertNotIn("/Voltages/Cell%d" % (n + 1), items)
            self.assertAlmostEqual(items["/Voltages/Sum"], sum(st["cells_mv"]) / 1000.0, delta=0.011)
            self.assertEqual(items["/Alarms/BmsCable"], 0)
            self.assertEqual(items["/Io/AllowToDischarge"], 1)
            for name in ("HighVoltage", "LowVoltage", "HighTemperature", "CellImbalance"):
                self.assertIn(items["/Alarms/" + name], (0, 1, 2), name)

        with self.subTest("limits = what CAN 0x351 carries"):
            def same():
                can = last_351(can_log)
                dbus_limits = tuple(self.value(bus, svc, "/Info/" + p) for p in
                                    ("MaxChargeVoltage", "MaxChargeCurrent", "MaxDischargeCurrent",
                                     "BatteryLowVoltage"))
                return can if can and all(d is not None and abs(c - d) < 1e-6 for c, d in zip(can, dbus_limits)) \
                    else None
            can = wait_for(same, 30, "the D-Bus limits equal to the last 0x351")
            self.assertGreater(can[0], 0)
            self.assertLessEqual(can[0], st["cell_count"] * 3.65 + 1e-6)
            self.assertEqual(self.value(bus, svc, "/Io/AllowToCharge"), 1 if can[1] > 0 else 0)

        with self.subTest("SetValue refused on read-only paths, accepted on /CustomName"):
            before = self.value(bus, svc, "/Info/MaxChargeVoltage")
            self.assertEqual(self.call(bus, svc, "/Info/MaxChargeVoltage", "SetValue", dbus.Double(40.0, variant_level=1)), 1)
            self.assertEqual(self.call(bus, svc, "/Soc", "SetValue", dbus.Double(5.0, variant_level=1)), 1)
            self.assertEqual(self.value(bus, svc, "/Info/MaxChargeVoltage"), before)
            self.assertEqual(self.call(bus, svc, "/CustomName", "SetValue", dbus.String("garage", variant_level=1)), 0)
            self.assertEqual(self.value(bus, svc, "/CustomName"), "garage")
            # ... and stored in the settings service, like the GUI's own edits.
            wait_for(lambda: any(e["path"].endswith("/CustomName") and e["value"] == "garage"
                                 for e in peer.events("SetValue")), 30, "the name forwarded to settings")
            with self.assertRaises(dbus.exceptions.DBusException) as cm:
                self.call(bus, svc, "/Nope", "GetValue")
            self.assertIn("UnknownObject", cm.exception.get_dbus_name())

        with self.subTest("the settings service changes the device instance"):
            self.call(bus, SETTINGS, "/", "Change", "/Settings/Devices/tinybms_bms/ClassAndVrmInstance",
                      "battery:9", iface="org.tinybms.Test")
            wait_for(lambda: self.value(bus, svc, "/DeviceInstance") == 9, 30, "/DeviceInstance 9")

        with self.subTest("dbus-send and gdbus read the same"):
            env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=bus.address)
            out = subprocess.run(["dbus-send", "--session", "--print-reply", "--dest=" + svc, "/Dc/0/Voltage",
                                  BUSITEM + ".GetValue"], env=env, capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, r"variant\s+double %s" % re.escape(str(items["/Dc/0/Voltage"]).rstrip("0")))
            if shutil.which("gdbus"):
                out = subprocess.run(["gdbus", "call", "--session", "-d", svc, "-o", "/", "-m", BUSITEM + ".GetItems"],
                                     env=env, capture_output=True, text=True, timeout=30)
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertIn("'/TimeToGo': {'Value': <@ai []>, 'Text': <'---'>}", out.stdout)

        # A change of the battery: a discharge. Its ItemsChanged carries what moved, not everything.
        sim.cmd("current -40")
        wait_for(lambda: any(e["items"].get("/Dc/0/Current", 0) < 0 for e in peer.events("ItemsChanged")),
                 30, "an ItemsChanged with the discharge current")

        # The BMS goes silent: within the battery service's stale time, the limits are invalid.
        t0 = time.monotonic()
        sim.cmd("silence on")
        wait_for(lambda: self.value(bus, svc, "/Info/MaxChargeVoltage") is None, 60,
                 "/Info/MaxChargeVoltage invalid after the BMS went silent")
        silent_s = time.monotonic() - t0
        sys.stderr.write("[limits invalid %.1f s after the BMS went silent] " % silent_s)
        self.assertLess(silent_s, 30)
        now = self.items(bus, svc)
        for p in ("/Info/MaxChargeCurrent", "/Info/MaxDischargeCurrent", "/Info/BatteryLowVoltage",
                  "/Dc/0/Voltage", "/Dc/0/Current", "/Soc", "/System/MinCellVoltage", "/Voltages/Cell1"):
            self.assertIsNone(now[p], p)
        self.assertEqual(now["/Connected"], 0)
        self.assertEqual(now["/Alarms/BmsCable"], 2)
        self.assertEqual((now["/Io/AllowToCharge"], now["/Io/AllowToDischarge"]), (0, 0))
        sim.cmd("silence off")
        wait_for(lambda: self.value(bus, svc, "/Info/MaxChargeVoltage") is not None, 60, "limits back")
        self.assertEqual(self.value(bus, svc, "/Connected"), 1)

        with self.subTest("ItemsChanged carries only changes; replayed over the snapshot = GetItems"):
            def replay():
                evs = peer.events()
                snap = [i for i, e in enumerate(evs) if e["event"] == "snapshot"]
                self.assertTrue(snap, "no GetItems snapshot recorded")
                state = dict(evs[snap[-1]]["items"])
                batches = 0
                for e in evs[snap[-1] + 1:]:
                    if e["event"] != "ItemsChanged":
                        continue
                    batches += 1
                    self.assertLess(len(e["items"]), len(state), "a whole-tree ItemsChanged")
                    for path, v in e["items"].items():
                        self.assertIn(path, state)
                        self.assertNotEqual(state[path], v, "%s re-sent unchanged (%r)" % (path, v))
                        state[path] = v
                return state, batches
            # The peer writes what it received a moment later, and values may still move (the
            # charge current ramps up again after the silence): a fresh GetItems each time, then
            # the replay of what the peer has written, until they agree.
            def agree():
                now = self.items(bus, svc)
                r = replay()
                return r if r[0] == now else None
            state, batches = wait_for(agree, 30, "the signals replayed over the snapshot to equal GetItems")
            self.assertGreaterEqual(batches, 3)
            # A PropertiesChanged per changed leaf too, for importers that watch single paths.
            props = peer.events("PropertiesChanged")
            self.assertTrue(any(p["path"] == "/Dc/0/Current" for p in props))

        # SIGTERM: every value invalid on the bus, then the name released; exit 0.
        n_before = len(peer.events())
        self.stop_daemon_cleanly(gw)
        self.wait_name(bus, svc, present=False)
        wait_for(lambda: peer.events("gone"), 30, "the peer seeing the name go")
        tail = peer.events()[n_before:]
        kinds = [e["event"] for e in tail]
        self.assertIn("gone", kinds)
        last_items = [e for e in tail[:kinds.index("gone")] if e["event"] == "ItemsChanged"]
        self.assertTrue(last_items, "no ItemsChanged before the name went")
        self.assertTrue(all(v is None for v in last_items[-1]["items"].values()))
        self.assertGreater(len(last_items[-1]["items"]), 50)
        self.assertIn("/Info/MaxChargeVoltage", last_items[-1]["items"])

    def test_configured_instance_without_settings_and_off_by_default(self):
        bus = self.start_bus()
        self.write_config({"dbus": {"enabled": True, "device_instance": 12}})
        sim = self.start_sim(["--speed", "0"])
        gw = self.start_gw(bus, ["--uart", sim.link])
        svc = "com.victronenergy.battery.bms"
        self.wait_name(bus, svc)
        self.assertEqual(self.value(bus, svc, "/DeviceInstance"), 12)
        gw.wait_log(r"no com.victronenergy.settings on this bus", 30)
        self.stop_daemon_cleanly(gw)
        self.wait_name(bus, svc, present=False)

        # Off: the same run with dbus.enabled false publishes nothing.
        self.write_config({"dbus": {"enabled": False}})
        gw2 = self.start_gw(bus, ["--uart", sim.link], name="gw2")
        gw2.wait_log(r"D-Bus off", 60)
        self.assertFalse(bus.conn.name_has_owner(svc))
        self.stop_daemon_cleanly(gw2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        sys.exit(peer_main(sys.argv[2:]))
    gwtest.main()
