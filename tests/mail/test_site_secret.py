"""The site secret: its fingerprint (never the secret) is stored, and a different
DIGEST_SECRET between processes is logged as a warning; no env secret ever means no warning."""

from __future__ import annotations

import json
import logging

import pytest

from digest.pipeline.secrets import secret_fingerprint, site_secret
from digest.store import Store
from tests.support.send import SECRET


def test_secret_fingerprint_is_stored_and_a_mismatch_is_logged(
        empty_config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(empty_config.store.path)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        assert site_secret(empty_config, store) == SECRET.encode()
    assert caplog.records == []
    meta = store.meta_get("secret_fingerprint")
    assert meta == {"env": "DIGEST_SECRET", "fingerprint": secret_fingerprint(SECRET.encode())}
    assert len(meta["fingerprint"]) == 16 and SECRET not in json.dumps(meta)

    monkeypatch.delenv("DIGEST_SECRET")  # the operator's shell without the daemon's secret
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        site_secret(empty_config, store)
    (warn,) = caplog.records
    assert "DIGEST_SECRET is not set" in warn.getMessage()
    assert SECRET not in warn.getMessage()

    caplog.clear()
    monkeypatch.setenv("DIGEST_SECRET", "another-secret-value")
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        site_secret(empty_config, store)
        site_secret(empty_config, store)  # recorded now: the second call is quiet
    (warn,) = caplog.records
    assert "DIGEST_SECRET" in warn.getMessage() and "another-secret-value" not in warn.getMessage()
    assert store.meta_get("secret_fingerprint")["fingerprint"] == secret_fingerprint(
        b"another-secret-value")


def test_no_env_secret_ever_means_no_warning(empty_config, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        a = site_secret(empty_config, Store(empty_config.store.path))
        b = site_secret(empty_config, Store(empty_config.store.path))
    assert a == b and caplog.records == []
