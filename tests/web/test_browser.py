"""The seed walkthrough (libraries.md "a concrete example") in a real browser: Debian's Chromium, headless, driven
by Playwright's sync API against `filmroll serve` as a child process.

A plain (non-async) test: Playwright's sync API runs its own event loop, which pytest-trio leaves alone. No
`playwright install`: the browser is the system's (`scripts/system-deps.sh` installs `chromium`). Screenshots go
to `test-artifacts/web/` (git-ignored), printed at the end.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.live_daemon import start_daemon, stop_daemon
from tests.media_files import jpeg, video

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make setup)")

ADMIN = ("admin@example.com", "Admin", "admin-password")
USER = ("user@example.com", "User", "user-password")


def media_folders(root: Path) -> Path:
    """The seed's folders, as the daemon sees them under the user's external path `root`."""
    jpeg(root / "christmas-trip" / "tree.jpg", (640, 480), taken="2023:12:24 18:00:00")
    jpeg(root / "christmas-trip" / "dinner.jpg", (480, 640), taken="2023:12:25 13:30:00")
    jpeg(root / "christmas-trip" / "Raw" / "tree-raw.jpg", (640, 480), taken="2023:12:24 18:00:00")
    jpeg(root / "old-pics" / "school.jpg", (400, 300), taken="1994:09:01 08:00:00")
    jpeg(root / "old-pics" / "beach.jpg", (400, 300), taken="1996:07:14 15:00:00")
    video(root / "videos" / "sledging.mp4", size=(160, 120), seconds=1.0)
    return root


def test_seed_walkthrough_in_chromium(tmp_path: Path) -> None:
    external = media_folders(tmp_path / "mnt" / "media")
    data_dir, log = tmp_path / "data", tmp_path / "daemon.log"
    process, url = start_daemon(data_dir, log)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                walkthrough(browser, url, external)
            finally:
                browser.close()
    finally:
        stop_daemon(process, data_dir, log)
    print(f"\nscreenshots: {ARTIFACTS}")


def walkthrough(browser, url: str, external: Path) -> None:
    expect = playwright.expect
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)

    # First run: the admin signs up, then creates the user and sets their external path.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/register$"))
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Name").fill(ADMIN[1])
    page.get_by_label("Password").fill(ADMIN[2])
    page.get_by_role("button", name="Create the admin account").click()
    expect(page).to_have_url(re.compile(r"/admin/users$"))

    create = page.locator("form[action='/admin/users']")
    create.get_by_label("Email").fill(USER[0])
    create.get_by_label("Name").fill(USER[1])
    create.get_by_label("Password").fill(USER[2])
    create.get_by_role("button", name="Create user").click()
    expect(page.locator(".flash")).to_contain_text(f"Created {USER[0]}")
    row = page.locator(f"tr[data-email='{USER[0]}']")
    row.get_by_label(f"External path of {USER[0]}").fill(str(external))
    row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text(f"External path of {USER[0]}: {external}")
    page.screenshot(path=ARTIFACTS / "1-admin-users.png", full_page=True)
    page.get_by_role("button", name=re.compile("Sign out")).click()
    expect(page).to_have_url(re.compile(r"/auth/login"))

    # The user signs in and goes to Account settings > Libraries.
    page.goto("/user-settings/libraries")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=%2Fuser-settings%2Flibraries$"))
    page.get_by_label("Email").fill(USER[0])
    page.get_by_label("Password").fill(USER[2])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/user-settings/libraries$"))
    expect(page.locator("section.library")).to_have_count(1)  # the upload library
    expect(page.locator("#library-status")).to_be_visible()

    # "Christmas Trip": one import path, raw files excluded, then "Scan new library files".
    trip = create_library(page)
    trip.get_by_label("Library name").fill("Christmas Trip")
    trip.get_by_role("button", name="Rename Library").click()
    expect(trip.locator("h2")).to_have_text("Christmas Trip")
    add_import_path(trip, "/etc")  # outside the external path: refused, with the reason
    expect(page.locator(".flash.error")).to_contain_text("Christmas Trip")
    add_import_path(trip, str(external / "christmas-trip"))
    expect(trip.locator("ul.paths li.valid")).to_have_count(1)
    trip.get_by_label("Exclusion pattern to add").fill("**/Raw/**")
    trip.get_by_role("button", name="Add Exclusion Pattern").click()
    expect(trip.locator("ul.patterns")).to_contain_text("**/Raw/**")
    trip.get_by_role("button", name="Scan new library files").click()
    expect(trip.locator(".last-scan")).to_contain_text("2 new", timeout=30_000)
    expect(trip.locator(".count")).to_have_text("2 assets")

    # A second library with two import paths (old pictures and videos); a missing path shows why.
    second = create_library(page)
    add_import_path(second, str(external / "old-pics"))
    add_import_path(second, str(external / "videos"))
    add_import_path(second, str(external / "not-there"))
    expect(second.locator("ul.paths li.invalid")).to_contain_text("not-there")
    expect(page.locator(".flash.error")).to_contain_text("not accessible")
    second.get_by_role("button", name=f"Remove {external / 'not-there'}").click()
    expect(second.locator("ul.paths li")).to_have_count(2)
    second.get_by_role("button", name="Scan new library files").click()
    expect(second.locator(".last-scan")).to_contain_text("3 new", timeout=30_000)
    expect(second.locator(".count")).to_have_text("3 assets")
    page.screenshot(path=ARTIFACTS / "2-libraries.png", full_page=True)

    # The timeline: five assets by month, the raw file excluded; thumbhash placeholders, then thumbnails.
    page.goto("/photos")
    tiles = page.locator("#timeline .tile")
    expect(tiles).to_have_count(5)
    expect(page.locator("#timeline")).not_to_contain_text("tree-raw.jpg")
    # capture dates come from metadata extraction, a queue of its own: until it ran, an asset sits in its mtime's month
    reload_until(page, lambda: page.locator("section.month h2", has_text="July 1996").count() == 1, "July 1996")
    wait_for_thumbnails(page)
    expect(page.locator("section.month h2", has_text="December 2023")).to_have_text("December 2023 2")
    expect(page.locator("section.month h2", has_text="July 1996")).to_have_text("July 1996 1")
    placeholders = page.locator("img[data-placeholder='1']").count()
    assert placeholders == page.locator("img[data-thumbhash]").count() > 0  # the decoder ran (module, CSP)
    page.screenshot(path=ARTIFACTS / "3-timeline.png", full_page=True)

    # Select the three Christmas items and add them to a new album; the album page shows them.
    for name in ("tree.jpg", "dinner.jpg", "sledging.mp4"):
        page.get_by_label(f"Select {name}").check()
    page.get_by_label("New album name").fill("Christmas 2023")
    page.get_by_role("button", name="Add to album").click()
    expect(page).to_have_url(re.compile(r"/albums/[0-9a-f-]+$"))
    expect(page.locator("h1")).to_have_text("Christmas 2023")
    expect(page.locator("#album .tile")).to_have_count(3)
    expect(page.locator(".album-count")).to_contain_text("3 items")
    wait_for_thumbnails(page)
    page.screenshot(path=ARTIFACTS / "4-album.png", full_page=True)
    page.goto("/albums")
    expect(page.locator("[data-album='Christmas 2023']")).to_contain_text("3 items")

    # The video's page plays it; favourite toggles.
    page.goto("/photos")
    page.locator(".tile.video a").first.click()
    expect(page.locator("video source")).to_have_attribute("src", re.compile(r"/video/playback$"))
    page.get_by_role("button", name="♡ Favourite").click()
    expect(page.get_by_role("button", name="♥ Favourite")).to_be_visible()
    duration = page.evaluate(
        "() => new Promise((done) => { const v = document.querySelector('video');"
        " if (v.readyState >= 1) done(v.duration); else v.addEventListener('loadedmetadata', () => done(v.duration));"
        " v.load(); })"
    )
    assert duration > 0.5
    page.screenshot(path=ARTIFACTS / "5-video.png")

    # On a phone-sized screen the timeline still works.
    phone = browser.new_context(base_url=url, viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.add_cookies(context.cookies())
    mobile = phone.new_page()
    mobile.goto("/photos")
    expect(mobile.locator("#timeline .tile")).to_have_count(5)
    wait_for_thumbnails(mobile)
    mobile.screenshot(path=ARTIFACTS / "6-timeline-phone.png", full_page=True)
    phone.close()
    assert not errors, errors
    context.close()


def create_library(page):
    page.get_by_role("button", name="Create External Library").click()
    playwright.expect(page).to_have_url(re.compile(r"#library-[0-9a-f-]+$"))
    library_id = page.url.rsplit("#library-", 1)[1]
    return page.locator(f"#library-{library_id}")


def add_import_path(card, path: str) -> None:
    card.get_by_label("Import path to add").fill(path)
    card.get_by_role("button", name="Add Path").click()
    playwright.expect(card.page.locator(".flash")).to_contain_text(path)


def reload_until(page, check, what: str, timeout: float = 60.0) -> None:
    """Reload until `check()` holds (the media queues work in the background; pages do not refresh themselves)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_load_state("load")
        if check():
            return
        assert time.monotonic() < deadline, f"{what}: not there after {timeout:.0f} s"
        time.sleep(0.5)
        page.reload()


def wait_for_thumbnails(page, timeout: float = 60.0) -> None:
    """Reload until every thumbnail has loaded (the media queues render them in the background)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_load_state("load")
        pending = page.evaluate(
            "() => [...document.querySelectorAll('.tile img')].filter((i) => !(i.complete && i.naturalWidth))"
            ".length"
        )
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} thumbnails still missing after {timeout:.0f} s"
        time.sleep(0.5)
        page.reload()
