"""The live page (``GET /`` of ``moa serve``) in a real browser: Debian's Chromium, headless.

Playwright drives ``/usr/bin/chromium`` (``make browser`` installs it; Playwright's
own browser download is never used). The app runs in uvicorn in a thread of
the test process, as in ``test_serve.py``: the embedded model's stack (three
proposers) with two proposer layers, so that the page shows a column each, on
the session's llama.cpp server with short generations; and a stack of the
fault server, whose ``http-500`` proposer fails on purpose. Screenshots go to
``MOA_TEST_ARTIFACTS`` (by default ``test-artifacts/`` at the repository
root), kept for a reader of the run.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect, sync_playwright

from benchmarks.fault_server import FaultServer
from langchain_moa import ChatMoA
from langchain_moa.bench.serving import BackgroundServer
from langchain_moa.serve.app import create_app
from tests.integration_tests.embedded import embedded_stack, free_port

pytestmark = pytest.mark.timeout(300)

CHROMIUM = Path(os.environ.get("MOA_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("MOA_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
MOA = str(Path(sys.executable).with_name("moa"))
# The flags Chromium needs in a container with no network (see the env notes):
# without them it keeps trying Google's hosts in the background.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "page-test-token-0123456789"
ANSWER_S = 120_000
"""Milliseconds a turn may take on the embedded model (seconds in practice)."""

# Times (performance.now()) at which each card was filled and the answer's first
# token was shown, seen by the browser itself as the page changed.
WATCH_PAGE = """
window.seen = {cards: {}, firstToken: null};
new MutationObserver((changes) => {
  const now = performance.now();
  for (const change of changes) {
    const target = change.target.nodeType === 1 ? change.target : change.target.parentElement;
    const card = target && target.closest('.card');
    if (card && card.dataset.state !== 'running' && !(card.dataset.node in window.seen.cards)) {
      window.seen.cards[card.dataset.node] = now;
    }
    const answer = target && target.closest('.answer-text');
    if (answer && answer.textContent && window.seen.firstToken === null) {
      window.seen.firstToken = now;
    }
  }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.add_init_script(WATCH_PAGE)
    yield opened
    context.close()


def _serve(stacks, **settings):
    background = BackgroundServer(create_app(stacks, **settings), name="moa-serve-page")
    background.start()
    return background, background.base_url.removesuffix("/v1")


@pytest.fixture(scope="module")
def embedded(server):
    background, url = _serve(
        {"local": embedded_stack(server, proposers=3, max_tokens=24, layers=3)}
    )
    yield url
    background.stop()


@pytest.fixture(scope="module")
def fault_stack():
    with FaultServer() as faults:

        def entry(name):
            return {"model": f"openai:{name}", "base_url": faults.base_url}

        yield ChatMoA(
            proposers=[entry("ok.p1"), entry("http-500"), entry("ok.p2")],
            aggregator=entry("ok"),
            layers=2,
            max_retries=0,
        )


@pytest.fixture(scope="module")
def faulty(fault_stack):
    background, url = _serve({"faulty": fault_stack})
    yield url
    background.stop()


@pytest.fixture(scope="module")
def keyed(fault_stack):
    background, url = _serve({"faulty": fault_stack}, api_key=KEY)
    yield url
    background.stop()


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"page-{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def _ask(page: Page, question: str) -> None:
    # By keyboard, as a user would: the prompt has the focus, Enter sends.
    expect(page.locator("#prompt")).to_be_focused()
    page.keyboard.type(question)
    page.keyboard.press("Enter")


def _turn(page: Page, number: int):
    return page.locator("article.turn").nth(number - 1)


def _finish(page: Page, number: int) -> None:
    expect(_turn(page, number).locator(".answer")).to_have_attribute(
        "data-state", "done", timeout=ANSWER_S
    )


def test_proposer_cards_fill_in_before_the_answer_streams_then_a_second_turn(page, embedded):
    page.goto(embedded)
    expect(page.locator("#stack option")).to_have_text(["local"])
    _ask(page, "Name a fruit.")
    turn = _turn(page, 1)
    cards = turn.locator(".card")
    # Mid-run: layer 1 has answered, layer 2 is answering, no final answer yet.
    expect(turn.locator('.layer[data-layer="2"] .card').first).to_be_visible(timeout=ANSWER_S)
    _screenshot(page, "mid-run")
    _finish(page, 1)
    _screenshot(page, "end")

    expect(cards).to_have_count(6)
    expect(turn.locator(".layer h3")).to_have_text(["Layer 1", "Layer 2"])
    for card in cards.all():
        expect(card).to_have_attribute("data-state", "done")
        expect(card.locator(".card-text")).not_to_be_empty()
        expect(card.locator(".card-meta")).to_contain_text(" out · ")
    seen = page.evaluate("window.seen")
    assert len(seen["cards"]) == 6
    assert seen["firstToken"] is not None
    assert max(seen["cards"].values()) < seen["firstToken"], seen
    answer = turn.locator(".answer-text").inner_text()
    assert answer.strip()
    summary = turn.locator(".summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("7 (0 failed)")
    expect(summary).to_contain_text("Critical path")
    expect(summary).to_contain_text("End to end")

    # A second turn: the page sends the whole conversation, the first answer in it.
    with page.expect_request("**/live") as asked:
        _ask(page, "And another one?")
    sent = asked.value.post_data_json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == answer
    _finish(page, 2)
    expect(_turn(page, 2).locator('.card[data-state="done"]')).to_have_count(6)
    expect(_turn(page, 1).locator(".answer-text")).to_have_text(answer)
    expect(page.locator("#prompt")).to_be_focused()

    violations = Axe().run(page).response["violations"]
    assert violations == [], [(v["id"], v["help"]) for v in violations]


def test_a_failing_proposer_shows_its_failure_on_its_card(page, faulty):
    page.goto(faulty)
    expect(page.locator("#stack option")).to_have_text(["faulty"])
    _ask(page, "Why is the sky blue?")
    _finish(page, 1)
    _screenshot(page, "failed-proposer")
    failed = page.locator('.card[data-state="failed"]')
    expect(failed).to_have_count(1)
    expect(failed.locator(".card-model")).to_have_text("http-500")
    expect(failed.locator(".card-meta")).to_contain_text("failed (server error)")
    expect(failed.locator(".card-text")).to_contain_text("500")
    expect(page.locator('.card[data-state="done"]')).to_have_count(2)
    expect(page.locator(".answer-text")).to_contain_text("An answer from")
    expect(page.locator(".summary")).to_contain_text("4 (1 failed)")
    expect(page.locator(".degradations li")).not_to_have_count(0)


def test_a_server_with_a_key_asks_for_it_and_a_new_conversation_starts_over(page, keyed):
    page.goto(keyed)
    key = page.locator("#key")
    expect(page.locator("#key-field")).to_be_visible()
    expect(key).to_be_focused()
    page.keyboard.type("a-wrong-token-0123456789")
    page.keyboard.press("Tab")
    expect(page.locator("#status")).to_contain_text("Incorrect API key")
    expect(key).to_be_focused()
    key.fill(KEY)
    page.keyboard.press("Tab")
    expect(page.locator("#stack option")).to_have_text(["faulty"])
    expect(page.locator("#prompt")).to_be_focused()
    _ask(page, "Why is the sky blue?")
    _finish(page, 1)

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("article.turn")).to_have_count(0)
    with page.expect_request("**/live") as asked:
        _ask(page, "And the sea?")
    assert asked.value.headers["authorization"] == f"Bearer {KEY}"
    assert [m["content"] for m in asked.value.post_data_json["messages"]] == ["And the sea?"]
    _finish(page, 1)
    expect(page.locator(".answer-text")).to_contain_text("An answer from ok to: And the sea?")
    assert KEY not in page.content()


def test_the_page_fits_a_narrow_screen(browser, faulty):
    context = browser.new_context(viewport={"width": 360, "height": 780})
    page = context.new_page()
    try:
        page.goto(faulty)
        expect(page.locator("#stack option")).to_have_text(["faulty"])
        _ask(page, "Why is the sky blue?")
        _finish(page, 1)
        _screenshot(page, "narrow")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        # The columns stack: every card is as wide as the screen allows.
        boxes = [card.bounding_box() for card in page.locator(".card").all()]
        assert all(box is not None and box["x"] + box["width"] <= 360 for box in boxes)
        violations = Axe().run(page).response["violations"]
        assert violations == [], [(v["id"], v["help"]) for v in violations]
    finally:
        context.close()


def test_moa_ui_opens_the_page_of_the_embedded_default_with_no_configuration(tmp_path, page):
    # webbrowser runs $BROWSER with the address: a script that writes it down.
    opened = tmp_path / "opened"
    browser_script = tmp_path / "browser.sh"
    browser_script.write_text(f'#!/bin/sh\necho "$1" > {opened}\n', encoding="utf-8")
    browser_script.chmod(0o755)
    port = free_port()
    env = {**os.environ, "BROWSER": str(browser_script)}
    env.pop("MOA_SERVE_API_KEY", None)
    process = subprocess.Popen(
        [MOA, "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (opened.exists() and opened.read_text(encoding="utf-8").strip()):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "moa ui opened no browser"
            time.sleep(0.2)
        url = opened.read_text(encoding="utf-8").strip()
        assert url == f"http://127.0.0.1:{port}/"
        assert httpx.get(url, timeout=10).status_code == 200
        page.goto(url)
        # Every stack the server serves, the embedded one first and chosen.
        expect(page.locator("#stack")).to_have_value("local")
        expect(page.locator("#stack option").first).to_have_text("local")
        expect(page.locator("#key-field")).to_be_hidden()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
