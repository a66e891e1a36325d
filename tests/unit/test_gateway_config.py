"""The gateway's Caddyfile: every parameter is checked against a grammar free of Caddyfile syntax,
so whatever reaches the renderer, the file keeps the template's structure (fuzzed), and keys only
ever appear inside their own quoted `header` matcher line."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from ollama_gpu.gateway_config import API_KEY, SERVED_PATHS, GatewayConfig, render_caddyfile

KEY_A = "k" * 32
KEY_B = "0123456789abcdef_-ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _config(**changes) -> GatewayConfig:
    base = dict(site_name="203.0.113.10", port=8443, bind_address="0.0.0.0", upstream="http://127.0.0.1:11434",
                api_keys=(KEY_A, KEY_B), served_paths=SERVED_PATHS["ollama"])
    return GatewayConfig(**(base | changes))


def _structure(caddyfile: str) -> list[str]:
    """The file with the keys' header lines taken out: what no key may change."""
    return [line for line in caddyfile.splitlines() if not line.strip().startswith("header Authorization ")]


def test_each_key_is_one_exact_bearer_match_inside_the_authorized_matcher() -> None:
    caddyfile = render_caddyfile(_config())
    matcher = re.search(r"@authorized \{\n(.*?)\n\t\}", caddyfile, re.DOTALL)
    assert matcher is not None
    assert matcher.group(1).splitlines() == [f'\t\theader Authorization "Bearer {KEY_A}"', f'\t\theader Authorization "Bearer {KEY_B}"']
    assert "\trespond @not_served \"not served through the gateway\" 404\n\t\treverse_proxy http://127.0.0.1:11434 {" in caddyfile
    assert 'respond "missing or invalid API key" 401' in caddyfile


def test_internal_ca_without_a_dns_name_and_acme_with_one() -> None:
    internal = render_caddyfile(_config())
    assert "https://203.0.113.10:8443 {" in internal and "\ttls internal {\n\n\t}\n" in internal
    assert "default_sni 203.0.113.10" in internal
    acme = render_caddyfile(_config(site_name="llm.example.com", acme_email="ops@example.com", port=443))
    assert "https://llm.example.com:443 {" in acme and "\ttls ops@example.com {\n\n\t}\n" in acme
    private = render_caddyfile(_config(site_name="llm.example.com", acme_email="ops@example.com",
                                       acme_directory="https://ca.internal:9000/acme/acme/directory", acme_ca_root=True))
    assert ("\ttls ops@example.com {\n\t\tca https://ca.internal:9000/acme/acme/directory\n"
            "\t\tca_root /etc/caddy/acme-ca-root.pem\n\t}\n") in private


def test_the_key_stays_at_the_gateway_and_streams_are_not_buffered() -> None:
    caddyfile = render_caddyfile(_config())
    assert "header_up -Authorization" in caddyfile
    assert "flush_interval -1" in caddyfile
    assert "admin off" in caddyfile


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=140))
def test_a_key_outside_the_grammar_is_refused_and_one_inside_keeps_the_structure(key: str) -> None:
    if API_KEY.fullmatch(key):
        assert _structure(render_caddyfile(_config(api_keys=(key,)))) == _structure(render_caddyfile(_config(api_keys=(KEY_A,))))
    else:
        with pytest.raises(ValueError) as refused:
            render_caddyfile(_config(api_keys=(KEY_A, key)))
        assert str(refused.value) == "an API key is not 32-128 characters of A-Z a-z 0-9 _ -", "a refused key is not echoed"


HOSTILE = ["a b", 'a"b', "a}b", "a{b", "a\nb", "a#b", "a\tb", "`x`", "{env.HOME}", "a;b", ""]


@pytest.mark.parametrize("field", ["site_name", "bind_address", "upstream", "acme_email", "upstream_key", "served_paths",
                                   "acme_directory"])
@pytest.mark.parametrize("value", HOSTILE)
def test_a_parameter_with_caddyfile_syntax_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        render_caddyfile(_config(**{field: ("/v1/*", value) if field == "served_paths" else value}))


@pytest.mark.parametrize("served", sorted(SERVED_PATHS))
def test_only_the_engines_inference_and_read_only_paths_are_forwarded(served: str) -> None:
    caddyfile = render_caddyfile(_config(served_paths=SERVED_PATHS[served]))
    assert f"\t\t@not_served not path {' '.join(SERVED_PATHS[served])}\n" in caddyfile
    forwarded = " ".join(SERVED_PATHS[served])
    for management in ("/api/pull", "/api/delete", "/api/create", "/slots", "/props", "/metrics", "/key/generate"):
        assert management not in forwarded


def test_the_router_gets_its_master_key_in_place_of_the_clients() -> None:
    master = "sk-" + "m" * 40
    caddyfile = render_caddyfile(_config(upstream_key=master, served_paths=SERVED_PATHS["router"]))
    assert f'\t\t\theader_up Authorization "Bearer {master}"\n' in caddyfile
    assert "header_up -Authorization" not in caddyfile


@pytest.mark.parametrize("keys", [(), (KEY_A, "short")])
def test_no_key_or_a_short_key_is_refused(keys: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        render_caddyfile(_config(api_keys=keys))


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError):
        render_caddyfile(_config(port=port))


def test_an_ipv6_site_is_bracketed_in_the_address_but_not_as_the_default_server_name() -> None:
    caddyfile = render_caddyfile(_config(site_name="2001:db8::10"))
    assert "https://[2001:db8::10]:8443 {" in caddyfile and "default_sni 2001:db8::10\n" in caddyfile
