"""Settings from the environment (xdpctl.config): each field from its
XDPCTL_ variable, converted and checked as a value passed in would be;
values passed in win; a bad variable is an error naming it."""

from __future__ import annotations

import pytest

from xdpctl import abi
from xdpctl.config import DEFAULT_CAPACITY, DEFAULT_PIN_DIR, NAMES, Settings, env_name, load_settings
from xdpctl.core.errors import ValidationError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(env_name(name), raising=False)
    return monkeypatch


def test_defaults_without_environment() -> None:
    s = load_settings()
    assert (s.pin_dir, s.capacity, s.prealloc, s.etcd, s.api_protect_reads) == \
        (DEFAULT_PIN_DIR, DEFAULT_CAPACITY, [], None, True)


def test_each_kind_of_field_from_its_variable(clean_env) -> None:
    for name, text in (("PIN_DIR", "/sys/fs/bpf/elsewhere"), ("CAPACITY", '{"xc_v4_l32": 4096}'),
                       ("PREALLOC", "xc_v6_l128, xc_v4_l32"), ("API_PROTECT_READS", "false"),
                       ("API_EXPIRE_INTERVAL", "2.5"), ("API_MAX_BODY", "1024"), ("ETCD", ""),
                       ("API_TOKEN", "  ")):
        clean_env.setenv("XDPCTL_" + name, text)
    s = load_settings()
    assert s.pin_dir == "/sys/fs/bpf/elsewhere"
    assert s.capacity == {**DEFAULT_CAPACITY, "xc_v4_l32": 4096}
    assert s.prealloc == ["xc_v4_l32", "xc_v6_l128"]  # in the ABI's order
    assert (s.api_protect_reads, s.api_expire_interval, s.api_max_body) == (False, 2.5, 1024)
    assert s.etcd is None and s.api_token is None  # empty: unset; blank token: none


def test_values_passed_in_win(clean_env) -> None:
    clean_env.setenv("XDPCTL_PIN_DIR", "/sys/fs/bpf/from-env")
    clean_env.setenv("XDPCTL_STATE_DIR", "/var/lib/from-env")
    s = Settings(pin_dir="/sys/fs/bpf/given")
    assert (s.pin_dir, s.state_dir) == ("/sys/fs/bpf/given", "/var/lib/from-env")


@pytest.mark.parametrize("name,text,said", [
    ("CAPACITY", "{xc_v4_l32: 4096}", "setting XDPCTL_CAPACITY: not JSON: Expecting property name"),
    ("CAPACITY", '{"xc_cfg": 4}', "setting XDPCTL_CAPACITY: not resizable: xc_cfg"),
    ("CAPACITY", '{"xc_v4_l32": 0}', "setting XDPCTL_CAPACITY: sizes must be integers of at least 1: xc_v4_l32"),
    ("PREALLOC", "xc_v6_trie", "setting XDPCTL_PREALLOC: cannot be preallocated: xc_v6_trie"),
    ("API_MAX_BODY", "lots", "setting XDPCTL_API_MAX_BODY: should be an integer, not 'lots'"),
    ("API_PROTECT_READS", "maybe", "setting XDPCTL_API_PROTECT_READS: should be true or false"),
    ("API_EXPIRE_INTERVAL", "-1", "setting XDPCTL_API_EXPIRE_INTERVAL: should be at least 0"),
    ("API_EXPIRE_INTERVAL", "nan", "setting XDPCTL_API_EXPIRE_INTERVAL: should be at least 0"),
    ("API_MAX_BODY", "0", "setting XDPCTL_API_MAX_BODY: should be at least 1"),
])
def test_a_bad_variable_is_named(clean_env, name, text, said) -> None:
    clean_env.setenv("XDPCTL_" + name, text)
    with pytest.raises(ValidationError) as err:
        load_settings()
    assert str(err.value).startswith(said)


def test_unknown_values_passed_in_are_refused() -> None:
    with pytest.raises(ValidationError, match="setting bogus: unknown"):
        load_settings(bogus=1)
    assert Settings(prealloc="all").prealloc == list(abi.PREALLOCATABLE)
    with pytest.raises(ValidationError, match="setting api_max_body: should be an integer"):
        Settings(api_max_body=True)  # values passed in are checked as the environment's are
