"""The U-Net Explainer in a real browser: Debian's chromium, headless and offline, driven by Selenium.

Slow (run by ``.ci/run`` with ``pytest -q -m slow``).  Skipped, saying why, only when no chromium
or chromedriver is installed.  NPUNET_SAVE_SCREENSHOT=PATH also stores the overview screenshot there
(figures/explainer_overview.png in the README comes from a trained model, see lessons/10_explainer.py).
"""
import io
import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from npunet.data import make_cells
from npunet.models import EncoderUNet, UNet, UNet3Plus, UNetPlusPlus
from npunet.viz import explain

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no browser: Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run does this)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[test]')")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="npunet-chromium-")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


MODELS = {
    "unet": lambda: UNet(1, 2, base_channels=4, depth=3, padding="same", batch_norm=True),
    "unet_valid": lambda: UNet(1, 2, base_channels=2, depth=1),
    "unetpp": lambda: UNetPlusPlus(1, 2, filters=[4, 8, 16, 32], depth=3, deep_supervision=True),
    "unet3plus": lambda: UNet3Plus(1, 2, filters=[4, 8, 16, 32, 64], cat_channels=4, deep_supervision=True),
    "resnet18": lambda: EncoderUNet("resnet18", in_channels=1, num_classes=2, encoder_depth=3,
                                    decoder_channels=(16, 8, 4)),
}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    x, lab, _ = make_cells(1, 64, seed=5)
    out = {}
    for name, make in MODELS.items():
        path = tmp_path_factory.mktemp("pages") / f"{name}.html"
        net = make()
        if name == "unet_valid":   # the paper's unpadded convs: 36 -> 20, the skip cropped 32 -> 24
            explain(net, x[0][:, :36, :36], path, labels=lab[0][:36, :36])
        elif name == "unet":
            first = net.state_dict()
            second = {k: v * 0.9 if k.endswith("weight") else v for k, v in first.items()}
            explain(net, x[0], path, labels=lab[0], snapshots=[("epoch 1", second), ("epoch 2", first)])
        else:
            explain(net, x[0], path, labels=lab[0])
        out[name] = str(path)
    return out


def _open(d, path):
    d.get("file://" + path)
    d.get_log("browser")
    d.get_log("performance")  # what follows is this page's
    return d.execute_script("return JSON.parse(document.getElementById('data').textContent).blocks.map(b => b.name)")


