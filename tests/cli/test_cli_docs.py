"""The shipped docs against the parsers: every option of every command is in its --help and
in the man pages, the exit-code table is the same in both, every man page is shipped by
both packages, and the rendered unit points at them."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pxhostd.cli import exitcodes
from pxhostd.cli.completion import command_parsers

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "docs" / "man"
PAGES = ("pxhostctl.1", "pxhostd.8", "pxhostd-specgen.1", "pxhostd-pod.8", "pxhostd.spec.5")


def man_text(name: str) -> str:
    """The page's text with groff's escapes for '-', quotes and fonts undone."""
    text = (MAN / name).read_text().replace("\\-", "-").replace("\\(dq", '"')
    return re.sub(r"\\f[BIRP]", "", text)


def options(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:  # argparse has no public accessor
        if action.help is argparse.SUPPRESS:
            continue
        found.extend(action.option_strings)
    return found


#: Where each command's options are documented.
PAGE_OF = {"spec": "pxhostd-specgen.1"}


@pytest.mark.parametrize("command", sorted(command_parsers()))
def test_every_option_is_in_help_and_man_page(command: str) -> None:
    parser = command_parsers()[command]
    help_text = parser.format_help()
    page = man_text(PAGE_OF.get(command, "pxhostctl.1"))
    assert re.search(rf"^\.TP\n.*\b{re.escape(command)}\b", page, re.MULTILINE) or (
        command in page
    ), f"{command} is not in the man page"
    missing_help = [o for o in options(parser) if o not in help_text]
    missing_man = [o for o in options(parser)
                   if o not in ("-h", "--help") and not re.search(
                       rf"(?<![\w-]){re.escape(o)}(?![\w-])", page)]
    assert missing_help == [], f"{command}: not in --help: {missing_help}"
    assert missing_man == [], f"{command}: not in {PAGE_OF.get(command, 'pxhostctl.1')}"


def test_top_level_options_are_documented() -> None:
    from pxhostd.cli.parser import build_parser

    page = man_text("pxhostctl.1")
    for option in options(build_parser()):
        assert option in page, option


def test_pod_options_are_in_its_man_page() -> None:
    from pxhostd.pod.specbuild import argparse_help

    page = man_text("pxhostd-pod.8")
    for option in re.findall(r"(?<![\w-])--[a-z][a-z-]+", argparse_help()):
        assert option in page, option


def test_the_exit_code_table_is_the_same_in_help_and_man_page() -> None:
    page = man_text("pxhostctl.1")
    section = page.split(".SH EXIT STATUS", 1)[1].split(".PP", 1)[0]
    documented = re.findall(r"^\.TP\n\.B (\d+)\n(.+)$", section, re.MULTILINE)
    assert [(int(c), t) for c, t in documented] == [
        (c, t) for c, t in exitcodes.CODES
    ]


def test_every_man_page_is_shipped_by_both_packages() -> None:
    deb = (REPO / "debian" / "pxhostd.manpages").read_text().split()
    rpm = (REPO / "rpm" / "pxhostd.spec").read_text()
    assert sorted(deb) == sorted(f"docs/man/{p}" for p in PAGES)
    assert sorted(p.name for p in MAN.iterdir()) == sorted(PAGES)
    for page in PAGES:
        section = page.rsplit(".", 1)[1]
        assert f"docs/man/{page} %{{buildroot}}%{{_mandir}}/man{section}/{page}" in rpm
        assert f"%{{_mandir}}/man{section}/{page}*" in rpm


def test_see_also_names_only_pages_that_exist() -> None:
    ours = {p.rsplit(".", 1)[0] for p in PAGES}
    for page in PAGES:
        for name in re.findall(r"\.BR (pxhost[\w.-]+) \(\d\)", man_text(page)):
            assert name in ours, f"{page} refers to {name}, which is not shipped"


def test_rendered_unit_documents_itself() -> None:
    template = (REPO / "templates" / "portworx.service.j2").read_text()
    docs = re.search(r"^Documentation=(.+)$", template, re.MULTILINE)
    assert docs is not None
    for ref in docs.group(1).split():
        name, section = re.fullmatch(r"man:([\w.-]+)\((\d)\)", ref).groups()  # type: ignore[union-attr]
        assert f"{name}.{section}" in PAGES
