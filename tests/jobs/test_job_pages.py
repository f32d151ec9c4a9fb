"""The job pages in a real headless Chromium: sign in with an API key, the jobs list with live
progress, a job's page with its items, errors, webhook deliveries and links to its tasks in Flower."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import redis
from selenium.webdriver.common.by import By

from devstack.webhook_receiver import Receiver
from geoqueue.ledger_keys import event_channel
from tests.conftest import wait_until
from tests.http_helpers import api
from tests.inputs import prefix_of, put_images

OUTPUT = Path(__file__).resolve().parents[1] / "output"


def sign_in(browser, stack, key: str) -> None:
    browser.get(stack.api_url + "/ui/jobs")
    assert browser.current_url.endswith("/ui/login")  # no key: the login form, not the jobs
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "sign-in").click()
    # The form's answer is a redirect the browser follows on its own time.
    wait_until(lambda: "/ui/login" not in browser.current_url, 30, "the jobs page after signing in", interval=0.05)


def row(browser, job_id: str) -> tuple[str, str]:
    """(the row's text, its progress bar's width), read in one step: the page rewrites the row live."""
    return tuple(browser.execute_script(
        "const row = document.getElementById(arguments[0]);"
        "return row ? [row.innerText, row.querySelector('.bar > span').style.width] : ['', ''];", f"job-{job_id}"))


def test_jobs_list_updates_live_and_a_job_page_shows_everything(stack, store, chromium, sandbox):
    refs = put_images(store, 6)
    sandbox.configure("immersity", processing_delay_s=0.6)
    receiver = Receiver(stack.webhook_secret, fail_first=1)
    try:
        store.write(type(refs[0])(refs[0].bucket, refs[0].key.rsplit("/", 1)[0] + "/broken.jpg"), b"not a jpeg",
                    "image/jpeg")
        sign_in(chromium, stack, stack.api_key)
        assert "/ui/jobs" in chromium.current_url
        job = api(stack, "POST", "/v1/jobs", json={"name": "immersity.batch", "callback_url": receiver.url, "params": {
            "prefix": prefix_of(refs), "max_parallel": 1}}).json()
        # The page was loaded before the job existed: its row comes from the event stream.
        wait_until(lambda: row(chromium, job["id"])[0], 30, "the new job on the open page")
        widths = set()

        def ended() -> str:
            text, width = row(chromium, job["id"])
            widths.add(width)
            return text if "succeeded" in text or "failed" in text else ""

        text = wait_until(ended, 90, "the job's end on its row", interval=0.05)
        assert len(widths) >= 3, f"the progress bar did not move live: {widths}"
        OUTPUT.mkdir(exist_ok=True)
        chromium.save_screenshot(str(OUTPUT / "jobs-list.png"))
        assert "immersity.batch" in text and "immersity" in text

        receiver.wait_for(2)
        chromium.find_element(By.CSS_SELECTOR, f"#job-{job['id']} a").click()
        time.sleep(1)
        page = chromium.page_source
        chromium.save_screenshot(str(OUTPUT / "job-page.png"))
        assert job["id"] in page and "broken.jpg" in page
        assert re.search(r"<td>\s*InvalidInput|<td>\w+Error|<td>Invalid", page), "the item's error type is not shown"
        deliveries = chromium.find_element(By.ID, "deliveries").text
        assert "failed" in deliveries and "delivered" in deliveries and "500" in deliveries
        # The tasks come from Flower after the page, so that a slow Flower never holds a page back.
        links = wait_until(lambda: [(a.get_attribute("href"), a.text) for a in
                                    chromium.find_elements(By.CSS_SELECTOR, "#tasks a")], 20, "the job's tasks")
        assert f"{stack.flower_url}/task/{job['id']}" in [href for href, _ in links]
        assert any("immersity.item" in text for _, text in links)
        for secret in (stack.api_key, stack.webhook_secret, "receiver-token", "X-Amz-Signature"):
            assert secret not in page
    finally:
        receiver.close()


def test_filters_and_a_read_only_page(stack, queue, chromium):
    job_id = f"ui-filter-{stack.api_port}"
    queue.ledger.create(job_id, "dronemapper.remove", {})
    queue.ledger.transition(job_id, "failed", error={"type": "VendorError", "message": "gone"})
    chromium.get(stack.api_url + "/ui/jobs?state=failed&vendor=dronemapper")
    if "/ui/login" in chromium.current_url:
        sign_in(chromium, stack, stack.api_key)
        chromium.get(stack.api_url + "/ui/jobs?state=failed&vendor=dronemapper")
    rows = chromium.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    assert any(job_id in r.text and "VendorError" in r.text for r in rows)
    assert all("failed" in r.text and "dronemapper" in r.text for r in rows)
    chromium.get(stack.api_url + "/ui/jobs?state=succeeded")
    assert job_id not in chromium.page_source
    # The cookie reads; it cannot cancel (a page from another site could send it).
    cookies = {c["name"]: c["value"] for c in chromium.get_cookies()}
    import requests

    assert requests.delete(f"{stack.api_url}/v1/jobs/{job_id}", cookies=cookies, timeout=10).status_code == 401
    assert requests.get(f"{stack.api_url}/v1/jobs/{job_id}", cookies=cookies, timeout=10).status_code == 200


CRAFTED = '<img src=x onerror="document.title=\'injected\'">'


def publish_crafted(stack, job_id: str, state: str = "running") -> None:
    """An event as anyone who can publish on the ledger's channels could send it: markup for numbers."""
    event = {"id": job_id, "name": "dronemapper.remove", "vendor": "dronemapper", "state": state,
             "phase": "crafted", "done": CRAFTED, "total": CRAFTED, "credits": CRAFTED, "updated": time.time()}
    redis.Redis.from_url(stack.redis_url).publish(event_channel(job_id), json.dumps(event))


def markup_on_page(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('main img')].map(e => e.outerHTML).concat("
        "document.title === 'injected' ? ['title changed'] : [])")


def test_progress_from_events_is_shown_as_numbers_never_as_markup(stack, queue, chromium):
    job_id = f"ui-crafted-{stack.api_port}"
    queue.ledger.create(job_id, "dronemapper.remove", {})
    chromium.get(f"{stack.api_url}/ui/jobs/{job_id}")
    if "/ui/login" in chromium.current_url:
        sign_in(chromium, stack, stack.api_key)
        chromium.get(f"{stack.api_url}/ui/jobs/{job_id}")
    wait_until(lambda: chromium.find_element(By.ID, "live").text == "live", 20, "the job page's live updates")
    publish_crafted(stack, job_id)
    wait_until(lambda: chromium.find_element(By.ID, "phase").text == "crafted", 20, "the crafted event on the page")
    assert markup_on_page(chromium) == []
    assert "<img" not in chromium.find_element(By.ID, "progress").get_attribute("innerHTML")

    chromium.get(f"{stack.api_url}/ui/jobs")
    wait_until(lambda: chromium.find_element(By.ID, "live").text == "live", 20, "the jobs list's live updates")
    publish_crafted(stack, job_id)  # a row on the page
    publish_crafted(stack, job_id + "-new")  # a row the event makes
    wait_until(lambda: "crafted" in row(chromium, job_id + "-new")[0] and "crafted" in row(chromium, job_id)[0], 20,
               "the crafted events on the list")
    assert markup_on_page(chromium) == []
