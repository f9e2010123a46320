"""`make run` end to end: the launcher starts every real component; an admin uploads a real
CUAD contract in headless Chromium, a user asks, the citation names the right document and
page; Ctrl-C (SIGINT) or SIGTERM then stops every process it started.

The launcher is started exactly as `make run` starts it (`python -m launcher`), in a
fresh DATA_DIR, with no DATABASE_URL, REDIS_URL or LLM_BASE_URL: all embedded defaults.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from launcher import embedded
from tests import browser as browser_tools
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@dataclass
class Product:
    proc: subprocess.Popen
    url: str
    data_dir: Path
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)


def _clean_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_", "DJANGO_"))
        and k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    }
    env.update(DATA_DIR=str(data_dir), PORT=str(port), **extra)
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def start_product(data_dir: Path, **extra: str) -> Product:
    port = embedded.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher"],
        cwd=REPO,
        env=_clean_env(data_dir, port, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # like a terminal job: we signal only the launcher itself
    )
    product = Product(proc=proc, url=f"http://127.0.0.1:{port}", data_dir=data_dir)

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            product.output.append(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 240
    while "Attest is running" not in product.text() or not _http_ok(
        product.url + "/accounts/login/"
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            _terminate(proc)
            pytest.fail("make run did not start:\n" + product.text()[-4000:])
        time.sleep(0.5)
    return product


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _started_pids(product: Product) -> set[int]:
    """Every process the launcher started, and the embedded PostgreSQL postmaster."""
    pids = {p.pid for p in psutil.Process(product.proc.pid).children(recursive=True)}
    postmaster = product.data_dir / "pg" / "postmaster.pid"
    pids.add(int(postmaster.read_text().split()[0]))
    return pids


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_stops_cleanly(product: Product, sig: signal.Signals) -> None:
    pids = _started_pids(product)
    kinds = " ".join(psutil.Process(p).name() for p in pids)
    for expected in ("postgres", "redis-server", "celery", "gunicorn"):
        assert expected in kinds, f"{expected} was not running: {kinds}"
    product.proc.send_signal(sig)
    assert product.proc.wait(90) == 0, product.text()[-3000:]
    time.sleep(0.5)
    left = [pid for pid in pids if _alive(pid)]
    assert not left, f"processes left behind after {sig.name}: {left}"
    stray = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(product.data_dir) in " ".join(p.info["cmdline"] or []) and _alive(p.pid)
    ]
    assert not stray, f"processes still using {product.data_dir}: {stray}"
    assert "stopped" in product.text()


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    product = start_product(tmp_path_factory.mktemp("make-run") / "var")
    yield product
    _terminate(product.proc)


def test_first_start_prints_how_to_sign_in(product):
    text = product.text()
    assert re.search(r"username: admin", text)
    password = re.search(r"password: (\S+)", text).group(1)
    assert len(password) >= 12
    saved = (product.data_dir / "admin-password.txt").read_text().split()
    assert saved == ["admin", password]
    assert oct((product.data_dir / "admin-password.txt").stat().st_mode & 0o777) == "0o600"


@pytest.mark.browser
def test_upload_a_real_contract_and_ask_in_the_browser(product, cuad_pdf, tmp_path):
    password = re.search(r"password: (\S+)", product.text()).group(1)
    with browser_tools.playwright() as p:
        browser = browser_tools.launch(p)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        shot = Path(os.environ.get("SCREENSHOT_DIR", tmp_path)) / "browser-failure.png"
        try:
            page.goto(product.url + "/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", password)
            page.click("button[type=submit]")
            page.wait_for_selector("text=Collections")

            # An admin creates a collection in the Django admin, then uploads on its page.
            page.goto(product.url + "/admin/ingest/collection/add/")
            page.fill("#id_name", "CUAD contracts")
            page.click("input[name=_save]")
            page.wait_for_selector("text=was added successfully")
            page.goto(product.url + "/")
            page.click('a:has-text("CUAD contracts")')
            page.set_input_files("input[type=file]", str(cuad_pdf))
            page.click("#upload-button")
            page.wait_for_selector("text=1 file(s) queued")
            # The page refreshes itself while the worker parses, chunks and embeds.
            page.wait_for_selector('tr[data-status="ready"]', timeout=240_000)
            assert "LUCIDINC" in page.inner_text("#documents")

            page.fill("#id_question", "What discount does the distributor get on the price list?")
            page.click("#ask-button")
            page.wait_for_selector("#answer", timeout=120_000)
            page.screenshot(path=str(shot.with_name("answer.png")), full_page=True)
            answer = page.inner_text("#answer")
            sources = page.inner_text("#sources")
            assert "thirty (30) per cent" in answer + sources
            cited = page.locator("li.source.cited")
            assert cited.count() >= 1, answer
            heads = [cited.nth(i).inner_text() for i in range(cited.count())]
            assert any(
                "LUCIDINC_04_15_2011-EX-10.9-DISTRIBUTOR AGREEMENT.PDF" in h and "page 5" in h
                for h in heads
            ), heads
            # The citation in the answer text opens the document on the cited passage.
            page.click("#answer a.cite >> nth=0")
            page.wait_for_selector("#passage")
            assert "/documents/" in page.url and page.url.endswith("#passage")
            assert "page 5" in page.inner_text("#passage-info")

            # The exchange is in the audit trail, with the passages shown to the model.
            page.goto(product.url + "/admin/audit/auditevent/")
            page.click("text=question.answered")
            detail = page.inner_text("#content")
            assert "What discount does the distributor get" in detail
            assert "thirty (30) per cent" in detail
        except Exception:
            page.screenshot(path=str(shot), full_page=True)
            print(
                f"screenshot of the failure: {shot}\n{page.url}\n{page.inner_text('body')[:2000]}"
            )
            raise
        finally:
            browser.close()


def test_first_start_creates_an_audit_key_and_signed_checkpoints_appear(product):
    """Issue 9: `make run` signs the audit trail out of the box (worker with beat)."""
    key = product.data_dir / "keys" / "audit_ed25519"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    folder = product.data_dir / "checkpoints"
    deadline = time.monotonic() + 90
    while not list(folder.glob("checkpoint-*.json")):
        assert time.monotonic() < deadline, "no checkpoint within 90 s:\n" + product.text()[-3000:]
        time.sleep(1)
    env = _clean_env(product.data_dir, 0)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "audit",
            "verify",
            "--checkpoints",
            str(folder),
            "--public-key",
            str(key) + ".pub",
            "--json",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok": true' in result.stdout


def test_ctrl_c_stops_every_process(product):
    assert_stops_cleanly(product, signal.SIGINT)


def test_sigterm_stops_every_process(tmp_path):
    product = start_product(tmp_path / "var", LLM_BACKEND="extractive")
    try:
        assert "LLM server" not in product.text()  # extractive: no model server to start
        assert_stops_cleanly(product, signal.SIGTERM)
    finally:
        _terminate(product.proc)