def _errors(d):
    return [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _view(d, name):
    d.find_element("css selector", f'nav button[data-view="{name}"]').click()


def _grid_shown(d, block):
    img = d.find_element("id", "feature-grid")
    return img.get_attribute("data-block") == block and img.is_displayed() and \
        d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_block_is_clickable_and_shows_its_feature_grid(driver, pages, name):
    blocks = _open(driver, pages[name])
    boxes = driver.execute_script("return Array.from(document.querySelectorAll('#svgbox [id^=\"blk-\"]')).map(e => e.id)")
    drawn = [b[4:] for b in boxes if b[4:] in blocks]
    assert len(drawn) >= 3 and "input" not in drawn
    for b in drawn:                       # the figure's boxes
        _view(driver, "overview")
        driver.find_element("id", f"blk-{b}").click()
        assert _grid_shown(driver, b), b
    for b in blocks:                      # the block list, parameter-free blocks included
        driver.find_element("css selector", f'#blocklist button[data-block="{b}"]').click()
        assert _grid_shown(driver, b), b
    assert not _errors(driver)


def _read_sum(d):
    return float(d.find_element("id", "op-sum").text), float(d.find_element("id", "op-output").text)


@pytest.mark.parametrize("name", list(MODELS))
def test_one_operation_sum_equals_the_displayed_output(driver, pages, name):
    blocks = _open(driver, pages[name])
    seen = set()
    for b in blocks:
        driver.find_element("css selector", f'#blocklist button[data-block="{b}"]').click()
        _view(driver, "op")
        n = len(driver.find_elements("css selector", ".opbtn"))
        for i in range(n):
            driver.find_elements("css selector", ".opbtn")[i].click()
            kind = driver.find_elements("css selector", ".opbtn")[i].text.split(":")[0]
            seen.add(kind)
            s, o = _read_sum(driver)
            assert abs(s - o) <= 1e-5, (b, i, s, o)
            cells = driver.find_elements("css selector", "#pick td")
            cells[-1].click()                             # another output pixel
            s, o = _read_sum(driver)
            assert abs(s - o) <= 1e-5, (b, i, "last pixel", s, o)
            opts = driver.find_elements("css selector", "#chan-out option")
            if len(opts) > 1:                             # another output channel
                opts[-1].click()
                s, o = _read_sum(driver)
                assert abs(s - o) <= 1e-5, (b, i, "last channel", s, o)
    expected = {"unet": {"conv", "maxpool", "upconv"}, "unet3plus": {"conv", "maxpool", "bilinear"}}.get(name, {"conv"})
    assert expected <= seen
    assert not _errors(driver)


def test_backward_shows_the_two_skip_contributions_and_the_weight_map_toggle(driver, pages):
    _open(driver, pages["unet"])
    driver.find_element("css selector", '#blocklist button[data-block="down1"]').click()
    _view(driver, "backward")
    parts = driver.find_elements("css selector", ".contribution")
    assert len(parts) == 2
    text = " ".join(p.text for p in parts)
    assert "from pool1" in text and "from up3" in text
    before = driver.find_element("id", "grad-map").get_attribute("src")
    driver.find_element("id", "wm-toggle").click()
    after = driver.find_element("id", "grad-map").get_attribute("src")
    assert before != after and "without" in driver.find_element("id", "backward").text
    assert len(driver.find_elements("css selector", "#levels tr")) == 1 + 11
    _open(driver, pages["unet3plus"])
    driver.find_element("css selector", '#blocklist button[data-block="hd2"]').click()
    _view(driver, "backward")
    assert len(driver.find_elements("css selector", ".sent")) == 5
    _open(driver, pages["unetpp"])
    driver.find_element("css selector", '#blocklist button[data-block="x0_0"]').click()
    _view(driver, "backward")
    assert len(driver.find_elements("css selector", ".contribution")) == 4
    assert not _errors(driver)


def test_copy_and_crop_is_drawn(driver, pages):
    _open(driver, pages["unet_valid"])
    driver.find_element("css selector", '#blocklist button[data-block="up1"]').click()
    rect = driver.find_element("id", "crop-rect")
    assert rect.size["width"] > 0 and "24x24 from 32x32" in driver.find_element("id", "block").text


def test_training_slider(driver, pages):
    _open(driver, pages["unet"])
    _view(driver, "training")
    assert driver.find_element("id", "snap-label").text == "epoch 2"
    driver.execute_script("const s = document.getElementById('slider'); s.value = 0; s.dispatchEvent(new Event('input'))")
    assert driver.find_element("id", "snap-label").text == "epoch 1"
    assert driver.find_element("id", "snap-grid").get_attribute("data-block") == "down1"


def test_page_makes_no_network_request_and_the_overview_screenshot_is_not_empty(driver, pages, tmp_path):
    from PIL import Image
    path = pages["unet"]
    _open(driver, path)
    for v in ("block", "op", "backward", "training", "overview"):
        _view(driver, v)
    requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert all(u.startswith("data:") for u in urls), urls
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    png = driver.get_screenshot_as_png()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape[0] > 500 and len(np.unique(img.reshape(-1, 3), axis=0)) > 200
    (tmp_path / "overview.png").write_bytes(png)
    if os.environ.get("NPUNET_SAVE_SCREENSHOT"):
        with open(os.environ["NPUNET_SAVE_SCREENSHOT"], "wb") as f:
            f.write(png)
    assert not _errors(driver)
