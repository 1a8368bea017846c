"""Settings from the environment: list fields parse as plain text, bad values are clear."""

from __future__ import annotations

import pytest

from threadlog.settings import Settings, SettingsError, load_settings


def test_nats_urls_from_the_environment_is_one_url_or_a_comma_separated_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLOG_NATS_URLS", "nats://127.0.0.1:4222")
    assert Settings().nats_urls == ["nats://127.0.0.1:4222"]
    monkeypatch.setenv("THREADLOG_NATS_URLS", "nats://a:4222, nats://b:4222")
    assert Settings().nats_urls == ["nats://a:4222", "nats://b:4222"]


def test_credentials_and_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLOG_NATS_CREDS", "/etc/threadlog/service.creds")
    monkeypatch.setenv("THREADLOG_NATS_PORT", "4333")
    s = Settings()
    assert str(s.nats_creds) == "/etc/threadlog/service.creds" and s.nats_port == 4333
    with pytest.raises(SettingsError, match="nats_port"):
        load_settings(nats_port=70000)
