"""The checked-in production shape: deploy/nats node configs, docker-compose.yml and the
Dockerfile. There is no Docker engine here, so the node configs are validated by the
nats-server binary itself (``nats-server -t -c``) with auth generated as the compose
init service generates it, and booted as a real 3-node cluster on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from typer.testing import CliRunner

from events import EventStore, EventStreamSpec
from events.connection import NatsEndpoint
from threadlog.cli_cluster import cluster_app
from threadlog.cluster import free_port
from threadlog.embedded_nats import nats_server_binary
from threadlog.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NATS_DIR = ROOT / "deploy" / "nats"
NODES = ["nats-1", "nats-2", "nats-3"]


@pytest.fixture
def etc_nats(tmp_path: Path) -> Path:
    """deploy/nats copied as the image holds it (/etc/nats), auth.conf and the keys
    written by ``threadlog cluster auth-config`` as the nats-auth init service runs it."""
    etc = tmp_path / "etc-nats"
    shutil.copytree(NATS_DIR, etc)
    res = CliRunner().invoke(cluster_app, ["auth-config", "--data-dir", str(tmp_path / "lib"),
                                           "--out", str(etc / "auth")])
    assert res.exit_code == 0, res.output
    return etc


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_every_node_config_is_valid_for_nats_server(etc_nats: Path) -> None:
    for node in NODES:
        res = check(etc_nats / f"{node}.conf")
        assert res.returncode == 0 and "is valid" in res.stdout + res.stderr, res.stderr


def test_a_node_config_without_the_generated_auth_is_refused(etc_nats: Path) -> None:
    (etc_nats / "auth" / "auth.conf").unlink()
    res = check(etc_nats / "nats-1.conf")
    assert res.returncode != 0 and "auth.conf" in res.stdout + res.stderr


def test_node_configs_name_themselves_uniquely_and_share_routes_and_fsync() -> None:
    names = [re.search(r"^server_name:\s*(\S+)", (NATS_DIR / f"{n}.conf").read_text(), re.M)
             for n in NODES]
    assert [m.group(1) for m in names if m] == NODES
    common = (NATS_DIR / "common.conf").read_text()
    assert re.search(r"^\s*sync_interval:\s*always\s*$", common, re.M)
    assert sorted(re.findall(r"nats-route://([\w-]+):6222", common)) == NODES
    assert "include ./auth/auth.conf" in common and "store_dir: /data" in common


def test_auth_config_is_idempotent_and_holds_no_seed(tmp_path: Path) -> None:
    args = ["auth-config", "--data-dir", str(tmp_path / "lib"), "--out", str(tmp_path / "o")]
    assert CliRunner().invoke(cluster_app, args).exit_code == 0
    keys = {p.name: p.read_text() for p in (tmp_path / "lib" / "auth").glob("*.nk")}
    creds = (tmp_path / "lib" / "auth" / "service.creds").read_text()
    assert CliRunner().invoke(cluster_app, args).exit_code == 0
    assert keys == {p.name: p.read_text() for p in (tmp_path / "lib" / "auth").glob("*.nk")}
    assert (tmp_path / "lib" / "auth" / "service.creds").read_text() == creds
    conf = (tmp_path / "o" / "auth.conf").read_text()
    assert "operator:" in conf and "resolver_preload" in conf
    assert not any(seed.strip() in conf for seed in keys.values())
    assert not re.search(r"\bS[OAU][A-Z2-7]{50,}", conf)  # no nkey seed of any kind


@pytest.fixture
def deploy_cluster(etc_nats: Path, tmp_path: Path) -> Iterator[list[int]]:
    """The three checked-in node configs running on loopback: only the addresses
    (flags) and the store directory (the one path rewritten) differ from the image's."""
    cluster_ports = [free_port() for _ in NODES]
    routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in cluster_ports)
    procs: list[subprocess.Popen[bytes]] = []
    monitors: list[int] = []
    clients: list[int] = []
    try:
        for i, node in enumerate(NODES):
            d = tmp_path / node
            d.mkdir()
            (d / "common.conf").write_text((etc_nats / "common.conf").read_text()
                                           .replace("store_dir: /data", f"store_dir: {d}"))
            shutil.copy(etc_nats / f"{node}.conf", d)
            (d / "auth").symlink_to(etc_nats / "auth")
            clients.append(free_port())
            monitors.append(free_port())
            procs.append(subprocess.Popen(
                [nats_server_binary(), "-c", str(d / f"{node}.conf"), "-a", "127.0.0.1",
                 "-p", str(clients[-1]), "-m", str(monitors[-1]),
                 "--cluster", f"nats://127.0.0.1:{cluster_ports[i]}", "--routes", routes,
                 "-l", str(d / "server.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 20
        while not all(_healthy(m) for m in monitors):
            assert time.monotonic() < deadline, "the deploy configs formed no healthy cluster"
            assert all(p.poll() is None for p in procs), "a node exited; see server.log"
            time.sleep(0.1)
        yield clients
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _healthy(monitor_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/healthz",
                                    timeout=1) as resp:
            ok: bool = json.loads(resp.read()).get("status") == "ok"
            return ok
    except (OSError, ValueError):
        return False


async def test_the_deploy_configs_form_a_cluster_with_r3_streams_and_auth(
        deploy_cluster: list[int], tmp_path: Path) -> None:
    creds = tmp_path / "lib" / "auth" / "service.creds"
    endpoint = NatsEndpoint(tuple(f"nats://127.0.0.1:{p}" for p in deploy_cluster), creds)
    nc = await endpoint.connect(connect_timeout=3)
    try:
        store = EventStore(nc, EventStreamSpec(name="EVENTS", replicas=3))
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # bounded: the meta leader may still be settling after /healthz
            try:
                await store.setup()
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        info = await store.js.stream_info("EVENTS")
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.name == "threadlog"
        assert sorted([info.cluster.leader or "", *(p.name or "" for p in
                                                    info.cluster.replicas or [])]) == NODES
    finally:
        await nc.close()
    with pytest.raises(Exception, match=r"(?i)authoriz"):  # operator mode: no anonymous
        await NatsEndpoint((f"nats://127.0.0.1:{deploy_cluster[0]}",)).probe(timeout=2)


def test_compose_runs_three_nats_nodes_with_a_volume_health_check_and_config_each() -> None:
    services = compose()["services"]
    volumes = compose()["volumes"]
    data_volumes = []
    for node in NODES:
        svc = services[node]
        assert svc["command"] == ["nats-server", "-c", f"/etc/nats/{node}.conf"]
        assert (NATS_DIR / f"{node}.conf").exists()
        data = [v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == "/data"]
        assert len(data) == 1 and data[0] in volumes
        data_volumes.append(data[0])
        assert "nats-auth:/etc/nats/auth:ro" in svc["volumes"]
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["nats-auth"]["condition"] == "service_completed_successfully"
        assert svc["hostname"] == node and svc["build"] == "."
    assert len(set(data_volumes)) == 3
    init = services["nats-auth"]
    assert init["command"][:3] == ["threadlog", "cluster", "auth-config"]
    assert init["command"][init["command"].index("--out") + 1] == "/etc/nats/auth"


def test_compose_threadlog_services_connect_to_all_nodes_with_r3(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    assert services["handlers"]["command"] == ["threadlog", "cluster", "handlers"]
    assert services["projector"]["command"] == ["threadlog", "serve"]
    for name in ("handlers", "projector"):
        svc = services[name]
        assert svc["build"] == "." and set(svc["depends_on"]) == set(NODES)
        assert svc["healthcheck"]["test"][1:3] == ["threadlog", "health"]
        assert all(d["condition"] == "service_healthy" for d in svc["depends_on"].values())
        for key, value in svc["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()  # the environment as the container sees it parses
        assert settings.replicas == 3
        assert settings.nats_urls == [f"nats://{n}:4222" for n in NODES]
        assert str(settings.nats_creds) == "/var/lib/threadlog/auth/service.creds"
        assert any(v.startswith("threadlog-keys:/var/lib/threadlog/auth")
                   for v in svc["volumes"])


def test_dependencies_are_installed_at_build_not_at_start() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install .*\.", dockerfile, re.M)
    assert "COPY deploy/nats /etc/nats" in dockerfile
    for name, svc in compose()["services"].items():
        assert "pip" not in " ".join(svc.get("command") or []), name
