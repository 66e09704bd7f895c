"""A real browser for the dashboard's tests: Debian's headless Chromium, driven by Selenium through
Debian's ChromeDriver (testbed/install.sh installs both; nothing is downloaded at run time).

    with chromium() as browser:
        login(browser, dashboard_url())
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from testbed.openstack import ADMIN_PASSWORD, HOST, PORTS

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def dashboard_url() -> str:
    return f"http://{HOST}:{PORTS['horizon']}"


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium session, quit (with its driver process) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        # root in a container-like machine: Chromium's sandbox needs user namespaces
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver: Any, base: str, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """Log in through Horizon's login form; return on the page it lands on."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/auth/login/")
    driver.find_element(By.ID, "id_username").send_keys(user)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.ID, "loginBtn").click()
    WebDriverWait(driver, 60).until(ec.url_changes(f"{base}/auth/login/"))
