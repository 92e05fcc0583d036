"""Checks the fleet examples against each other and against Ringmaster.

No container engine, kubelet or Nomad agent runs on the test machines, so
this checks what can be checked without one: the Kubernetes manifest against
the API schema (kubernetes-validate, strict), the Nomad job parses as HCL2,
every Ringmaster config they embed passes `ringmaster check`, the grace
periods exceed `shutdown_timeout`, the probes point at `http_endpoint`'s port,
and every file the Dockerfile copies exists.

Usage: check_deploy.py RINGMASTER_BINARY REPO_ROOT TMPDIR
"""
import json
import os
import re
import subprocess
import sys
import tomllib

import hcl2
import yaml

ringmaster, root, tmp = sys.argv[1:4]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def seconds(v):
    """A Ringmaster/Nomad duration ("20s", "2m", 30) in seconds."""
    if isinstance(v, (int, float)):
        return float(v)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", v.strip())
    assert m, f"not a duration: {v!r}"
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def ringmaster_config(name, text):
    """Writes an embedded config out, runs `ringmaster check` on it, parses it."""
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([ringmaster, "check", path], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"{name}: ringmaster check failed:\n{r.stdout}{r.stderr}")
    return tomllib.loads(text)


def endpoint_port(cfg, where):
    ep = cfg.get("ringmaster", {}).get("http_endpoint", "")
    check(ep.rsplit(":", 1)[-1].isdigit(), f"{where}: http_endpoint {ep!r} has no port")
    return int(ep.rsplit(":", 1)[-1]) if ep.rsplit(":", 1)[-1].isdigit() else None


# --- the container's own config -------------------------------------------
with open(os.path.join(root, "contrib/container/ringmaster.toml")) as f:
    image_cfg = ringmaster_config("container.toml", f.read())

# --- Dockerfile -----------------------------------------------------------
with open(os.path.join(root, "Dockerfile")) as f:
    lines = []
    for raw in f.read().replace("\\\n", " ").splitlines():
        raw = raw.strip()
        if raw and not raw.startswith("#"):
            lines.append(raw)
stages = [l for l in lines if l.upper().startswith("FROM ")]
check(len(stages) >= 2, "Dockerfile: not a multi-stage build")
entry = [l for l in lines if l.upper().startswith("ENTRYPOINT ")]
check(len(entry) == 1, "Dockerfile: exactly one ENTRYPOINT")
if entry:
    argv = json.loads(entry[0].split(" ", 1)[1])
    check(argv[1:] == ["run", "--init"], f"Dockerfile: ENTRYPOINT {argv} is not `ringmaster run --init`")
cmd = [l for l in lines if l.upper().startswith("CMD ")]
copies = {}
for l in lines:
    if l.upper().startswith("COPY ") and "--from=" not in l:
        *srcs, dest = l.split()[1:]
        for s in srcs:
            check(os.path.exists(os.path.join(root, s)), f"Dockerfile: COPY source {s} does not exist")
            copies[s] = dest
check(len(cmd) == 1, "Dockerfile: exactly one CMD")
if cmd:
    check(
        json.loads(cmd[0].split(" ", 1)[1]) == [copies.get("contrib/container/ringmaster.toml")],
        "Dockerfile: CMD is not the config it copies",
    )
exposed = {int(p) for l in lines if l.upper().startswith("EXPOSE ") for p in l.split()[1:]}
check(endpoint_port(image_cfg, "container.toml") in exposed, "Dockerfile: http_endpoint's port is not EXPOSEd")

# --- Kubernetes -----------------------------------------------------------
manifest = os.path.join(root, "contrib/kubernetes/ringmaster.yaml")
r = subprocess.run(
    [os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"), "--strict", "-k", "1.30.0", manifest],
    capture_output=True, text=True, timeout=120,
)
check(r.returncode == 0, f"kubernetes-validate failed:\n{r.stdout}{r.stderr}")
with open(manifest) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
kinds = {d["kind"]: d for d in docs}
k8s_cfg = ringmaster_config("kubernetes.toml", kinds["ConfigMap"]["data"]["ringmaster.toml"])
pod = kinds["Deployment"]["spec"]["template"]["spec"]
grace = pod["terminationGracePeriodSeconds"]
check(
    grace > seconds(k8s_cfg["ringmaster"]["shutdown_timeout"]),
    "kubernetes: terminationGracePeriodSeconds is not above shutdown_timeout",
)
c = pod["containers"][0]
named = {p["name"]: p["containerPort"] for p in c["ports"]}
port = endpoint_port(k8s_cfg, "kubernetes ConfigMap")
for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
    get = c[probe]["httpGet"]
    check(get["path"] == path, f"kubernetes: {probe} is not on {path}")
    check(named.get(get["port"], get["port"]) == port, f"kubernetes: {probe} is not on http_endpoint's port")
mounts = {m["mountPath"] for m in c["volumeMounts"]}
check(
    os.path.dirname(k8s_cfg["ringmaster"]["http_token_file"]) in mounts,
    "kubernetes: http_token_file is not on a mounted secret",
)
check("/etc/ringmaster" in mounts and c["args"] == ["/etc/ringmaster/ringmaster.toml"],
      "kubernetes: the config is not mounted where args say")

# --- Nomad ----------------------------------------------------------------
with open(os.path.join(root, "contrib/nomad/ringmaster.nomad.hcl")) as f:
    job = hcl2.load(f)


def unq(v):
    return v.strip('"') if isinstance(v, str) else v


def block(d, key):
    """hcl2 8.x: a labelled block is [{'"label"': {...}}]."""
    (inner,) = d[key][0].values()
    return inner


group = block(block(job, "job"), "group")
task = block(group, "task")
templates = {unq(t["destination"]): t for t in task["template"]}
nomad_text = unq(templates["local/ringmaster.toml"]["data"])
nomad_text = nomad_text.split("\n", 1)[1].rsplit("\n", 1)[0] if nomad_text.startswith("<<") else nomad_text
nomad_cfg = ringmaster_config("nomad.toml", nomad_text)
check(
    seconds(unq(task["kill_timeout"])) > seconds(nomad_cfg["ringmaster"]["shutdown_timeout"]),
    "nomad: kill_timeout is not above shutdown_timeout",
)
ports = {unq(label): p["to"] for p in group["network"][0]["port"] for label, p in p.items()}
checks = {unq(ch["path"]): unq(ch["port"]) for ch in group["service"][0]["check"]}
port = endpoint_port(nomad_cfg, "nomad template")
for path in ["/healthz", "/readyz"]:
    check(path in checks and ports.get(checks[path]) == port, f"nomad: no check on {path} at http_endpoint's port")
check(nomad_cfg["ringmaster"]["http_token_file"] == "/secrets/token" and "secrets/token" in templates,
      "nomad: http_token_file is not the secrets/token template")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("deploy examples: ok")
