from pathlib import Path

import pytest

from daemon.config import load_settings, parse_listen
from daemon.errors import InvalidInput


def test_defaults(tmp_path):
    settings = load_settings(None, None, environ={"XDG_DATA_HOME": str(tmp_path)})
    assert settings.data_dir == str(tmp_path / "filmroll")
    assert settings.listen == "127.0.0.1:2283"
    assert settings.config_file == ""


def test_systemd_state_directory_is_the_service_default():
    settings = load_settings(None, None, environ={"STATE_DIRECTORY": "/var/lib/filmroll"})
    assert settings.data_dir == "/var/lib/filmroll"


def test_precedence_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('listen = "0.0.0.0:1000"\nlog_level = "debug"\ndata_dir = "/srv/a"\n')
    environ = {"FILMROLL_LISTEN": "127.0.0.1:2000", "FILMROLL_DATA_DIR": "/srv/b"}
    settings = load_settings(str(config), {"data_dir": "/srv/c"}, environ=environ)
    assert settings.log_level == "debug"  # file
    assert settings.listen == "127.0.0.1:2000"  # environment beats file
    assert settings.data_dir == "/srv/c"  # flag beats environment
    assert settings.config_file == str(config)


def test_config_file_from_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('log_format = "json"\n')
    assert load_settings(None, None, environ={"FILMROLL_CONFIG": str(config)}).log_format == "json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen = ", "is not valid TOML"),
        ("unknown_key = 1", "Invalid setting"),
        ('log_level = "loud"', "Invalid setting"),
        ('listen = "nohost"', "Invalid listen address"),
    ],
)
def test_bad_config_file_is_named(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text + "\n")
    with pytest.raises(InvalidInput, match=message):
        load_settings(str(config), None, environ={})


def test_unknown_environment_variable_is_refused():
    with pytest.raises(InvalidInput, match="FILMROLL_NOPE"):
        load_settings(None, None, environ={"FILMROLL_NOPE": "1"})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(InvalidInput, match="Cannot read config file"):
        load_settings(str(tmp_path / "absent.toml"), None, environ={})


def test_listen_parsing():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:2283") == ("::1", 2283)
    for bad in ("2283", "host:", "host:99999", ":80"):
        with pytest.raises(InvalidInput):
            parse_listen(bad)


def test_storage_template_defaults():
    settings = load_settings(None, None, environ={})
    assert settings.storage_template.enabled is True
    assert settings.storage_template.hash_verification_enabled is True
    assert settings.storage_template.template == "{{y}}/{{y}}-{{MM}}-{{dd}}/{{filename}}"


def test_storage_template_from_file_and_environment(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[storageTemplate]\nhashVerificationEnabled = false\ntemplate = "{{album}}/{{filename}}"\n'
    )
    settings = load_settings(str(config), None, environ={"FILMROLL_STORAGE_TEMPLATE__ENABLED": "false"})
    assert settings.storage_template.enabled is False
    assert settings.storage_template.hash_verification_enabled is False
    assert settings.storage_template.template == "{{album}}/{{filename}}"


@pytest.mark.parametrize("template", ["{{y}}/{{nope}}", "{{#if album}}{{album}}", "{{y}/{{filename}}", ""])
def test_invalid_storage_template_refuses_to_start(tmp_path, template):
    config = tmp_path / "config.toml"
    config.write_text(f"[storageTemplate]\ntemplate = {template!r}\n")
    with pytest.raises(InvalidInput) as raised:
        load_settings(str(config), None, environ={})
    assert str(raised.value).startswith("Invalid storage template: ")


def test_example_config_shows_the_defaults():
    example = Path(__file__).parents[2] / "systemd" / "config.example.toml"
    settings = load_settings(str(example), None, environ={})
    assert settings.storage_template == load_settings(None, None, environ={}).storage_template
