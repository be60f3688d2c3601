"""pxhostctl's own behaviour that needs no daemon: help, exit codes, spec files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pxhostd import errors
from pxhostd.cli import exitcodes
from pxhostd.cli.main import load_spec_file, main
from pxhostd.cli.parser import build_parser

COMMANDS = [
    "status",
    "get-spec",
    "plan",
    "install",
    "rollback",
    "start",
    "stop",
    "restart",
    "enable",
    "disable",
    "reconcile",
    "uninstall",
    "history",
    "watch",
    "spec",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_working_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"pxhostctl {command}" in out


def test_top_level_help_lists_every_command_and_exit_code() -> None:
    text = build_parser().format_help()
    for command in [*COMMANDS, "probe"]:
        assert command in text
    for code, _ in exitcodes.CODES:
        assert f"\n  {code:<3} " in text


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidSpec("x"), exitcodes.USAGE),
        (errors.InvalidPayload("x"), exitcodes.USAGE),
        (errors.InvalidOptions("x"), exitcodes.USAGE),
        (errors.DaemonUnavailable("x"), exitcodes.UNAVAILABLE),
        (errors.AccessDenied("x"), exitcodes.DENIED),
        (errors.Busy("x"), exitcodes.BUSY),
        (errors.NotInstalled("x"), exitcodes.NOT_INSTALLED),
        (errors.RolledBack("x"), exitcodes.ROLLED_BACK),
        (errors.Timeout("x"), exitcodes.TIMEOUT),
        (errors.Failed("x"), exitcodes.FAILED),
        (errors.SystemdError("x"), exitcodes.FAILED),
    ],
)
def test_exit_code_per_error_class(error: errors.PxError, code: int) -> None:
    assert exitcodes.for_error(error) == code


def test_error_names_round_trip_over_the_wire() -> None:
    for cls in (errors.Busy, errors.RolledBack, errors.InvalidPayload, errors.Failed):
        back = errors.error_from_dbus_name(cls("m").dbus_name, "m")
        assert type(back) is cls and str(back) == "m"
    denied = errors.error_from_dbus_name("org.freedesktop.DBus.Error.AccessDenied", "no")
    assert isinstance(denied, errors.AccessDenied)


def test_spec_file_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidSpec, match="cannot read"):
        load_spec_file(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("payload: [unclosed\n")
    with pytest.raises(errors.InvalidSpec, match="not valid YAML"):
        load_spec_file(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text("payload: /opt/a\nenv: {A: '1'}\nenv: {B: '2'}\n")
    with pytest.raises(errors.InvalidSpec, match="duplicate key 'env'"):
        load_spec_file(twice)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(errors.InvalidSpec, match="mapping"):
        load_spec_file(scalar)


def test_no_daemon_gives_a_clear_message_and_exit_3(tmp_path: Path) -> None:
    address = f"unix:path={tmp_path}/no-bus"
    proc = subprocess.run(
        [sys.executable, "-m", "pxhostd.cli.main", "status", "--bus-address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == exitcodes.UNAVAILABLE
    assert proc.stderr.startswith("pxhostctl: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


REPO = Path(__file__).resolve().parents[2]
SHIPPED_COMPLETION = REPO / "units" / "pxhostctl.bash-completion"


def test_shipped_completion_is_what_the_parser_generates() -> None:
    from pxhostd.cli.completion import bash_completion

    assert SHIPPED_COMPLETION.read_text() == bash_completion(), (
        "regenerate with: python -m pxhostd.cli.main completion bash "
        "> units/pxhostctl.bash-completion"
    )


def complete(words: list[str]) -> list[str]:
    """Run the shipped completion function in a real bash for the given command line."""
    script = (
        f"source {SHIPPED_COMPLETION}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_pxhostctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_completion_offers_commands_and_their_options() -> None:
    assert set(complete(["pxhostctl", "un"])) == {"uninstall"}
    assert "get-spec" in complete(["pxhostctl", ""])
    assert set(complete(["pxhostctl", "uninstall", "--w"])) == {"--wipe"}
    assert "--no-block" in complete(["pxhostctl", "--json", "restart", "--"])
    assert "--max-age" in complete(["pxhostctl", "probe", "--m"])
    assert "--cluster" in complete(["pxhostctl", "spec", "--cl"])


def test_completion_completes_option_values(tmp_path: Path) -> None:
    assert complete(["pxhostctl", "completion", ""]) == ["bash"]
    assert complete(["pxhostctl", "history", "--limit", ""]) == []
    assert complete(["pxhostctl", "install", "--id", "--"]) == []
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text("x")
    # Files for --spec, and compopt -o filenames so bash descends into directories.
    words = ["pxhostctl", "install", "--spec", f"{tmp_path}/sp"]
    calls = tmp_path / "compopt.log"
    script = (
        f'compopt() {{ echo "compopt $*" >>{calls}; }}\n'
        f"source {SHIPPED_COMPLETION}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_pxhostctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [f"{tmp_path}/specs"]
    assert calls.read_text() == "compopt -o filenames\n"


def test_global_json_is_not_overwritten_by_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--json", "status"]).json is True
    assert parser.parse_args(["status", "--json"]).json is True
    assert parser.parse_args(["status"]).json is False


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "x"])
def test_history_limit_out_of_range_is_a_usage_error(
    limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["history", "--limit", limit])
    assert exit_info.value.code == exitcodes.USAGE
    assert "--limit" in capsys.readouterr().err


def test_subcommand_help_points_at_the_exit_codes_once() -> None:
    from pxhostd.cli.completion import command_parsers

    for name, parser in command_parsers().items():
        if name in ("probe", "spec"):
            continue
        text = parser.format_help()
        assert exitcodes.POINTER in text, name
        assert "exit codes:\n" not in text, name
        assert "pxhostctl(1)" in text and "docs/" not in text, name
    top = build_parser().format_help()
    assert top.count("exit codes:") == 1 and "pxhostd.spec(5)" in top


def test_probe_not_ready_exits_9_as_documented(tmp_path: Path) -> None:
    code = main(["probe", "--status-file", str(tmp_path / "absent")])
    assert code == exitcodes.NOT_READY


def test_probe_keeps_the_cli_exit_code() -> None:
    from pxhostd.status import probe

    assert probe.NOT_READY == exitcodes.NOT_READY


def test_progress_live_line_ends_clean_and_piped_is_one_line_per_step() -> None:
    import io

    from pxhostd.cli.output import Progress

    tty = io.StringIO()
    live = Progress(tty, live=True)
    live(10, "staging")
    live.note_status("portworx.service: Initializing storage")
    live(65, "restarting portworx.service (1.1.0), waiting up to 92s for it to be active")
    live.tick()
    live.close()
    text = tty.getvalue()
    assert "portworx.service: Initializing storage" in text
    assert " · 0s" in text  # elapsed time of the step
    # The end: the last step alone on a cleared line, then a newline; nothing stale after.
    assert text.endswith(
        "\r\033[K[ 65%] restarting portworx.service (1.1.0), waiting up to 92s for it to be "
        "active\n"
    )
    pipe = io.StringIO()
    plain = Progress(pipe, live=False)
    plain(10, "staging")
    plain.note_status("ignored when piped")
    plain(10, "staging")
    plain(65, "restarting")
    plain.close()
    assert pipe.getvalue() == "[ 10%] staging\n[ 65%] restarting\n"


def test_help_texts_point_at_installed_man_pages_not_source_docs() -> None:
    from pxhostd.cli.completion import command_parsers

    for name, parser in command_parsers().items():
        assert "docs/" not in parser.format_help(), name
