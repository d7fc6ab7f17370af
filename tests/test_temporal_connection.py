"""Temporal connection settings (workflows/connection.py): precedence, validation at start naming the setting,
secrets never shown. The TLS handshakes themselves are in test_temporal_tls.py (a real server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.workflows.connection import ConnectionSettingsError, TemporalConnection
from tests.temporal_server import Pki, Postgres, TemporalServer, make_pki

SECRET = "tcld_Zz9-SECRET-api-key-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def resolve(env: dict[str, str], **flags: str) -> TemporalConnection:
    return TemporalConnection.resolve(env=env, flags=flags)


def refused(env: dict[str, str], setting: str, **flags: str) -> str:
    with pytest.raises(ConnectionSettingsError) as caught:
        resolve(env, **flags)
    assert caught.value.setting == setting, str(caught.value)
    assert setting in str(caught.value)
    return str(caught.value)


def test_defaults_are_the_local_dev_server_in_plaintext() -> None:
    connection = resolve({})
    assert (connection.address, connection.namespace, connection.uses_tls) == ("127.0.0.1:7233", "default", False)
    assert connection.tls_config() is False


def test_flags_win_over_the_environment_and_a_command_address_over_both(pki: Pki) -> None:
    env = {"AUTONOMY_TEMPORAL_NAMESPACE": "from-env", "AUTONOMY_TEMPORAL_ADDRESS": "env.example:7233"}
    connection = resolve(env, AUTONOMY_TEMPORAL_NAMESPACE="from-flag", AUTONOMY_TEMPORAL_TLS_CA=str(pki.ca))
    assert connection.namespace == "from-flag" and connection.address == "env.example:7233"
    assert connection.uses_tls and connection.tls_ca == pki.ca
    own = TemporalConnection.resolve(address="cli.example:7000", env=env, flags={})
    assert own.address == "cli.example:7000"


def test_mutual_tls_settings_load_into_the_sdk_config(pki: Pki) -> None:
    env = {
        "AUTONOMY_TEMPORAL_TLS_CERT": str(pki.client_cert),
        "AUTONOMY_TEMPORAL_TLS_KEY": str(pki.client_key),
        "AUTONOMY_TEMPORAL_TLS_CA": str(pki.ca),
        "AUTONOMY_TEMPORAL_TLS_SERVER_NAME": "temporal.test",
    }
    config = resolve(env).tls_config()
    assert not isinstance(config, bool)
    assert config.client_cert == pki.client_cert.read_bytes() and config.domain == "temporal.test"
    assert config.server_root_ca_cert == pki.ca.read_bytes()


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"AUTONOMY_TEMPORAL_ADDRESS": "https://temporal.example"}, "AUTONOMY_TEMPORAL_ADDRESS"),
        ({"AUTONOMY_TEMPORAL_ADDRESS": "temporal.example:99999"}, "AUTONOMY_TEMPORAL_ADDRESS"),
        ({"AUTONOMY_TEMPORAL_NAMESPACE": "two words"}, "AUTONOMY_TEMPORAL_NAMESPACE"),
        ({"AUTONOMY_TEMPORAL_TLS": "maybe"}, "AUTONOMY_TEMPORAL_TLS"),
        ({"AUTONOMY_TEMPORAL_TLS_SERVER_NAME": "not a host"}, "AUTONOMY_TEMPORAL_TLS_SERVER_NAME"),
        ({"AUTONOMY_TEMPORAL_TLS_CA": "/nonexistent/ca.pem"}, "AUTONOMY_TEMPORAL_TLS_CA"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(env: dict[str, str], setting: str) -> None:
    refused(env, setting)


def test_a_certificate_without_its_key_is_refused_naming_the_key(pki: Pki) -> None:
    message = refused({"AUTONOMY_TEMPORAL_TLS_CERT": str(pki.client_cert)}, "AUTONOMY_TEMPORAL_TLS_KEY")
    assert "missing" in message
    refused({"AUTONOMY_TEMPORAL_TLS_KEY": str(pki.client_key)}, "AUTONOMY_TEMPORAL_TLS_CERT")


def test_a_key_that_is_not_the_certificates_is_refused(pki: Pki) -> None:
    env = {"AUTONOMY_TEMPORAL_TLS_CERT": str(pki.client_cert), "AUTONOMY_TEMPORAL_TLS_KEY": str(pki.stranger_key)}
    refused(env, "AUTONOMY_TEMPORAL_TLS_KEY")


def test_files_that_are_not_pem_are_refused_without_quoting_them(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("PRIVATE-BITS-DO-NOT-PRINT")
    assert "PRIVATE-BITS" not in refused({"AUTONOMY_TEMPORAL_TLS_CA": str(junk)}, "AUTONOMY_TEMPORAL_TLS_CA")
    env = {"AUTONOMY_TEMPORAL_TLS_CERT": str(pki.client_cert), "AUTONOMY_TEMPORAL_TLS_KEY": str(junk)}
    assert "PRIVATE-BITS" not in refused(env, "AUTONOMY_TEMPORAL_TLS_KEY")
    env = {"AUTONOMY_TEMPORAL_TLS_CERT": str(pki.client_key), "AUTONOMY_TEMPORAL_TLS_KEY": str(pki.client_key)}
    refused(env, "AUTONOMY_TEMPORAL_TLS_CERT")  # a key where the certificate belongs


def test_tls_settings_with_tls_turned_off_are_refused(pki: Pki) -> None:
    refused({"AUTONOMY_TEMPORAL_TLS": "false", "AUTONOMY_TEMPORAL_TLS_CA": str(pki.ca)}, "AUTONOMY_TEMPORAL_TLS_CA")


# -- API key -----------------------------------------------------------------------------------------------------


def test_an_api_key_turns_tls_on_and_is_never_shown() -> None:
    connection = resolve({"AUTONOMY_TEMPORAL_API_KEY": SECRET, "AUTONOMY_TEMPORAL_ADDRESS": "ns.tmprl.cloud:7233"})
    assert connection.api_key == SECRET and connection.uses_tls
    assert SECRET not in repr(connection) and SECRET not in connection.describe()
    assert "API key" in connection.describe()


def test_an_api_key_is_never_sent_in_plaintext() -> None:
    message = refused(
        {"AUTONOMY_TEMPORAL_API_KEY": SECRET, "AUTONOMY_TEMPORAL_TLS": "false"}, "AUTONOMY_TEMPORAL_API_KEY"
    )
    assert SECRET not in message


@pytest.mark.parametrize("bad", [SECRET + "\nX-Injected: 1", "key with spaces", "kéy", "k" * 20000])
def test_a_malformed_api_key_is_refused_without_quoting_it(bad: str) -> None:
    message = refused({"AUTONOMY_TEMPORAL_API_KEY": bad}, "AUTONOMY_TEMPORAL_API_KEY")
    assert bad not in message and bad[:12] not in message


def test_api_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(SECRET + "\n")
    assert resolve({}, AUTONOMY_TEMPORAL_API_KEY_FILE=str(key_file)).api_key == SECRET
    both = {"AUTONOMY_TEMPORAL_API_KEY": SECRET, "AUTONOMY_TEMPORAL_API_KEY_FILE": str(key_file)}
    refused(both, "AUTONOMY_TEMPORAL_API_KEY_FILE")
    key_file.write_text("  \n")
    refused({"AUTONOMY_TEMPORAL_API_KEY_FILE": str(key_file)}, "AUTONOMY_TEMPORAL_API_KEY_FILE")
    refused({"AUTONOMY_TEMPORAL_API_KEY_FILE": str(tmp_path / "missing")}, "AUTONOMY_TEMPORAL_API_KEY_FILE")


# -- the commands refuse to start --------------------------------------------------------------------------------


def test_the_worker_command_refuses_to_start_naming_the_setting_and_not_the_key(pki: Pki, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "AUTONOMY_STATE_DIR": str(tmp_path),
        "AUTONOMY_TEMPORAL_API_KEY": SECRET,
    }
    done = subprocess.run(
        [sys.executable, "-m", "autonomy_controller.controller.cli", "--temporal-plaintext", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "AUTONOMY_TEMPORAL_API_KEY" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autonomy_controller.controller.cli",
            "--temporal-tls-cert",
            str(pki.client_cert),
            "serve",
        ],
        env={**env, "AUTONOMY_TEMPORAL_API_KEY": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "AUTONOMY_TEMPORAL_TLS_KEY" in done.stderr


def _paths(document: object, prefix: str = "") -> set[str]:
    if not isinstance(document, dict):
        return {prefix}
    return {path for key, value in document.items() for path in _paths(value, f"{prefix}.{key}")}


def test_the_deploy_example_configures_the_server_the_tests_run(pki: Pki, tmp_path: Path) -> None:
    """examples/deploy/temporal-config.yaml has every setting the tests' server has (TLS, PostgreSQL, ports)."""
    example = yaml.safe_load((REPO_ROOT / "examples" / "deploy" / "temporal-config.yaml").read_text())
    tested = TemporalServer(tmp_path, Postgres("127.0.0.1", 5432, "u", "p"), pki).config()
    assert _paths(tested) <= _paths(example), sorted(_paths(tested) - _paths(example))
    assert example["global"]["tls"]["frontend"]["server"]["requireClientAuth"] is True
