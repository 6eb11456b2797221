"""The CLI documents itself: every option has help, docs/cli.md lists every command and exit code."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest
from support import ROOT

from recstop.producers import cli, sandboxcmd
from recstop.worker.model import exitcodes
from recstop.worker.model.vocabulary import State

CLI_DOC = ROOT / "docs" / "cli.md"


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command parser, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def test_every_option_and_argument_of_every_command_has_help():
    """Walking the parser: no option or positional argument of any subcommand lacks a help text."""
    missing = [
        f"recstop {' '.join(path)} {action.option_strings or action.dest}"
        for path, parser in commands(cli._parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not (action.help or "").strip()
    ]
    assert missing == []


def test_every_subcommand_has_a_one_line_help():
    """Each subcommand shows a summary in its parent's help."""
    for path, parser in commands(cli._parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions if choice.help}
                assert helped == set(action.choices), path


def test_request_id_is_documented_as_the_idempotency_key():
    """`--request-id` says what it does: a repeat with the same id is deduplicated."""
    (enqueue,) = [p for path, p in commands(cli._parser()) if path == ("enqueue",)]
    (option,) = [a for a in enqueue._actions if "--request-id" in a.option_strings]
    assert "idempotency key" in option.help
    assert "deduplicated" in option.help


def test_every_status_has_an_exit_code_and_codes_are_distinct():
    """0 stopped, 3 pending, 4 dead, 5 cancelled (6 unknown); 1 and 2 stay failure and bad input."""
    assert set(exitcodes.STATUS) == set(State)
    assert {state for state, code in exitcodes.STATUS.items() if code == exitcodes.OK} == {
        State.STOPPED,
        State.ALREADY_STOPPED,
    }
    assert {state for state, code in exitcodes.STATUS.items() if code == exitcodes.PENDING} == {
        state for state in State if state.pending
    }
    assert sorted(exitcodes.MEANINGS) == list(range(7))
    assert (exitcodes.FAILURE, exitcodes.USAGE) == (1, 2)


def test_docs_list_every_command_and_the_exit_code_table():
    """docs/cli.md has a synopsis per (sub)command and one table row per exit code."""
    text = CLI_DOC.read_text(encoding="utf-8")
    for path, _ in commands(cli._parser()):
        if path:
            assert f"recstop {' '.join(path)}" in text, path
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", text, flags=re.MULTILINE))
    assert {int(code) for code in rows} == set(exitcodes.MEANINGS)
    for code, meaning in exitcodes.MEANINGS.items():
        assert rows[str(code)] == meaning


@pytest.mark.parametrize(
    ("argv", "action", "port"),
    [
        (["sandbox"], None, 8765),
        (["sandbox", "--port", "9001", "--auto-calls"], None, 9001),
        (["sandbox", "serve", "--port", "9002"], "serve", 9002),
        (["sandbox", "--port", "9003", "serve"], "serve", 9003),
    ],
)
def test_sandbox_without_an_action_still_serves(argv, action, port):
    """`recstop sandbox [options]` serves as before; `serve` is the same, options before or after it."""
    args = cli._parser().parse_args(argv)
    assert (args.sandbox_command, args.port, args.host) == (action, port, "127.0.0.1")
    assert args.nothing_to_stop == "404"


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({}, "http://127.0.0.1:8765"),
        ({"VOBIZ_API_BASE": "https://api.vobiz.ai/api/v1"}, "http://127.0.0.1:8765"),
        ({"VOBIZ_API_BASE": "http://127.0.0.1:4242/api/v1/"}, "http://127.0.0.1:4242"),
    ],
)
def test_sandbox_commands_find_the_sandbox_the_worker_calls(env, base):
    """Without --base, `sandbox call`/`show` ask the sandbox of VOBIZ_API_BASE, never the real API."""
    assert sandboxcmd.sandbox_base(env) == base
