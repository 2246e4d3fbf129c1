"""Text from workers cannot reach the operator's terminal as anything but plain text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wire.text import clean_line, clean_text


def test_escape_sequences_are_removed():
    hostile = (b"\x1b[31mred\x1b[0m \x1b]0;pwned title\x07 \x1b]8;;http://evil\x1b\\link"
               b"\x1b]8;;\x1b\\ \x1bP+q\x1b\\ " + "\u009b2J done".encode())
    assert clean_text(hostile) == "red  link   done"
    # A lone C1 byte is not UTF-8: it is replaced, and cannot act as an escape either.
    assert clean_text(b"\x9b2J") == "\ufffd2J"


def test_control_characters_and_bidi_overrides_are_removed():
    assert clean_text("a\x00b\x07c\x08d\x7fe\u202ef") == "abcdef"
    assert clean_text("tab\there") == "tab    here"


def test_carriage_return_keeps_what_a_terminal_would_show():
    assert clean_text("progress 10%\rprogress 100%\nnext") == "progress 100%\nnext"
    assert clean_text("windows line\r\n") == "windows line\n"
    # A line split from its \n already (the log splits on \n first) keeps its text.
    assert clean_line(b"windows line\r") == "windows line"
    assert clean_line(b"50%\r100%\r") == "100%"


def test_invalid_utf8_becomes_replacement_characters():
    assert clean_text(b"ok \xff\xfe bytes") == "ok \ufffd\ufffd bytes"


def test_markup_like_text_stays_literal():
    assert clean_line("[bold red]not markup[/] [link=x]") == "[bold red]not markup[/] [link=x]"


def test_long_lines_are_cut_with_a_marker():
    line = clean_line("x" * 2_000_000, limit=100)
    assert line.startswith("x" * 100) and line.endswith("[... 1999900 more characters cut]")


def test_newlines_become_spaces_in_a_line():
    assert clean_line("one\ntwo") == "one two"


@given(st.text(alphabet=st.characters(codec="utf-8")) | st.text())
def test_text_with_nothing_to_clean_is_returned_as_it_is(text):
    # clean_text skips the regexes for printable text: the same answer either way.
    from wire.text import _cleaned

    assert clean_text(text) == _cleaned(text)
