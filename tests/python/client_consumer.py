"""Drives Ringmaster with Circus's own Python client and consumer classes.

Usage: client_consumer.py CONTROL_ENDPOINT PUBSUB_ENDPOINT
Prints one JSON object with what it observed; exits non-zero on failure.
"""
import json
import sys
import time

from circus.client import CircusClient
from circus.consumer import CircusConsumer

endpoint, pubsub = sys.argv[1], sys.argv[2]
client = CircusClient(endpoint=endpoint, timeout=5)
out = {}
out["list"] = client.call({"command": "list", "properties": {}})
out["status"] = client.call({"command": "status", "properties": {"name": "sleeper"}})
out["incr"] = client.call({"command": "incr", "properties": {"name": "sleeper", "waiting": True}})
out["decr"] = client.call({"command": "decr", "properties": {"name": "sleeper", "waiting": True}})

events = []
with CircusConsumer(["watcher.sleeper."], endpoint=pubsub) as consumer:
    sock = consumer.pubsub_socket
    # A SUB only sees messages published after it joined: poke until one arrives.
    deadline = time.time() + 10
    while time.time() < deadline:
        client.call({"command": "set", "properties": {"name": "sleeper", "options": {"max_retry": 5}}})
        if sock.poll(200):
            break
    pids = client.call({"command": "list", "properties": {"name": "sleeper"}})["pids"]
    client.call({"command": "kill", "properties": {"name": "sleeper", "pid": pids[0]}})
    deadline = time.time() + 10
    def reaped_then_spawned():
        reaps = [i for i, (t, m) in enumerate(events) if t.endswith(".reap") and m.get("process_pid") == pids[0]]
        return reaps and any(t.endswith(".spawn") for t, _ in events[reaps[0]:])
    while time.time() < deadline and not reaped_then_spawned():
        if sock.poll(500):
            topic, msg = sock.recv_multipart()
            events.append((topic.decode(), json.loads(msg)))
# Keep the killed process's events and the spawn that replaced it (events of
# the incr/decr above may still be arriving).
first = next((i for i, (t, m) in enumerate(events) if m.get("process_pid") == pids[0]), len(events))
out["events"] = [
    t for t, m in events[first:]
    if t.endswith(".spawn") or m.get("process_pid") == pids[0]
][:3]
out["killed"] = pids[0]
out["reaped"] = [m.get("process_pid") for t, m in events if t.endswith(".reap")]
print(json.dumps(out))
