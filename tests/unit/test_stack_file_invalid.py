"""Stack files `make plan` reads that Pulumi would refuse or read differently: each ends in one
message naming the stack and the place (a line of the file, or the config key) with the fix, exit
status 2 and nothing rendered; never a traceback, a silently dropped value or an expansion bomb."""

import pytest

from ollama_gpu import config_loader
from ollama_gpu.stack_render import render_stack
from tests.unit.conftest import HOST_KEY


@pytest.fixture
def plan_file(tmp_path, monkeypatch, offline_env):
    """`make plan` for a stack file with the given content."""
    monkeypatch.setattr(config_loader, "REPO", tmp_path)

    def plan(content, stack: str = "bad") -> tuple[str, int]:
        path = tmp_path / f"Pulumi.{stack}.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return render_stack(stack)

    return plan


BILLION_LAUGHS = "\n".join(
    ["config:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["  ollama-gpu:profile: *a8"]
) + "\n"


@pytest.mark.parametrize(
    "content, says",
    [
        pytest.param("config:\n  ollama-gpu:profile: [a10\n", "line 3", id="syntax-error"),
        pytest.param("config:\n\tollama-gpu:profile: a10\n", "line 2, column 1: found character '\\t'", id="tab"),
        pytest.param(b"config:\n  ollama-gpu:profile: a\x0010\n", "control character U+0000", id="nul-byte"),
        pytest.param(b"config:\n  ollama-gpu:profile: \xff\n", "is not UTF-8", id="not-utf-8"),
        pytest.param("- config\n", "is a YAML list, not a mapping", id="top-level-list"),
        pytest.param("config:\n  - ollama-gpu:profile\n", "`config:` is a YAML list", id="config-list"),
        pytest.param("config: a10\n", "`config:` is a YAML str", id="config-string"),
        pytest.param("config:\n", "ollama-gpu:profile = (not set)", id="config-null"),
        pytest.param("config:\n  ollama-gpu:profile: 2024-01-01\n", "ollama-gpu:profile = '2024-01-01'", id="date"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:server:\n    env:\n      keepAlive: 2024-01-01\n",
                     "ollama-gpu:server.env.keepAlive = '2024-01-01': is not a Go duration", id="date-in-a-section"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:server: !!set {port}\n", "explicit tag", id="set"),
        pytest.param("config:\n  ollama-gpu:profile: !!python/object/apply:os.system [touch pwned]\n",
                     "explicit tag 'tag:yaml.org,2002:python/object/apply:os.system'", id="python-tag"),
        pytest.param("config:\n  ? [a, b]\n  : 1\n", "is not a string", id="complex-key"),
        pytest.param("config: {}\n---\nconfig: {}\n", "line 2, column 1: a second YAML document", id="two-documents"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:server:\n    1: x\n", "the key '1' is not a string",
                     id="integer-key"),
        pytest.param("config:\n  ollama-gpu:profile: a10\n  ollama-gpu:profile: none\n",
                     "line 3, column 3: the key 'ollama-gpu:profile' appears twice (first on line 2)", id="duplicate-key"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:server:\n    port: 1\n    port: 2\n",
                     "the key 'port' appears twice (first on line 4)", id="duplicate-nested-key"),
        pytest.param(BILLION_LAUGHS, "anchors and aliases", id="alias-expansion-bomb"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:server: &s {port: 1}\n", "anchors and aliases",
                     id="anchor"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:x: " + "[" * 40 + "]" * 40 + "\n", "nest deeper",
                     id="deep-nesting"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:x: " + "9" * 5000 + "\n", "number too long",
                     id="huge-number"),
        pytest.param("# " + "x" * (2 * 1024 * 1024) + "\n", "a stack file is a few kilobytes", id="two-megabytes"),
        # YAML 1.1 readers take `yes` for true; Pulumi's YAML 1.2 reader passes the string on.
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:server:\n    allowPublicBind: yes\n",
                     "ollama-gpu:server.allowPublicBind = 'yes'", id="yes-is-a-string"),
        # Keys this project would silently never read.
        pytest.param("config:\n  ollama_gpu:profile: a10\n", "rename it to 'ollama-gpu:profile'", id="underscore-namespace"),
        pytest.param("config:\n  olama-gpu:profile: a10\n", "rename it to 'ollama-gpu:profile'", id="misspelt-namespace"),
        pytest.param("config:\n  profile: a10\n", "rename it to 'ollama-gpu:profile'", id="no-namespace"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:host.address: 203.0.113.10\n",
                     "ollama-gpu:host.address = '203.0.113.10': is a flat key", id="flat-key"),
        pytest.param("config:\n  ollama-gpu:profile: none\n  ollama-gpu:sshPrivateKey: {secure: ''}\n",
                     "ollama-gpu:sshPrivateKey = (secure value not shown)", id="empty-secure-value"),
    ],
)
def test_a_stack_file_pulumi_would_refuse_gets_one_message(plan_file, tmp_path, content, says):
    text, code = plan_file(content)
    assert code == 2
    assert "stack 'bad'" in text.splitlines()[0] or text.splitlines()[3].startswith("stack 'bad'"), text
    assert says in text, text
    assert "Fix: " in text
    assert "Traceback" not in text and len(text) < 2000
    assert not list(tmp_path.glob("pwned*"))


def test_keys_of_other_namespaces_belong_to_others(plan_file):
    text, code = plan_file("config:\n  ollama-gpu:profile: none\n  aws:region: eu-west-1\n")
    assert code == 0, text


def test_what_the_readme_commands_store_is_accepted(plan_file):
    """`pulumi config set --path server.env.keepAlive -1` and `--path ...extraEnv.OLLAMA_NOPRUNE 1`."""
    text, code = plan_file(
        "config:\n  ollama-gpu:profile: none\n  ollama-gpu:server:\n    env:\n      keepAlive: -1\n"
        "      extraEnv:\n        OLLAMA_NOPRUNE: 1\n"
    )
    assert code == 0, text
    assert "OLLAMA_KEEP_ALIVE=-1" in text and "OLLAMA_NOPRUNE=1" in text


def test_a_remote_stack_file_with_a_well_formed_host_key_renders(plan_file):
    text, code = plan_file(
        f"config:\n  ollama-gpu:profile: a10\n  ollama-gpu:host:\n    address: 203.0.113.10\n    user: ubuntu\n"
        f"    hostKey: {HOST_KEY}\n"
    )
    assert code == 0, text


def test_a_stack_name_is_not_a_path(plan_file):
    text, code = render_stack("../etc/passwd")
    assert code == 2 and text.startswith("stack '../etc/passwd': not a stack name")
