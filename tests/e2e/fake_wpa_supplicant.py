#!/usr/bin/python3
"""A stand-in for wpa_supplicant's control socket: binds DIR/IFACE (a datagram socket), answers
what the gateway asks (LIST_NETWORKS with one network, ADD_NETWORK with id 1, OK to the rest) and
appends every command to LOG, one per line. Runs until killed."""
import os
import socket
import sys

directory, iface, log = sys.argv[1], sys.argv[2], sys.argv[3]
path = os.path.join(directory, iface)
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(log + ".ready", "w"):
    pass
while True:
    data, peer = s.recvfrom(4096)
    cmd = data.decode(errors="replace")
    with open(log, "a") as f:
        f.write(cmd + "\n")
    if cmd == "LIST_NETWORKS":
        reply = "network id / ssid / bssid / flags\n0\tneighbour\tany\t[DISABLED]\n"
    elif cmd == "ADD_NETWORK":
        reply = "1\n"
    else:
        reply = "OK\n"
    s.sendto(reply.encode(), peer)
