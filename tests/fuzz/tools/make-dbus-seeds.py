#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_dbus (tests/fuzz/corpus/dbus): the method calls Venus OS and
its tools (systemcalc, dbus-spy, the GUI) make on a battery service, in both input forms of the
target: structured ("path\\0member\\0interface\\0" + argument) and D-Bus wire format (little
endian, encoded here by hand after the D-Bus specification). Run from the repository root."""
import os, struct

D = os.path.join(os.path.dirname(__file__), '..', 'corpus', 'dbus')
os.makedirs(D, exist_ok=True)
BUSITEM = 'com.victronenergy.BusItem'

def out(name, data):
    with open(os.path.join(D, name), 'wb') as f:
        f.write(data)

def structured(name, path, member, iface, arg=b'n', service=0):
    out(name + '.bin', bytes([service, 0]) + path.encode() + b'\0' + member.encode() + b'\0' +
        iface.encode() + b'\0' + arg)

class W:
    def __init__(self): self.b = bytearray()
    def pad(self, n): self.b += b'\0' * (-len(self.b) % n)
    def y(self, v): self.b += bytes([v])
    def u(self, v): self.pad(4); self.b += struct.pack('<I', v)
    def i(self, v): self.pad(4); self.b += struct.pack('<i', v)
    def s(self, v): v = v.encode(); self.u(len(v)); self.b += v + b'\0'
    def g(self, v): v = v.encode(); self.y(len(v)); self.b += v + b'\0'

def wire(name, path, member, iface, sig='', body=lambda w: None, serial=1, service=0, msgtype=1):
    fields = W()
    def field(code, t, val):
        fields.pad(8); fields.y(code); fields.g(t)
        getattr(fields, {'o': 's', 's': 's', 'g': 'g'}[t])(val)
    field(1, 'o', path)
    if iface:
        field(2, 's', iface)
    field(3, 's', member)
    field(6, 's', 'com.victronenergy.battery.ttyUSB0')
    if sig:
        field(8, 'g', sig)
    b = W()
    body(b)
    h = W()
    h.y(ord('l')); h.y(msgtype); h.y(0); h.y(1); h.u(len(b.b)); h.u(serial)
    h.u(len(fields.b)); h.b += fields.b
    h.pad(8)
    out(name + '.wire', bytes([service, 1]) + bytes(h.b) + bytes(b.b))

for path in ('/Soc', '/Dc/0/Voltage', '/Info/MaxChargeVoltage', '/CustomName', '/Voltages/Cell16',
             '/System/MinVoltageCellId', '/ProductId', '/Alarms/HighVoltage'):
    tag = path.strip('/').replace('/', '_')
    structured('getvalue_' + tag, path, 'GetValue', BUSITEM)
    structured('gettext_' + tag, path, 'GetText', BUSITEM, service=1)
for node in ('/', '/Dc', '/Info', '/Voltages', '/System'):
    tag = node.strip('/').replace('/', '_') or 'root'
    structured('getvalue_node_' + tag, node, 'GetValue', BUSITEM, service=2)
    structured('introspect_' + tag, node, 'Introspect', 'org.freedesktop.DBus.Introspectable')
structured('getitems_root', '/', 'GetItems', BUSITEM)
structured('getitems_no_interface', '/', 'GetItems', '')
structured('getdescription_soc', '/Soc', 'GetDescription', BUSITEM, b'xen')
structured('setvalue_customname', '/CustomName', 'SetValue', BUSITEM, b'sGarage battery')
structured('setvalue_customname_pack', '/CustomName', 'SetValue', BUSITEM, b'sfront', service=1)
structured('setvalue_customname_int', '/CustomName', 'SetValue', BUSITEM, b'i\x05\0\0\0')
structured('setvalue_customname_bare', '/CustomName', 'SetValue', BUSITEM, b'Sno variant')
structured('setvalue_customname_long', '/CustomName', 'SetValue', BUSITEM, b's' + b'x' * 200)
structured('setvalue_readonly_soc', '/Soc', 'SetValue', BUSITEM, b'd' + struct.pack('<d', 50.0))
structured('setvalue_node', '/Info', 'SetValue', BUSITEM, b'sx')
structured('setvalue_nested_variant', '/CustomName', 'SetValue', BUSITEM, b'vnested')
structured('unknown_path', '/No/Such/Path', 'GetValue', BUSITEM)
structured('unknown_interface', '/Soc', 'GetValue', 'org.example.Other')
structured('unknown_member', '/Soc', 'Frobnicate', BUSITEM)

wire('setvalue_customname', '/CustomName', 'SetValue', BUSITEM, 'v',
     lambda w: (w.g('s'), w.s('Garage battery')))
wire('setvalue_customname_int', '/CustomName', 'SetValue', BUSITEM, 'v', lambda w: (w.g('i'), w.i(3)))
wire('getvalue_soc', '/Soc', 'GetValue', BUSITEM)
wire('gettext_root', '/', 'GetText', BUSITEM, service=1)
wire('getitems_root', '/', 'GetItems', BUSITEM, service=2)
wire('introspect_dc', '/Dc', 'Introspect', 'org.freedesktop.DBus.Introspectable')
wire('getdescription_soc', '/Soc', 'GetDescription', BUSITEM, 'si', lambda w: (w.s('en'), w.i(100)))
wire('signal_itemschanged', '/', 'ItemsChanged', BUSITEM, msgtype=4)
