"""The HTML toolkit: outside text is escaped everywhere and pages cannot run script or load anything."""

from autonomy_controller.controller.render.html import CSP, Html, bars, esc, page, stacked_bars, table

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_outside_text_is_escaped_in_every_builder() -> None:
    document = page(
        HOSTILE,
        table(["a", HOSTILE], [[HOSTILE, 1]]),
        stacked_bars([(HOSTILE, {"execute": 1.0})], {"execute": "#000"}, title=HOSTILE),
        bars([(HOSTILE, 2.0)], title=HOSTILE, unit=HOSTILE),
        subtitle=HOSTILE,
    )
    assert "<script>" not in document
    assert "<img" not in document
    assert document.count("&lt;script&gt;") >= 6


def test_page_forbids_script_and_remote_loads() -> None:
    document = page("t")
    assert f'content="{CSP}"' in document
    assert "default-src 'none'" in CSP and "script-src" not in CSP


def test_html_fragments_are_not_escaped_twice() -> None:
    assert esc(Html("<b>x</b>")) == "<b>x</b>"
    assert esc("<b>") == "&lt;b&gt;"


def test_stacked_bars_show_shares_and_survive_an_empty_row() -> None:
    svg = stacked_bars(
        [("L3", {"execute": 3.0, "deny": 1.0}), ("L1", {})],
        {"execute": "#0f0", "deny": "#f00"},
        title="verdicts",
    )
    assert "L3 execute: 75.0%" in svg and "L3 deny: 25.0%" in svg
    assert ">none<" in svg
