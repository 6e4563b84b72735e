"""``kondukt ui``'s command line: in the lazy command table, its flags, its refusals (exit 2, one line)."""

from __future__ import annotations

import pytest

from kondukt.cli import app
from kondukt.cli import ui as ui_command


def test_ui_is_a_command_imported_only_when_chosen() -> None:
    assert [c.module for c in app.COMMANDS if c.name == "ui"] == ["kondukt.cli.ui"]
    args = app.parse_args(["-n", "demo", "ui", "--port", "0", "--allowed-host", "ui.example", "--read-only"])
    assert (args.namespace, args.port, args.allowed_host, args.read_only, args.address) == (
        "demo", 0, ["ui.example"], True, "127.0.0.1")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["ui", "--port", "70000"], "--port 70000: expected 0-65535", id="port"),
        pytest.param(["ui", "--max-branches", "0"], "--max-branches must be at least 1", id="max-branches"),
        pytest.param(["ui", "--kubeconfig", "/nonexistent/kubeconfig"],
                     "no kubeconfig found at /nonexistent/kubeconfig", id="no-kubeconfig"),
    ],
)
def test_bad_flags_are_refused_in_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.parametrize(("address", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                   ("0.0.0.0", False), ("192.0.2.7", False)])
def test_only_loopback_addresses_keep_the_server_private(address: str, loopback: bool) -> None:
    assert ui_command._loopback(address) is loopback
