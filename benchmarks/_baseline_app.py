"""The floor under benchmarks/server_api.py: uvicorn answering the kiosk's paths, nothing more.

A bare ASGI app (no framework, no database, no middleware) served by uvicorn with
the settings ``consultease server`` uses (httptools, uvloop when installed, no access
log). Each path gets a fixed JSON body: the real server's answer recorded by the
benchmark, so sizes match and the kiosk's ``ApiClient`` validates them as usual.
What the kiosks measure against it is the machine's share of the server's figures:
loopback, scheduling on the shared cores, uvicorn's HTTP parsing and the clients'
own CPU.

    .venv/bin/python benchmarks/_baseline_app.py --port PORT --bodies answers.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPE = (b"content-type", b"application/json")


def make_app(bodies: dict[str, bytes]) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """An ASGI app answering each path in ``bodies`` with its body (POST: 201), else 404."""

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the request body, as any server must before answering
            more = bool((await receive()).get("more_body", False))
        body = bodies.get(scope["path"], b'{"error": "not_found"}')
        status = 404 if scope["path"] not in bodies else 201 if scope["method"] == "POST" else 200
        headers = [JSON_TYPE, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--bodies", type=Path, required=True, help="a JSON object: path -> the answer's JSON"
    )
    args = parser.parse_args()
    answers = json.loads(args.bodies.read_text())
    bodies = {path: json.dumps(value).encode() for path, value in answers.items()}
    uvicorn.run(
        make_app(bodies),
        host="127.0.0.1",
        port=args.port,
        http="httptools",
        access_log=False,
        lifespan="off",  # the app has nothing to start or stop
        log_level="warning",
    )


if __name__ == "__main__":
    main()
