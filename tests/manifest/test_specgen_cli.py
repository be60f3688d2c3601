"""`pxhostctl spec` (through pxhostctl's entry point) and its standalone twin."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from specgen_helpers import arg_after, container, load_docs, one, validate_all

from pxhostd.cli.main import main as pxhostctl_main
from pxhostd.manifest import cli
from pxhostd.manifest.model import render_yaml
from pxhostd.manifest.params import parse_params

REPO = Path(__file__).resolve().parents[2]


def pxhostctl(argv: list[str]) -> int:
    """pxhostctl's own entry point, which hands `spec` to the generator's parser."""
    assert argv[:1] == ["spec"]
    return pxhostctl_main(argv)


def test_options_pairs_and_queries_mix(capsys: pytest.CaptureFixture[str]) -> None:
    code = pxhostctl([
        "spec", "c=px-cli", "-k", "etcd://a:2379", "--drives", "/dev/sdb", "-f",
        "kbver=1.31", "-s", "/dev/sdc", "--query", "d=eth1&st=k8s", "--masters",
    ])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    expected = parse_params([
        ("c", "px-cli"), ("k", "etcd://a:2379"), ("s", "/dev/sdb"), ("s", "/dev/sdc"),
        ("f", "true"), ("kbver", "1.31"), ("d", "eth1"), ("st", "k8s"), ("mas", "true"),
    ])
    assert out == render_yaml(expected)
    docs = load_docs(out)
    validate_all(docs)
    args = container(one(docs, "DaemonSet"))["args"]
    assert arg_after(args, "-s") == ["/dev/sdb", "/dev/sdc"] and "-f" in args


def test_long_options_match_the_http_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--cluster", "x", "--kube-version", "1.30", "--secret-type", "vault",
                     "--etcd-userpwd", "u:p", "--namespace", "storage"]) == 0
    via_cli = capsys.readouterr().out
    same = parse_params([("c", "x"), ("kbver", "1.30"), ("st", "vault"), ("pwd", "u:p"),
                         ("ns", "storage")])
    assert via_cli == render_yaml(same)


def test_invalid_parameters_exit_2_with_every_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["f=maybe", "colour=blue", "type=docker"]) == cli.EXIT_INVALID
    out, err = capsys.readouterr()
    assert out == ""
    assert "f: expected a boolean" in err
    assert 'unknown parameter(s): "colour"' in err
    assert "docker install type is no longer supported" in err


def test_bad_cluster_name_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "portworx.yaml"
    for argv in (["-c", "bad name"], ["--cluster", "px;reboot"], ["c=px$(id)"],
                 ["--query", "cluster=a%20b"]):
        assert pxhostctl(["spec", *argv, "-o", str(out_file)]) == cli.EXIT_INVALID
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("pxhostctl spec: invalid parameters:\n  c"), err
        assert "expected a cluster name (letters, digits, '-', '_', '.'" in err
    assert not out_file.exists()


def test_bad_cluster_name_through_the_pxhostctl_program() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pxhostd.cli.main", "spec", "-c", "bad name"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == cli.EXIT_INVALID and proc.stdout == ""
    assert proc.stderr == (
        "pxhostctl spec: invalid parameters:\n  cluster (c): expected a cluster name (letters, "
        "digits, '-', '_', '.'; starting and ending with a letter or digit; at most 63 "
        'characters), got "bad name"\n'
    )


def test_not_a_pair_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster"]) == cli.EXIT_INVALID
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_no_strict_warns_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--no-strict", "colour=blue", "stork=true"]) == 0
    out, err = capsys.readouterr()
    assert 'warning: ignored unknown parameter(s): "colour"' in err
    assert "warning: stork: the Stork scheduler extender is not generated" in err
    assert "# WARNING: stork:" in out


def test_output_file_is_private_when_it_holds_secrets(tmp_path: Path) -> None:
    plain, secret = tmp_path / "plain.yaml", tmp_path / "sub" / "secret.yaml"
    assert cli.main(["-o", str(plain), "c=px"]) == 0
    assert cli.main(["-o", str(secret), "c=px", "t=tok"]) == 0
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert one(load_docs(secret.read_text()), "Secret")["stringData"] == {"token": "tok"}


def test_unwritable_output_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["-o", str(blocker / "out.yaml")]) == cli.EXIT_WRITE_FAILED
    assert "cannot write" in capsys.readouterr().err
