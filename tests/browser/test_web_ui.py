"""The web chat UI in headless Chromium against a real ``haven serve``: first run, login, streaming chat with
the Thinking panel, stop, regenerate, edit-and-resend with branches, rename and delete, Arabic RTL, an API
key made in the UI and used by the ``openai`` client, a 360 px phone, XSS in user text and model output,
an expired session, a failed stream, and axe-core on every main screen. Each page also fails its test on a
request to another host, a CSP violation or a script error (see conftest.Watched).

Tests run in file order against one server: the first creates the admin account through the UI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.browser.conftest import ADMIN, PASSWORD, Watched, assert_accessible, ensure_admin, login

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

XSS_PAYLOADS = [
    "<img src=x onerror=\"window.__xss='img'\">",
    "[click me](javascript:window.__xss='link')",
    "<svg onload=\"window.__xss='svg'\"></svg>",
    "<a href=\"javascript:window.__xss='a'\">raw link</a>",
    "![pic](http://203.0.113.9/tracker.png)",
    "<script>window.__xss='script'</script>",
]


@contextmanager
def api_session(origin: str) -> Iterator[httpx.Client]:
    """An httpx client signed in as the admin (cookie + CSRF header), for storing messages directly."""
    with httpx.Client(base_url=origin, timeout=30) as client:
        r = client.post("/api/v1/auth/login", json={"name": ADMIN, "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        yield client


def use_model(page: Any, model: str) -> None:
    picker = page.locator(".model-picker")
    picker.locator(f"option[value='{model}']").wait_for(state="attached")
    picker.select_option(model)


def long_answers(page: Any, max_tokens: int = 1500, seed: int = 1) -> None:
    """Makes the next answers long (ignore_eos) and reproducible: a stop must land mid-answer, and with
    seed 1 the random-weight R1 model reasons first, then answers."""

    def extend(route: Any) -> None:
        body = json.loads(route.request.post_data)
        body.update(ignore_eos=True, max_tokens=max_tokens, seed=seed)
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/chat/completions", extend)


def send(page: Any, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def wait_idle(page: Any) -> None:
    page.get_by_role("button", name="Send").wait_for(state="visible")
    page.wait_for_function("() => !document.querySelector('.msg.streaming')")
    # The answer is re-read from the server and redrawn after the stream ends; the thread is busy until then.
    page.wait_for_function("() => document.querySelector('.messages')?.getAttribute('aria-busy') !== 'true'")


def answers(page: Any) -> Any:
    return page.locator(".messages .msg.assistant:not(.failed)")


def show_stored_answer(w: Watched, title: str, question: str, answer: str) -> Any:
    """A conversation stored through the API (as a model's answer would be), opened; the answer's body."""
    with api_session(w.origin) as api:
        conv = api.post("/api/v1/conversations", json={"title": title}).json()
        api.post(f"/api/v1/conversations/{conv['id']}/messages", json={"role": "user", "content": question})
        api.post(f"/api/v1/conversations/{conv['id']}/messages", json={"role": "assistant", "content": answer})
    w.page.goto(f"{w.origin}/#/c/{conv['id']}")
    return answers(w.page).last.locator(".msg-body")


def test_first_run_offers_admin_creation_and_shows_the_recovery_code_once(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    page.goto(w.origin + "/")
    page.get_by_role("heading", name="Welcome to Haven").wait_for()
    assert page.get_by_role("button", name="Continue without an account").is_visible()  # local mode offered
    assert_accessible(page, "first run")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD + "x")
    page.get_by_role("button", name="Create administrator").click()
    assert page.get_by_role("alert").inner_text() == "The two passwords are not the same."
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    code = page.get_by_test_id("recovery-code").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){7}", code.strip()), code
    assert_accessible(page, "recovery code")
    go = page.get_by_role("button", name="Continue to Haven")
    assert go.is_disabled()
    page.get_by_label("I have written the recovery code down").check()
    go.click()
    page.get_by_role("textbox", name="Message").wait_for()
    # Shown once: a new visit is a login page, never the code again.
    page.reload()
    page.get_by_role("textbox", name="Message").wait_for()
    assert page.get_by_test_id("recovery-code").count() == 0


def test_login_wrong_password_shows_one_plain_message(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    page.goto(w.origin + "/")
    page.get_by_role("heading", name="Sign in to Haven").wait_for()
    assert_accessible(page, "login")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    login(w)
    assert page.locator(".user-name").inner_text() == ADMIN


def test_chat_streams_thinks_stops_regenerates_and_branches(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    use_model(page, "r1:latest")
    long_answers(page, max_tokens=600)
    send(page, "Why is the sky blue?")
    # Streaming: the answer grows while the Stop button shows.
    live = page.locator(".msg.streaming")
    live.wait_for()
    page.get_by_role("button", name="Stop").wait_for()
    first = len(live.inner_text())
    page.wait_for_function(f"() => (document.querySelector('.msg.streaming')?.innerText.length ?? 1e9) > {first + 20}")
    wait_idle(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Why is the sky blue?"
    # The R1 template opens a <think> block: the reasoning streams into the Thinking panel.
    panel = answers(page).last.locator("details.thinking")
    summary = panel.locator("summary")
    assert re.match(r"Thinking|Thought for [\d.]+ s", summary.inner_text())
    was_open = panel.evaluate("d => d.open")
    summary.click()
    assert panel.evaluate("d => d.open") is not was_open
    summary.press("Enter")
    assert panel.evaluate("d => d.open") is was_open
    meta = answers(page).last.locator(".msg-meta").inner_text()
    assert re.search(r"\d+ tokens · [\d,.]+ tokens/s", meta), meta
    assert_accessible(page, "chat")

    # Stop mid-answer: the partial answer is stored and marked.
    page.unroute("**/v1/chat/completions")
    use_model(page, "tiny:latest")
    long_answers(page, max_tokens=1900)
    send(page, "Tell me a long story")
    page.locator(".msg.streaming .msg-body").filter(has_text=re.compile(r"\S{3}")).wait_for()
    page.get_by_role("button", name="Stop").click()
    wait_idle(page)
    page.wait_for_function("() => document.querySelectorAll('.messages .msg.assistant').length === 2")
    assert "Stopped" in answers(page).last.locator(".msg-meta").inner_text()

    # Regenerate: a second answer to the same question, with a switcher between the two.
    page.unroute("**/v1/chat/completions")
    answers(page).last.get_by_role("button", name="Regenerate").click()
    wait_idle(page)
    switcher = answers(page).last.locator(".branches")
    assert switcher.locator(".branch-count").inner_text() == "2 / 2"
    switcher.get_by_role("button", name="Previous version").click()
    answers(page).last.locator(".branch-count", has_text="1 / 2").wait_for()
    assert "Stopped" in answers(page).last.locator(".msg-meta").inner_text()

    # Edit and resend the first question: a new branch of the user message.
    users = page.locator(".messages .msg.user")
    users.first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    editor.fill("Why is the sea blue?")
    page.get_by_role("button", name="Save and send").click()
    page.locator(".messages .msg.assistant .msg-meta").first.wait_for()
    wait_idle(page)
    assert users.count() == 1 and "Why is the sea blue?" in users.first.inner_text()
    users.first.locator(".branch-count", has_text="2 / 2").wait_for()
    users.first.get_by_role("button", name="Previous version").click()
    page.locator(".messages .msg.user").first.filter(has_text="Why is the sky blue?").wait_for()
    assert page.locator(".messages .msg.user").count() == 2  # the old branch, whole again
    # The branch choice is stored: a reload shows the same thread.
    page.reload()
    page.locator(".messages .msg.user").nth(1).wait_for()
    assert "Why is the sky blue?" in page.locator(".messages .msg.user").first.inner_text()


def test_rename_search_and_delete_a_conversation(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    send(page, "Plan a trip to Mombasa")
    wait_idle(page)
    page.get_by_role("button", name="Rename").click()
    page.get_by_role("dialog").get_by_label("Title").fill("Mombasa trip")
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    page.locator(".conversation", has_text="Mombasa trip").wait_for()
    assert page.get_by_role("heading", level=1).inner_text() == "Mombasa trip"
    page.get_by_role("searchbox", name="Search conversations").fill("mombasa")
    page.wait_for_function("() => document.querySelectorAll('.conversation').length === 1")
    assert page.locator(".conversation-list h2.group").first.text_content() == "Today"
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.wait_for_function("() => !location.hash.startsWith('#/c/')")
    page.get_by_role("searchbox", name="Search conversations").fill("mombasa")
    page.get_by_text("No conversation matches.").wait_for()


def test_switching_to_arabic_lays_the_page_out_right_to_left(open_page: Any) -> None:
    w: Watched = open_page(locale="fr-FR")
    page = w.page
    ensure_admin(w.origin)
    page.goto(w.origin + "/")
    page.get_by_role("heading", name="Se connecter à Haven").wait_for()  # chosen from the browser's languages
    assert page.evaluate("document.documentElement.lang") == "fr"
    page.get_by_label("Langue").select_option("ar")
    page.get_by_role("heading", name="تسجيل الدخول إلى Haven").wait_for()
    assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
    page.reload()  # the choice is kept
    page.get_by_role("heading", name="تسجيل الدخول إلى Haven").wait_for()
    assert page.evaluate("document.documentElement.dir") == "rtl"
    assert_accessible(page, "login in Arabic")


def test_an_api_key_created_in_the_ui_works_with_the_openai_client(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("heading", name="API keys").wait_for()
    assert_accessible(page, "settings")
    page.get_by_label("Name", exact=True).fill("notebook")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-key").inner_text().strip()
    assert secret.startswith("hvn_")
    page.get_by_role("dialog").get_by_role("button", name="Done").click()
    page.get_by_role("dialog").wait_for(state="detached")  # closing is animated: wait until it is gone
    row = page.locator("table.data tr", has_text="notebook")
    row.wait_for()
    assert secret not in page.content()  # shown once, never again

    client = openai.OpenAI(base_url=w.origin + "/v1", api_key=secret, max_retries=0)
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=5
    )
    assert reply.choices[0].message.content is not None
    row.get_by_role("button", name="Revoke key notebook").click()
    page.get_by_text("No API keys yet.").wait_for()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)


def test_admin_pages_are_accessible_and_list_users_models_and_the_security_log(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    page.get_by_role("link", name="Administration").click()
    page.locator("table.data td", has_text=ADMIN).first.wait_for()
    assert_accessible(page, "admin users")
    page.get_by_role("link", name="Models").click()
    page.locator("table.data code", has_text="tiny:latest").wait_for()
    page.get_by_role("button", name="Details: tiny:latest").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name="Chat template").wait_for()
    assert "im_start" in dialog.locator("pre.template").inner_text()
    assert_accessible(page, "model details")
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("link", name="Security log").click()
    page.locator("table.data code", has_text="login").first.wait_for()
    assert_accessible(page, "security log")
    page.get_by_role("button", name="Verify the log's integrity").click()
    page.get_by_text(re.compile(r"The log is intact")).wait_for()


def test_phone_width_has_no_horizontal_scroll(open_page: Any) -> None:
    w: Watched = open_page(width=360, height=740)
    page = w.page
    login(w)
    send(page, "Hello from a phone")
    wait_idle(page)
    for screen in ("#/", "#/settings", "#/admin/users", "#/admin/models", "#/admin/security"):
        page.goto(w.origin + "/" + screen)
        page.locator("main h1").wait_for()
        page.wait_for_timeout(300)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{screen} is {width} px wide"
    page.goto(w.origin + "/#/")
    toggle = page.get_by_role("button", name="Show or hide conversations")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Escape")
    assert toggle.get_attribute("aria-expanded") == "false"


def test_xss_in_user_text_and_model_output_never_executes(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    payload = "\n\n".join(XSS_PAYLOADS)
    # Model output: assistant messages stored through the API, as a model's answer would be.
    with api_session(w.origin) as api:
        conv = api.post("/api/v1/conversations", json={"title": "xss"}).json()
        api.post(f"/api/v1/conversations/{conv['id']}/messages", json={"role": "user", "content": "show me"})
        r = api.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"role": "assistant", "content": payload + "\n\n[a site](https://example.org/x)",
                  "reasoning": payload},
        )
        assert r.status_code == 201, r.text
    page.goto(f"{w.origin}/#/c/{conv['id']}")
    answers(page).last.wait_for()
    # And user text, through the composer (answered by the model).
    send(page, payload)
    wait_idle(page)
    page.locator("details.thinking summary").first.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    rendered = page.locator(".messages")
    assert rendered.locator("img, svg:not(.katex svg), script, iframe").count() == 0
    hrefs = rendered.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:"))], hrefs
    # A link to another host opens only on click, in a new tab, without a referrer; the image is a link.
    external = rendered.locator("a.external", has_text="a site")
    assert external.get_attribute("target") == "_blank"
    assert "noreferrer" in external.get_attribute("rel")
    # Answer, its reasoning and the user message each show the image as a link.
    assert rendered.locator("a.image-link", has_text="pic").count() == 3
    assert "<img src=x" in rendered.inner_text()  # shown as text, not swallowed
    assert not [u for u in w.requests if "203.0.113.9" in u or "example.org" in u]


def test_markdown_code_and_latex_render(open_page: Any) -> None:
    w: Watched = open_page()
    login(w)
    text = "# Title\n\n**bold** and $e^{i\\pi}+1=0$\n\n$$\\int_0^1 x\\,dx$$\n\n```python\ndef f():\n    return 1\n```"
    body = show_stored_answer(w, "markdown", "md", text)
    body.locator("h1", has_text="Title").wait_for()
    assert body.locator("strong", has_text="bold").count() == 1
    assert body.locator(".katex").count() == 2 and body.locator(".katex-display").count() == 1
    assert body.locator("code .hljs-keyword", has_text="def").count() == 1
    assert body.locator("button.copy-code").count() == 1


def test_broken_and_coloured_latex_keep_their_styles_without_csp_violations(open_page: Any) -> None:
    # A random-weights model wrote a malformed formula in CI: KaTeX's red error text set a style attribute,
    # which the page's CSP blocked and reported. \fcolorbox's border and \pmb's shadow did the same in their
    # MathML. The open_page fixture fails on any CSP report at teardown; this test looks first.
    w: Watched = open_page()
    login(w)
    text = "broken $\\frac{1}{$ then $\\boxed{42}$ and $\\pmb{x}$ and $$\\fcolorbox{red}{white}{y}$$"
    body = show_stored_answer(w, "latex", "tex", text)
    error = body.locator(".katex-error")
    error.wait_for()
    assert "\\frac{1}{" in error.inner_text()
    assert error.evaluate("e => getComputedStyle(e).color") == "rgb(204, 0, 0)"
    assert body.locator(".katex").count() == 3 and body.locator(".katex-display").count() == 1
    # The MathML a screen reader reads keeps \fcolorbox's border and \pmb's shadow, written through CSSOM.
    borders = body.locator("mpadded").evaluate_all("els => els.map(e => e.style.border)")
    assert [b for b in borders if "solid" in b] == ["0.04em solid red"], borders
    shadows = body.locator("mstyle").evaluate_all("els => els.map(e => e.style.textShadow)")
    assert [s for s in shadows if s], shadows
    w.page.wait_for_timeout(200)
    assert [m for m in w.console if "Content Security Policy" in m] == []


def test_expired_session_returns_to_login_keeping_the_typed_message(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    page.get_by_role("textbox", name="Message").fill("a message typed before the session ended")
    page.context.clear_cookies()
    page.get_by_role("button", name="Send").click()
    page.get_by_role("heading", name="Sign in to Haven").wait_for()
    assert "session has ended" in page.get_by_role("status").first.inner_text()
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    box = page.get_by_role("textbox", name="Message")
    box.wait_for()
    assert box.input_value() == "a message typed before the session ended"


def test_failed_stream_shows_the_error_in_place_and_the_conversation_stays_consistent(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    send(page, "First question")
    wait_idle(page)
    conversation_hash = page.evaluate("location.hash")

    # The server is busy: a 429 with Retry-After is explained, the text is kept for a retry.
    def busy(route: Any) -> None:
        error = {"error": {"message": "queue full", "type": "server_error", "code": "queue_full"}}
        headers = {"Retry-After": "7", "Content-Type": "application/json"}
        route.fulfill(status=429, headers=headers, body=json.dumps(error))

    page.route("**/v1/chat/completions", busy)
    send(page, "Second question")
    alert = page.locator(".msg.failed")
    alert.wait_for()
    assert "busy" in alert.inner_text() and "7 seconds" in alert.inner_text()
    assert page.get_by_role("textbox", name="Message").input_value() == "Second question"
    page.unroute("**/v1/chat/completions")

    # A model that cannot answer (unknown here): the error shows where the answer would be.
    def missing_model(route: Any) -> None:
        body = json.loads(route.request.post_data)
        body["model"] = "no-such-model"
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/chat/completions", missing_model)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.msg.failed').length === 1 && !document.querySelector('.msg.streaming')"
    )
    assert "no-such-model" in page.locator(".msg.failed").inner_text()
    page.unroute("**/v1/chat/completions")
    shown = page.locator(".messages .msg:not(.failed)").count()
    # What is on screen (minus the error) is what the server stored.
    page.goto(w.origin + "/" + conversation_hash)
    page.reload()
    answers(page).first.wait_for()
    assert page.locator(".messages .msg").count() == shown
    # The conversation still works: retry answers.
    send(page, "Third question")
    wait_idle(page)
    assert page.locator(".msg.failed").count() == 0


def test_keyboard_alone_signs_in_and_chats(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    ensure_admin(w.origin)
    page.goto(w.origin + "/#/login")
    page.get_by_role("heading", name="Sign in to Haven").wait_for()
    # Focus starts on the screen's heading; the form follows in reading order.
    assert page.evaluate("document.activeElement.tagName") == "H1"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.autocomplete") == "username"
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Message")
    box.wait_for()
    page.wait_for_function("() => document.activeElement?.classList.contains('composer-input')")
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    wait_idle(page)
    assert "Typed without a mouse" in page.locator(".messages .msg.user").last.inner_text()
    # Dialogs trap focus and give it back: Parameters opens, Escape closes, focus returns to its button.
    params = page.get_by_role("button", name="Parameters")
    params.focus()
    page.keyboard.press("Enter")
    page.get_by_role("dialog").get_by_label("System prompt").wait_for()
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('dialog')")
    assert page.evaluate("document.activeElement.textContent") == "Parameters"


def test_focus_moved_while_the_answer_is_re_read_stays_where_the_user_put_it(open_page: Any) -> None:
    """After a stream the UI re-reads the stored conversation (a round trip, retried while the reply is
    being stored) and then offers the composer. A user who has tabbed elsewhere in that window keeps focus."""
    w: Watched = open_page()
    page = w.page
    login(w)
    held: list[Any] = []
    released = False
    one_conversation = re.compile(r".*/api/v1/conversations/[^/?]+$")

    def hold_reads(route: Any) -> None:
        if route.request.method == "GET" and not released:
            held.append(route)
        else:
            route.continue_()

    page.route(one_conversation, hold_reads)
    send(page, "Hold the re-read")
    # The stream is over once the UI re-reads what the server stored (the route holds that read); bounded
    # so that a read that never comes fails here rather than at the test's timeout.
    for _ in range(750):
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the UI never re-read the conversation after the stream"
    assert page.locator(".messages").get_attribute("aria-busy") == "true"
    page.get_by_role("button", name="Parameters").focus()
    released = True
    for route in held:
        route.continue_()
    wait_idle(page)
    assert "Hold the re-read" in page.locator(".messages .msg.user").last.inner_text()
    assert page.evaluate("document.activeElement.textContent") == "Parameters"
    # With focus left to the page (nothing chosen meanwhile), the composer gets it back as before.
    page.evaluate("document.activeElement.blur()")
    send(page, "And another")
    wait_idle(page)
    page.wait_for_function("() => document.activeElement?.classList.contains('composer-input')")


def test_escape_in_a_dialog_closes_the_dialog_and_leaves_the_answer_streaming(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    long_answers(page)
    send(page, "Keep answering while I look at the parameters")
    page.get_by_role("button", name="Stop").wait_for()
    page.get_by_role("button", name="Parameters").click()
    page.get_by_role("dialog").get_by_label("System prompt").wait_for()
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('dialog')")
    assert page.get_by_role("button", name="Stop").is_visible()  # still streaming
    wait_idle(page)
    meta = answers(page).last.locator(".msg-meta").inner_text()
    assert "Stopped" not in meta, meta
    # Escape with no dialog open still stops an answer.
    send(page, "Now stop this one")
    page.get_by_role("button", name="Stop").wait_for()
    page.keyboard.press("Escape")
    wait_idle(page)
    assert "Stopped" in answers(page).last.locator(".msg-meta").inner_text()


# --- settings: delete my account; admin: audit runs, model import (issue 15 item 3) ----------------

CAROL = ("carol", "tidy harbour 93 violet")


def test_deleting_my_account_needs_my_password_and_returns_to_login(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    ensure_admin(w.origin)
    with api_session(w.origin) as admin:
        r = admin.post("/api/v1/admin/users", json={"name": CAROL[0], "password": CAROL[1]})
        assert r.status_code == 201, r.text
    login(w, *CAROL)
    page.get_by_role("link", name="Settings").click()
    section = page.get_by_role("region", name="Delete my account")
    password = section.get_by_label("Your password, to confirm")
    password.fill("not carol's password at all")
    section.get_by_role("button", name="Delete my account for good").click()
    section.get_by_role("alert").filter(has_text="That password is wrong; nothing was deleted.").wait_for()
    assert page.url.endswith("#/settings")  # a wrong re-typed password is no expired session
    assert page.evaluate("document.activeElement.type") == "password"
    assert_accessible(page, "settings with the delete-account error")

    password.fill(CAROL[1])
    password.press("Enter")  # the keyboard alone submits it
    page.get_by_text("Your account was deleted, with its conversations, keys and sessions.").wait_for()
    page.get_by_role("button", name="Sign in").wait_for()
    assert "#/login" in page.url
    with api_session(w.origin) as admin:
        names = [u["name"] for u in admin.get("/api/v1/admin/users").json()["data"]]
        assert CAROL[0] not in names
        log = admin.get("/api/v1/admin/security-log", params={"event": "user_deleted"}).json()["data"]
        assert log[0]["user"] == CAROL[0] and log[0]["details"]["by"] == "self"
    r = httpx.post(w.origin + "/api/v1/auth/login", json={"name": CAROL[0], "password": CAROL[1]}, timeout=30)
    assert r.status_code == 401


def test_the_last_admin_is_told_why_their_account_stays(open_page: Any) -> None:
    w: Watched = open_page()
    page = w.page
    login(w)
    with api_session(w.origin) as admin:
        admins = [u for u in admin.get("/api/v1/admin/users").json()["data"] if u["role"] == "admin"]
        assert [u["name"] for u in admins] == [ADMIN]  # else the click below would really delete the admin
    page.get_by_role("link", name="Settings").click()
    section = page.get_by_role("region", name="Delete my account")
    section.get_by_label("Your password, to confirm").fill(PASSWORD)
    section.get_by_role("button", name="Delete my account for good").click()
    section.get_by_role("alert").filter(has_text="You are the last administrator").wait_for()
    r = httpx.post(w.origin + "/api/v1/auth/login", json={"name": ADMIN, "password": PASSWORD}, timeout=30)
    assert r.status_code == 200  # nothing was deleted


def test_admin_audit_runs_open_a_sandboxed_report_and_compare_two(open_page: Any, web_server: Any) -> None:
    from haven.storage.db import open_database
    from tests.support.audit_demo import store_demo_runs

    db = open_database(f"sqlite:///{web_server.home / 'haven.db'}")
    try:
        first, second = store_demo_runs(db)
    finally:
        db.close()
    w: Watched = open_page()
    page = w.page
    login(w)
    page.goto(w.origin + "/#/admin/audit")
    page.get_by_role("button", name=f"Open report: #{first}").click()
    dialog = page.get_by_role("dialog")
    report = page.frame_locator("iframe.report-frame")
    assert report.locator("section#verdict").inner_text().startswith("The audit found")
    report.locator("#f-count", has_text="shown").wait_for()  # the report's own script runs (allowed by hash)
    frame = next(f for f in page.frames if f.url.endswith(f"/runs/{first}/report.html"))
    assert frame.evaluate("window.origin") == "null"  # sandboxed: an opaque origin, no cookie, no API
    assert frame.evaluate("document.querySelectorAll('script').length") == 1  # the answer's <script> is text
    dialog.get_by_role("button", name="Close").click()

    page.get_by_label(f"Select run {first}").check()
    compare = page.get_by_role("button", name="Compare the two selected runs")
    assert compare.is_disabled()
    page.get_by_label(f"Select run {second}").check()
    compare.click()
    result = page.get_by_test_id("audit-comparison")
    result.get_by_role("heading", name=re.compile(f"#{first}.*compared with #{second}")).wait_for()
    assert page.evaluate("document.activeElement.id") == "audit-comparison"  # focus follows the result
    china = result.locator("tr", has_text="CN").first
    assert "%" in china.inner_text()
    assert_accessible(page, "admin audit runs with a comparison")


def test_admin_imports_a_model_from_a_server_path(open_page: Any, web_server: Any, make_test_model: Any) -> None:
    import shutil

    target = web_server.home / "imports" / "fresh.gguf"
    shutil.copyfile(make_test_model(seed=3), target)
    w: Watched = open_page()
    page = w.page
    login(w)
    page.goto(w.origin + "/#/admin/models")
    path = page.get_by_label("Path on the server")
    status = page.get_by_test_id("import-status")
    path.fill("/etc/passwd")
    page.get_by_role("button", name="Import", exact=True).click()
    status.filter(has_text="not inside an import directory").wait_for()
    path.fill(str(target))
    page.get_by_label("Name (optional)").fill("fresh:v1")
    page.get_by_role("button", name="Import", exact=True).click()
    status.filter(has_text="Imported fresh:v1.").wait_for(timeout=60_000)  # trial load in a child process
    page.locator("table.data code", has_text="fresh:v1").wait_for()
    assert_accessible(page, "admin models with the import form")
