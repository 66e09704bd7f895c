"""Start, reset and stop the AWS stand-in (moto + fault layer) from tests and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from testbed.procs import stop

REGION = "us-east-1"
ACCOUNT = "123456789012"
# the credentials moto accepts; exported so that no test can ever reach real AWS
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


class MotoServer:
    """moto's server as a subprocess on 127.0.0.1, on a port the OS chose."""

    def __init__(self, log_file: Path | None = None) -> None:
        self.log_file = log_file
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        env = {**os.environ, **FAKE_CREDENTIALS, "MOTO_EC2_LOAD_DEFAULT_AMIS": "true"}
        # the child keeps its own copy of the log's descriptor; ours is closed at once
        with open(self.log_file or os.devnull, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "testbed.moto_server"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                cwd=Path(__file__).resolve().parents[1],
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("MOTO_PORT "):
            self.stop()
            raise RuntimeError(f"moto did not start (printed {line!r}); see {self.log_file}")
        self.port = int(line.split()[1])
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/moto-api/data.json")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- control ------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.endpoint + path, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def post(self, path: str, obj: object = None) -> Any:
        data = json.dumps(obj or {}).encode()
        req = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return json.loads(body) if body else None

    def reset(self) -> None:
        """Wipe every AWS resource and every fault rule and counter."""
        self.post("/moto-api/reset")
        self.post("/_fault/clear")

    def fault(
        self,
        action: str,
        code: str | None = None,
        *,
        status: int = 400,
        times: int | None = 1,
        delay_s: float = 0.0,
        message: str | None = None,
        region: str | None = None,
    ) -> None:
        """Make `action` fail with `code` (or only wait `delay_s`) for the next `times` calls
        (None: until cleared), in every region or only `region`."""
        rule: dict[str, Any] = {"action": action, "code": code, "status": status, "times": times}
        if region:
            rule["region"] = region
        if delay_s:
            rule["delay_s"] = delay_s
        if message:
            rule["message"] = message
        self.post("/_fault/rules", {"rules": [rule]})

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests seen and faults injected, per action, since the last reset."""
        out: dict[str, dict[str, int]] = self.get("/_fault/stats")
        return out

    def seed_metrics(
        self, data: list[dict[str, Any]], namespace: str = "AWS/EC2"
    ) -> dict[str, int]:
        out: dict[str, int] = self.post(
            "/_seed/cloudwatch", {"namespace": namespace, "region": REGION, "data": data}
        )
        return out

    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
