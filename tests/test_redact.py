"""Secrets: every URL shape a user may type has its password masked, wherever it is printed (hypothesis)."""

from __future__ import annotations

import logging
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from promptsearch.redact import mask_url, passwords, scrub

SCHEMES = ["postgresql://", "postgresql+psycopg://", "mysql://", "sqlite://", "journal://", "http://", "https://", ""]
names = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=12)
# passwords with spaces, '@', '/', ':' and non-ASCII: every character a user might put in one, except '?'
secret = st.text(string.ascii_letters + string.digits + " @/:!#$%^&*()[]{}<>,;'\"é€", min_size=3, max_size=20)


@st.composite
def url_with_password(draw: st.DrawFn) -> tuple[str, str]:
    scheme, user, password = draw(st.sampled_from(SCHEMES)), draw(names), draw(secret)
    host, db = draw(names), draw(names)
    port = draw(st.sampled_from(["", ":5432"]))
    query = draw(st.sampled_from(["", "?timeout=30", "?sslmode=require&x=1"]))
    url = f"{scheme}{user}:{password}@{host}{port}/{db}{query}"
    assume(password.strip() and password not in f"{scheme}{user}@{host}{port}/{db}{query}")
    return url, password


@settings(max_examples=300, deadline=None)
@given(url_with_password())
def test_a_masked_url_never_shows_its_password(case: tuple[str, str]) -> None:
    url, password = case
    shown = mask_url(url)
    assert password not in shown
    assert "***" in shown


@settings(max_examples=300, deadline=None)
@given(url_with_password(), st.sampled_from(["connection to {url} refused", "password '{pw}' rejected", "{pw}"]))
def test_an_error_quoting_the_url_or_its_password_is_scrubbed(case: tuple[str, str], shape: str) -> None:
    url, password = case
    message = shape.format(url=url, pw=password)
    assert password not in scrub(message, url)


@settings(max_examples=100, deadline=None)
@given(names, secret)
def test_query_passwords_are_masked(user: str, password: str) -> None:
    assume("&" not in password and password.strip() and password not in f"postgresql://h/db?user={user}")
    url = f"postgresql://h/db?user={user}&password={password}"
    assert password not in mask_url(url).replace(" ", "")[len("postgresql://h/db?user=") :] or " " in password


def test_urls_without_a_password_are_unchanged() -> None:
    for url in ("sqlite:///runs/x/study.db", "sqlite:///runs/x/study.db?timeout=30", "postgresql://root@h/db"):
        assert mask_url(url) == url
        assert passwords(url) == []


def test_the_sqlalchemy_reading_of_a_raw_at_sign_is_masked_too() -> None:
    url = "postgresql://u:p@ssword@host:5432/db"
    assert mask_url(url) == "postgresql://u:***@host:5432/db"
    assert "ssword" not in scrub(f"could not connect: {url}", url)


def test_mlflow_warnings_and_errors_hide_the_password(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("optuna_integration")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    import optuna

    from promptsearch.errors import ConfigError
    from promptsearch.reporting.tracking import mlflow_callback

    uri = "http://admin:s3cret pass@127.0.0.1:9/"  # nothing listens on the discard port
    log = mlflow_callback(uri, metric="accuracy")
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with caplog.at_level(logging.WARNING, logger="promptsearch"):
        log(study, study.trials[0])
    assert "s3cret" not in caplog.text
    with pytest.raises(ConfigError) as info:
        mlflow_callback("file:/u:s3cret@x", metric="accuracy")
    assert "s3cret" not in str(info.value)
