"""Screenshots of what a user sees in the Prefect UI for a study run, taken with headless Chromium.

    .venv/bin/python scripts/screenshot.py [--flow-run ID] [--out docs]

Needs a running server (`make server`, or PREFECT_API_URL) and Debian's `chromium`. Without
--flow-run it takes the latest completed run of the `study` flow. Writes <out>/study-artifacts.png
(the run's Artifacts tab), <out>/study-log.png (its log, which ends with the summary table) and one
PNG per keyed artifact (<out>/artifact-<key>.png: the report shows its figures there). Chromium is
driven over its DevTools protocol (loopback only) because the UI opens a run on its Logs tab
whatever the URL says, so the Artifacts tab has to be clicked.
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName,
                                            FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL
from websockets.sync.client import connect

WIDTH = 1400


class Browser:
    """One headless Chromium with a fresh profile, and a DevTools session on its first page."""

    def __init__(self, profile: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.process = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--remote-debugging-port={port}", f"--window-size={WIDTH},1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.ws = connect(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"], max_size=None)
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while (reply := json.loads(self.ws.recv())).get("id") != message_id:
            pass
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for_text(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.js(f"document.body && document.body.innerText.includes({json.dumps(text)})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} did not appear")
            time.sleep(0.5)
        time.sleep(2)  # let images and charts finish drawing

    def shot(self, path: Path, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(path)

    def close(self) -> None:
        self.ws.close()
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-run", help="flow run id (default: the latest completed study run)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("chromium not found: sudo apt-get install chromium")
    api = PREFECT_API_URL.value()
    if not api:
        sys.exit("no Prefect server: start one with `make server`, or set PREFECT_API_URL")
    ui = api.removesuffix("/").removesuffix("/api")
    with get_client(sync_client=True) as client:
        if args.flow_run:
            run = client.read_flow_run(args.flow_run)
        else:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["study"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED"]))),
                sort=FlowRunSort.END_TIME_DESC, limit=1)
            if not runs:
                sys.exit(f"no completed study run on {api}")
            run = runs[0]
        artifacts = [a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))) if a.key]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(profile)
        try:
            browser.call("Page.navigate", url=f"{ui}/runs/flow-run/{run.id}")
            browser.wait_for_text("Finished in state")
            browser.shot(args.out / "study-log.png", 1400)
            browser.js("[...document.querySelectorAll('li.p-tab')].find(e => e.innerText.trim() === 'Artifacts').click()")
            browser.wait_for_text(artifacts[0].key if artifacts else "No artifacts")
            browser.shot(args.out / "study-artifacts.png", 1400)
            for artifact in artifacts:
                browser.call("Page.navigate", url=f"{ui}/artifacts/artifact/{artifact.id}")
                browser.wait_for_text(artifact.key)
                browser.shot(args.out / f"artifact-{artifact.key}.png", 3000)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
