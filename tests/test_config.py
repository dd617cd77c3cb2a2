"""Settings: precedence, required keys, validation with errors that name the key and hide secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_clustershazbot import ClusterShazbot, ConfigError
from flask_clustershazbot.config import Settings, load_settings

SECRETS = {
    "SHAZBOT_SECRET": "gossip-s3cret-value-AAAA",
    "SHAZBOT_CONTROL_SECRET": "control-s3cret-value-BBBB",
    "SHAZBOT_MASTER_LIST_UPDATE_AUTH": "Bearer master-s3cret-value-CCCC",
}
HTTP_REQUIRED = {
    **SECRETS,
    "SHAZBOT_BASE_URL": "http://127.0.0.1:5000/",
    "SHAZBOT_MASTER_LIST": "http://127.0.0.1:9/master.json",
    "SHAZBOT_MASTER_LIST_UPDATE": "http://127.0.0.1:9/master.json",
}


def load(
    config: dict[str, Any] | None = None, env: dict[str, str] | None = None, **options: Any
) -> Settings:
    return load_settings(config if config is not None else dict(HTTP_REQUIRED), env or {}, options)


def config_error(config: dict[str, Any], env: dict[str, str] | None = None, **options: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(config, env, **options)
    text = str(info.value)
    for secret in SECRETS.values():
        assert secret not in text and secret.split()[-1] not in text
    return text


# -- precedence ------------------------------------------------------------------


def test_option_beats_app_config_beats_environment_beats_default() -> None:
    env = {"SHAZBOT_GOSSIP_INTERVAL": "3"}
    assert (
        load(
            {**HTTP_REQUIRED, "SHAZBOT_GOSSIP_INTERVAL": 2}, env, gossip_interval=1
        ).gossip_interval
        == 1
    )
    assert load({**HTTP_REQUIRED, "SHAZBOT_GOSSIP_INTERVAL": 2}, env).gossip_interval == 2
    assert load(dict(HTTP_REQUIRED), env).gossip_interval == 3
    assert load(dict(HTTP_REQUIRED)).gossip_interval == 30


def test_options_may_use_config_key_names() -> None:
    assert load(SHAZBOT_MONITOR=True).monitor is True


def test_everything_can_come_from_the_environment_as_strings() -> None:
    env = {**HTTP_REQUIRED, "SHAZBOT_MONITOR": "true", "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "0"}
    settings = load({}, env)
    assert settings.secret == SECRETS["SHAZBOT_SECRET"]
    assert settings.master_list_update_auth == SECRETS["SHAZBOT_MASTER_LIST_UPDATE_AUTH"]
    assert settings.monitor is True
    assert settings.master_announce_minimum == 0


def test_the_seed_defaults() -> None:
    s = load()
    assert (s.gossip_interval, s.master_announce_minimum, s.master_announce_interval) == (
        30,
        300,
        600,
    )
    assert (s.monitor, s.update_master_list_on_shutdown) == (False, False)
    assert s.max_body_bytes == 4 * 1024 * 1024


def test_effective_values_are_written_back_into_the_config() -> None:
    config: dict[str, Any] = {**HTTP_REQUIRED, "SHAZBOT_BASE_URL": "http://127.0.0.1:5000"}
    load(config, {"SHAZBOT_MONITOR": "yes"})
    assert config["SHAZBOT_BASE_URL"] == "http://127.0.0.1:5000/"
    assert config["SHAZBOT_GOSSIP_INTERVAL"] == 30.0
    assert config["SHAZBOT_MONITOR"] is True
    assert config["SHAZBOT_UPDATE_MASTER_LIST_ON_SHUTDOWN"] is False


def test_extension_reads_the_environment_and_shows_effective_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SHAZBOT_BASE_URL", "http://127.0.0.1:5001")
    monkeypatch.setenv("SHAZBOT_MASTER_LIST", str(tmp_path / "m.json"))
    monkeypatch.setenv("SHAZBOT_GOSSIP_INTERVAL", "0.5")
    app = Flask("env-app")
    app.config["SHAZBOT_AUTOSTART"] = False
    app.config["SHAZBOT_GOSSIP_INTERVAL"] = 7
    ClusterShazbot(app)
    assert app.config["SHAZBOT_BASE_URL"] == "http://127.0.0.1:5001/"
    assert app.config["SHAZBOT_GOSSIP_INTERVAL"] == 7.0  # app.config wins over the environment
    assert app.config["SHAZBOT_MASTER_LIST_UPDATE"] == str(tmp_path / "m.json")


# -- required settings -----------------------------------------------------------


@pytest.mark.parametrize("key", sorted(HTTP_REQUIRED))
def test_each_required_setting_missing_is_named(key: str) -> None:
    config = dict(HTTP_REQUIRED)
    del config[key]
    assert key in config_error(config)


@pytest.mark.parametrize("key", ["SHAZBOT_SECRET", "SHAZBOT_CONTROL_SECRET", "SHAZBOT_BASE_URL"])
def test_an_empty_required_setting_is_named(key: str) -> None:
    assert key in config_error({**HTTP_REQUIRED, key: ""})


@pytest.mark.parametrize(
    "location", ["/var/lib/shazbot/master.json", "master.json", "file:///tmp/m.json"]
)
def test_a_file_master_list_makes_update_and_auth_optional(location: str) -> None:
    config = {k: v for k, v in HTTP_REQUIRED.items() if "UPDATE" not in k}
    settings = load({**config, "SHAZBOT_MASTER_LIST": location})
    assert settings.master_list_update == location
    assert settings.master_list_update_auth == ""


def test_an_http_master_list_needs_update_and_auth() -> None:
    config = {k: v for k, v in HTTP_REQUIRED.items() if "UPDATE" not in k}
    assert "SHAZBOT_MASTER_LIST_UPDATE" in config_error(config)
    assert "SHAZBOT_MASTER_LIST_UPDATE_AUTH" in config_error(
        {**config, "SHAZBOT_MASTER_LIST_UPDATE": "http://127.0.0.1:9/m"}
    )


@pytest.mark.parametrize(
    "location",
    ["s3://bucket/master.json", "redis://127.0.0.1:9/0?key=k", "dns://nodes.example:3000"],
)
def test_the_update_settings_error_says_which_master_lists_need_them(location: str) -> None:
    """The error used to say "(or use a file master list)", as if S3, Redis and DNS needed
    an update URL too: it says which backends need one, and those do not."""
    app = Flask("needs-update")
    app.config.update({k: v for k, v in HTTP_REQUIRED.items() if "UPDATE" not in k})
    with pytest.raises(ConfigError) as raised:
        ClusterShazbot(app)
    assert str(raised.value) == (
        "SHAZBOT_MASTER_LIST_UPDATE is required with an HTTP(S) master list: the URL its "
        "updated list is PUT to (file, S3 and Redis master lists are updated where they are "
        "read, DNS ones never: they need no such setting)"
    )
    app = Flask("needs-no-update")
    app.config.update({**SECRETS, "SHAZBOT_BASE_URL": "http://127.0.0.1:5000/"})
    app.config.update(SHAZBOT_MASTER_LIST=location, SHAZBOT_AUTOSTART=False)
    del app.config["SHAZBOT_MASTER_LIST_UPDATE_AUTH"]
    ClusterShazbot(app)
    assert app.config["SHAZBOT_MASTER_LIST_UPDATE"] == location


# -- invalid values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SHAZBOT_GOSSIP_INTERVAL", "abc"),
        ("SHAZBOT_GOSSIP_INTERVAL", "0"),
        ("SHAZBOT_GOSSIP_INTERVAL", 0),
        ("SHAZBOT_GOSSIP_INTERVAL", -1),
        ("SHAZBOT_GOSSIP_INTERVAL", "-0.5"),
        ("SHAZBOT_GOSSIP_INTERVAL", "nan"),
        ("SHAZBOT_GOSSIP_INTERVAL", float("nan")),
        ("SHAZBOT_GOSSIP_INTERVAL", "inf"),
        ("SHAZBOT_GOSSIP_INTERVAL", True),
        ("SHAZBOT_GOSSIP_INTERVAL", [30]),
        ("SHAZBOT_MASTER_ANNOUNCE_MINIMUM", -1),
        ("SHAZBOT_MASTER_ANNOUNCE_INTERVAL", "ten"),
        ("SHAZBOT_MONITOR", "maybe"),
        ("SHAZBOT_MONITOR", 2),
        ("SHAZBOT_UPDATE_MASTER_LIST_ON_SHUTDOWN", "sometimes"),
        ("SHAZBOT_AUTOSTART", "nah"),
        ("SHAZBOT_BASE_URL", "ftp://127.0.0.1:5000/"),
        ("SHAZBOT_BASE_URL", "127.0.0.1:5000"),
        ("SHAZBOT_BASE_URL", "http://:5000/"),
        ("SHAZBOT_BASE_URL", "http://127.0.0.1:99999/"),
        ("SHAZBOT_BASE_URL", "http://my host/"),
        ("SHAZBOT_BASE_URL", 5000),
        ("SHAZBOT_MASTER_LIST", "http:///master.json"),
        ("SHAZBOT_MASTER_LIST", "ftp://127.0.0.1/master.json"),
        ("SHAZBOT_MASTER_LIST_UPDATE", "https://host:0/m"),
        ("SHAZBOT_MAX_BODY_BYTES", "abc"),
        ("SHAZBOT_MAX_BODY_BYTES", 100),
        ("SHAZBOT_MAX_BODY_BYTES", 0),
        ("SHAZBOT_MAX_BODY_BYTES", -4096),
        ("SHAZBOT_MAX_BODY_BYTES", "2048.5"),
        ("SHAZBOT_MAX_BODY_BYTES", "nan"),
        ("SHAZBOT_MAX_CLOCK_SKEW", 0),
        ("SHAZBOT_RETRIES", "0"),
        ("SHAZBOT_RETRIES", "1.5"),
        ("SHAZBOT_RETRIES", "often"),
        ("SHAZBOT_RETRIES", True),
        ("SHAZBOT_JOB_WORKERS", "0"),
        ("SHAZBOT_JOB_WORKERS", "many"),
        ("SHAZBOT_SECRET", 12345),
        ("SHAZBOT_CONTROL_SECRET", ["x", 5]),  # a list is a rotation: of strings
    ],
)
def test_an_invalid_value_is_named_without_leaking_secrets(key: str, value: Any) -> None:
    for source in ("config", "env"):
        if source == "env" and not isinstance(value, str):
            continue
        config = {k: v for k, v in HTTP_REQUIRED.items() if k != key}
        env: dict[str, str] = {}
        (config if source == "config" else env)[key] = value
        text = config_error(config, env)
        assert key in text


def test_retries_default_to_five_and_take_whole_numbers() -> None:
    assert load_settings(dict(HTTP_REQUIRED)).retries == 5
    assert load_settings(dict(HTTP_REQUIRED), {"SHAZBOT_RETRIES": "1"}).retries == 1


def test_an_invalid_value_in_the_environment_is_named_even_when_the_config_lacks_it() -> None:
    assert "SHAZBOT_GOSSIP_INTERVAL" in config_error(
        dict(HTTP_REQUIRED), {"SHAZBOT_GOSSIP_INTERVAL": "soon"}
    )


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("SHAZBOT_BASE_URL", "https://admin:pa55word-DDDD@127.0.0.1:5000/"),
        ("SHAZBOT_MASTER_LIST", "https://reader:pa55word-DDDD@127.0.0.1/m.json"),
        ("SHAZBOT_MASTER_LIST_UPDATE", "https://writer:pa55word-DDDD@127.0.0.1/m.json"),
    ],
)
def test_a_rejected_url_with_credentials_does_not_echo_the_password(key: str, url: str) -> None:
    text = config_error({**HTTP_REQUIRED, key: url})
    assert key in text and "credentials" in text
    assert "pa55word-DDDD" not in text


def test_a_bad_value_says_what_is_expected() -> None:
    assert "greater than 0" in config_error({**HTTP_REQUIRED, "SHAZBOT_GOSSIP_INTERVAL": 0})
    assert "true or false" in config_error({**HTTP_REQUIRED, "SHAZBOT_MONITOR": "maybe"})


# -- accepted forms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000/"),
        ("https://node.example", "https://node.example/"),  # a path is refused (below)
    ],
)
def test_base_url_gets_a_trailing_slash(given: str, effective: str) -> None:
    assert load({**HTTP_REQUIRED, "SHAZBOT_BASE_URL": given}).base_url == effective


def test_fractional_intervals_are_accepted() -> None:
    env = {"SHAZBOT_GOSSIP_INTERVAL": "0.25", "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "0.5"}
    settings = load({**HTTP_REQUIRED, "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 0.75}, env)
    assert (settings.gossip_interval, settings.master_announce_minimum) == (0.25, 0.5)
    assert settings.master_announce_interval == 0.75


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("ON", True),
        (" True ", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_spellings(text: str, value: bool) -> None:
    assert load(dict(HTTP_REQUIRED), {"SHAZBOT_MONITOR": text}).monitor is value


def test_max_body_bytes_accepts_a_whole_number_as_text() -> None:
    assert load(dict(HTTP_REQUIRED), {"SHAZBOT_MAX_BODY_BYTES": "65536"}).max_body_bytes == 65536


# -- options and secrets ---------------------------------------------------------


def test_unknown_option_is_rejected() -> None:
    text = config_error(dict(HTTP_REQUIRED), gossip_intervall=1)
    assert "gossip_intervall" in text and "gossip_interval" in text


def test_unknown_constructor_option_registers_nothing(tmp_path: Path) -> None:
    app = Flask("bad-option")
    app.config.update(HTTP_REQUIRED)
    with pytest.raises(ConfigError, match="tpyo"):
        ClusterShazbot(app, tpyo=True)
    assert "clustershazbot" not in app.extensions
    assert "clustershazbot" not in app.blueprints


def test_missing_setting_at_init_app_registers_nothing() -> None:
    app = Flask("missing")
    app.config.update({k: v for k, v in HTTP_REQUIRED.items() if k != "SHAZBOT_BASE_URL"})
    with pytest.raises(ConfigError, match="SHAZBOT_BASE_URL"):
        ClusterShazbot(app)
    assert "clustershazbot" not in app.extensions
    assert "clustershazbot" not in app.blueprints


def test_repr_of_settings_hides_secrets() -> None:
    settings = load()
    for text in (repr(settings), str(settings)):
        for secret in SECRETS.values():
            assert secret not in text
        assert "http://127.0.0.1:5000/" in text  # the rest is shown


# -- TLS -------------------------------------------------------------------------


def test_tls_files_are_loaded_at_init_and_bad_ones_name_the_setting(tmp_path: Path) -> None:
    import trustme

    ca, other = trustme.CA(), trustme.CA()
    leaf, stranger = ca.issue_cert("127.0.0.1"), other.issue_cert("127.0.0.1")
    ca_pem, cert, key, other_key = (
        tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem", "other.key")
    )
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    stranger.private_key_pem.write_to_path(str(other_key))
    both = tmp_path / "both.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(both))

    settings = load(
        {
            **HTTP_REQUIRED,
            "SHAZBOT_TLS_CA": str(ca_pem),
            "SHAZBOT_TLS_CERT": str(cert),
            "SHAZBOT_TLS_KEY": str(key),
        }
    )
    assert (settings.tls_ca, settings.tls_cert, settings.tls_key) == (
        str(ca_pem),
        str(cert),
        str(key),
    )
    assert load({**HTTP_REQUIRED, "SHAZBOT_TLS_CERT": str(both)}).tls_key is None  # key in the file
    assert load({**HTTP_REQUIRED, "SHAZBOT_TLS_CA": str(tmp_path)}).tls_ca == str(
        tmp_path
    )  # a CA dir

    assert "SHAZBOT_TLS_CA: no such file" in config_error(
        {**HTTP_REQUIRED, "SHAZBOT_TLS_CA": str(tmp_path / "nope")}
    )
    assert "SHAZBOT_TLS_CA" in config_error({**HTTP_REQUIRED, "SHAZBOT_TLS_CA": str(key)})
    assert "SHAZBOT_TLS_KEY is set without SHAZBOT_TLS_CERT" in config_error(
        {**HTTP_REQUIRED, "SHAZBOT_TLS_KEY": str(key)}
    )
    assert "SHAZBOT_TLS_CERT and SHAZBOT_TLS_KEY" in config_error(
        {**HTTP_REQUIRED, "SHAZBOT_TLS_CERT": str(cert), "SHAZBOT_TLS_KEY": str(other_key)}
    )
    assert "SHAZBOT_TLS_CERT" in config_error({**HTTP_REQUIRED, "SHAZBOT_TLS_CERT": str(cert)})


# -- secret rotation ---------------------------------------------------------------


def test_a_secret_takes_older_ones_still_accepted_the_first_is_sent() -> None:
    config = {
        **HTTP_REQUIRED,
        "SHAZBOT_SECRET": ["new-gossip-secret-1111", "old-gossip-secret-2222"],
    }
    env = {"SHAZBOT_CONTROL_SECRET": "new-control-secret-3333, old-control-secret-4444"}
    del config["SHAZBOT_CONTROL_SECRET"]
    settings = load(config, env)
    assert settings.secret == "new-gossip-secret-1111"
    assert settings.accepted_secrets == ("new-gossip-secret-1111", "old-gossip-secret-2222")
    assert settings.control_secret == "new-control-secret-3333"
    assert settings.accepted_control_secrets == (
        "new-control-secret-3333",
        "old-control-secret-4444",
    )
    assert config["SHAZBOT_CONTROL_SECRET"] == [
        "new-control-secret-3333",
        "old-control-secret-4444",
    ]
    assert "secret-" not in repr(settings)
    single = load()
    assert single.accepted_secrets == (SECRETS["SHAZBOT_SECRET"],)
    assert "SHAZBOT_SECRET" in config_error(
        {**HTTP_REQUIRED, "SHAZBOT_SECRET": "a-long-secret-value,,b"}
    )
    assert "SHAZBOT_SECRET" in config_error({**HTTP_REQUIRED, "SHAZBOT_SECRET": []})


def test_check_secret_accepts_each_of_the_accepted_secrets() -> None:
    from flask_clustershazbot.engine import check_secret

    accepted = ("new-gossip-secret-1111", "old-gossip-secret-2222")
    assert check_secret("new-gossip-secret-1111", accepted)
    assert check_secret("Bearer old-gossip-secret-2222", accepted)
    assert not check_secret("other-secret-33333333", accepted)
    assert not check_secret("new-gossip-secret-1111,old-gossip-secret-2222", accepted)
    assert not check_secret(None, accepted)


# -- hygiene -----------------------------------------------------------------------


def test_an_unknown_key_warns_with_the_closest_known_one(caplog: pytest.LogCaptureFixture) -> None:
    config = {**HTTP_REQUIRED, "SHAZBOT_GOSIP_INTERVAL": 5, "OTHER_KEY": 1}
    with caplog.at_level("WARNING", logger="flask_clustershazbot"):
        settings = load(config, {"SHAZBOT_MONITR": "true", "SHAZBOT_ZZZZZZZZZZZZ": "1"})
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "unknown setting SHAZBOT_GOSIP_INTERVAL in app.config is ignored; "
        "did you mean SHAZBOT_GOSSIP_INTERVAL?" in messages
    )
    assert (
        "unknown setting SHAZBOT_MONITR in the environment is ignored; did you mean SHAZBOT_MONITOR?"
        in messages
    )
    assert "unknown setting SHAZBOT_ZZZZZZZZZZZZ in the environment is ignored" in messages
    assert len(messages) == 3  # known keys and other prefixes: no word
    assert settings.gossip_interval == 30


@pytest.mark.parametrize(
    "url",
    [
        "http://0.0.0.0:5999/",
        "http://[::]:5999/",
        "http://0.1.2.3:5999/",
        "http://224.0.0.1:5999/",
        "http://255.255.255.255:5999/",
        "http://[ff02::1]:5999/",
    ],
)
def test_a_base_url_peers_cannot_reach_is_refused(url: str) -> None:
    text = config_error({**HTTP_REQUIRED, "SHAZBOT_BASE_URL": url})
    assert text.startswith("SHAZBOT_BASE_URL names ") and "address peers cannot reach" in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000/api/", "http://127.0.0.1:5000/api"])
def test_a_base_url_with_a_path_is_refused(url: str) -> None:
    text = config_error({**HTTP_REQUIRED, "SHAZBOT_BASE_URL": url})
    assert text.startswith("SHAZBOT_BASE_URL has the path '/api/'")
    assert "/clustershazbot/ at the root of the app" in text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/",
        "https://node-1.example:443",
        "http://[::1]:5000/",
        "http://10.0.0.5:3000/",
    ],
)
def test_reachable_base_urls_are_taken(url: str) -> None:
    assert load({**HTTP_REQUIRED, "SHAZBOT_BASE_URL": url}).base_url.rstrip("/") == url.rstrip("/")
