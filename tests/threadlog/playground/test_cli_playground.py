"""``threadlog playground``'s option errors: one line, exit 2, nothing started."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from threadlog.cli_playground import playground_command


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("playground")(playground_command)
    app.command("other")(lambda: None)  # a group, as in threadlog.cli
    return app


def test_an_unknown_role_is_refused() -> None:
    res = CliRunner().invoke(cli(), ["playground", "--role", "admin"])
    assert res.exit_code == 2 and "--role must be user or operator" in res.output


def test_a_deployment_url_needs_credentials() -> None:
    res = CliRunner().invoke(cli(), ["playground", "--nats-url", "nats://127.0.0.1:1"],
                             env={"THREADLOG_NATS_CREDS": ""})
    assert res.exit_code == 2 and "needs --creds" in res.output


def test_an_unreachable_deployment_is_one_line(tmp_path) -> None:
    creds = tmp_path / "x.creds"
    creds.write_text("not a creds file")
    res = CliRunner().invoke(cli(), ["playground", "--nats-url", "nats://127.0.0.1:1",
                                     "--creds", str(creds)])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
