"""The AWS stand-in: moto's server on 127.0.0.1 behind a small fault-injection layer.

Run as `python -m testbed.moto_server [--port N] [--port-file F]`. It prints
`MOTO_PORT <n>` once it listens (port 0 lets the OS choose, so parallel runs never collide).

moto has no throttling, no capacity errors and no EC2 metrics. The fault layer adds the first
two with the error bodies AWS really sends, so botocore's own retry and error parsing run:

  POST /_fault/rules   {"rules": [{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                                   "message": "...", "status": 500, "times": 1, "delay_s": 0}]}
                       appends rules; "times": null means forever; "code": null with "delay_s"
                       adds latency only; "action": "*" matches every action; "region": "..."
                       matches only requests signed for that region (one public AZ of several)
  POST /_fault/clear   drops every rule and the counters (answers the counters as they were)
  GET  /_fault/stats   {"hits": {action: requests seen}, "injected": {action: faults injected}}
  POST /_seed/cloudwatch  bulk-loads datums into moto's CloudWatch backend directly (moto's
                       PutMetricData parser is slow); see seed_cloudwatch()

One moto behaviour is brought in line with EC2's: a terminated instance gives its private
addresses back to its subnet (release_addresses_on_termination()).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

# EC2's query protocol answers errors in this shape ...
EC2_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
    "<Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
)
# ... and the other query-protocol services (CloudWatch, IAM, STS) in this one.
QUERY_ERROR = (
    "<ErrorResponse><Error><Type>{typ}</Type><Code>{code}</Code><Message>{msg}</Message>"
    "</Error><RequestId>{rid}</RequestId></ErrorResponse>"
)
# JSON-protocol services (SSM, CloudWatch's JSON flavour) answer __type + message.
JSON_ERROR = '{{"__type": "{code}", "message": "{msg}"}}'

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def seed_cloudwatch(body: dict[str, Any]) -> dict[str, int]:
    """Append datums straight into moto's CloudWatch backend.

    body: {"account": "123456789012", "region": "us-east-1", "namespace": "AWS/EC2",
           "data": [{"name": "CPUUtilization", "dims": {"InstanceId": "i-..."},
                     "ts": <epoch s>, "value": 12.5, "unit": "Percent"}, ...]}
    """
    from moto.cloudwatch.models import MetricDatum, cloudwatch_backends

    backend = cloudwatch_backends[body.get("account", "123456789012")][
        body.get("region", "us-east-1")
    ]
    namespace = body.get("namespace", "AWS/EC2")
    for d in body["data"]:
        # moto keeps naive UTC timestamps
        ts = dt.datetime.fromtimestamp(d["ts"], dt.timezone.utc).replace(tzinfo=None)
        dims = [{"Name": k, "Value": v} for k, v in d.get("dims", {}).items()]
        backend.metric_data.append(
            MetricDatum(namespace, d["name"], float(d["value"]), dims, ts, d.get("unit"))
        )
    return {"seeded": len(body["data"]), "total": len(backend.metric_data)}


class FaultLayer:
    """WSGI middleware: make chosen AWS actions fail or slow down, count every action."""

    def __init__(self, app: Callable[[Environ, StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.rules: list[dict[str, Any]] = []
        self.hits: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    @staticmethod
    def _json(start_response: StartResponse, obj: object) -> list[bytes]:
        body = json.dumps(obj).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _control(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        path = environ["PATH_INFO"]
        n = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(n) if n else b""
        if path == "/_seed/cloudwatch":
            return self._json(start_response, seed_cloudwatch(json.loads(raw)))
        with self.lock:
            if path == "/_fault/rules":
                self.rules.extend(json.loads(raw)["rules"])
            out = {
                "rules": list(self.rules),
                "hits": dict(self.hits),
                "injected": dict(self.injected),
            }
            if path == "/_fault/clear":
                self.rules.clear()
                self.hits.clear()
                self.injected.clear()
        return self._json(start_response, out)

    @staticmethod
    def _action(environ: Environ) -> str | None:
        """The API action: a form field for query protocols, X-Amz-Target for JSON ones."""
        n = int(environ.get("CONTENT_LENGTH") or 0)
        if n:
            raw = environ["wsgi.input"].read(n)
            environ["wsgi.input"] = io.BytesIO(raw)  # moto reads the body again
            if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
                action = parse_qs(raw.decode("utf-8", "replace")).get("Action", [None])[0]
                if action:
                    return action
        target = environ.get("HTTP_X_AMZ_TARGET")
        return target.rsplit(".", 1)[-1] if target else None

    @staticmethod
    def _region(environ: Environ) -> str | None:
        """The region a request was signed for (SigV4's credential scope)."""
        scope = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2].split("/")
        return scope[2] if len(scope) > 2 else None

    def _match(self, action: str, region: str | None) -> dict[str, Any] | None:
        with self.lock:
            self.hits[action] = self.hits.get(action, 0) + 1
            for rule in self.rules:
                if rule.get("action") not in (action, "*"):
                    continue
                if rule.get("region") not in (None, region):
                    continue
                times = rule.get("times")
                if times is not None and times <= 0:
                    continue
                if times is not None:
                    rule["times"] = times - 1
                if rule.get("code"):
                    self.injected[action] = self.injected.get(action, 0) + 1
                return dict(rule)
        return None

    @staticmethod
    def _error(
        environ: Environ, start_response: StartResponse, rule: dict[str, Any]
    ) -> list[bytes]:
        status = int(rule.get("status", 400))
        fields = {
            "code": rule["code"],
            "msg": rule.get("message", rule["code"]),
            "rid": str(uuid.uuid4()),
            "typ": "Receiver" if status >= 500 else "Sender",
        }
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if environ.get("HTTP_X_AMZ_TARGET"):
            body, ctype = JSON_ERROR.format(**fields), "application/x-amz-json-1.1"
        elif "/ec2/aws4_request" in auth:
            body, ctype = EC2_ERROR.format(**fields), "text/xml"
        else:
            body, ctype = QUERY_ERROR.format(**fields), "text/xml"
        data = body.encode()
        start_response(
            f"{status} Injected", [("Content-Type", ctype), ("Content-Length", str(len(data)))]
        )
        return [data]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(("/_fault/", "/_seed/")):
            return self._control(environ, start_response)
        action = self._action(environ)
        rule = self._match(action, self._region(environ)) if action else None
        if rule and rule.get("delay_s"):
            time.sleep(float(rule["delay_s"]))
        if rule and rule.get("code"):
            return self._error(environ, start_response, rule)
        return self.app(environ, start_response)


def release_addresses_on_termination() -> None:
    """EC2 frees a terminated instance's private addresses for the next launch; moto keeps
    them until the instance object is garbage-collected, which its kept reservations never let
    happen, and then fails a launch asking for one (`Exception("IP already in use")`, a 500).
    Burst VMs on Neutron ports launch with addresses Neutron hands out again after a delete."""
    from moto.ec2.models.instances import Instance

    terminate = Instance.terminate

    def terminate_and_release(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = terminate(self, *args, **kwargs)
        if self.subnet_id:
            subnet = self.ec2_backend.get_subnet(self.subnet_id)
            for ip in list(self._private_ips):
                subnet.del_subnet_ip(ip)
        return result

    Instance.terminate = terminate_and_release


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="also write the port here once listening")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    release_addresses_on_termination()
    app = FaultLayer(DomainDispatcherApplication(create_backend_app))
    srv = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = srv.server_address[1]
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(f"{port}\n")
    print(f"MOTO_PORT {port}", flush=True)
    # shutdown() waits for serve_forever() to return, so it must run off the serving thread
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever()
    srv.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
