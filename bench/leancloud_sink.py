"""View objects written per second through the leancloud sink, against a plain httpx loop
writing the same objects to the same LeanCloud double.

    uv run --all-packages python bench/leancloud_sink.py --views 2000 --batch 200 --rounds 3

Both sides write ``--views`` view objects (data, key fields, key and version) into a class
of their own on one ``LeanCloudDouble`` (a local double of LeanCloud's REST API on
127.0.0.1; no LeanCloud server runs here), first creating them, then updating them once
per round. The sink takes ``--batch`` updates at a time: one query of their keys, then
conditional writes in ``/1.1/batch`` calls of 50. The baseline is what a hand-written
loop does: one signed ``POST`` per new object (remembering its objectId), one ``PUT`` per
update, unconditional, over one pooled httpx client. The RESULT compares the
medians of the update rounds; the create round is printed above it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import statistics
import time
from typing import Any

import httpx

from onto_core.protocols import Message, RuntimeContext
from onto_leancloud import LeanCloudSink
from onto_leancloud.double import LeanCloudDouble


def update(n: int, version: int) -> Message:
    key = f"meeting-{n % 97}/user-{n}"
    value = {
        "view": "meeting_session",
        "key": key,
        "fields": {"meeting_id": f"meeting-{n % 97}", "user_id": f"user-{n}"},
        "version": version,
        "removed": False,
        "data": {"attending": version % 2 == 0, "hearingAids": version, "location": "Hall"},
    }
    return Message(value, key=key)


def run_sink(double: LeanCloudDouble, views: int, batch: int, rounds: int) -> list[float]:
    double.unique("SinkViews", "viewKey")
    sink = LeanCloudSink(
        LeanCloudSink.Config(
            class_name="SinkViews",
            server_url=double.url,
            app_id=double.app_id,
            master_key=double.master_key,  # type: ignore[arg-type]
        )
    )
    ctx = RuntimeContext("bench", "sink", logging.getLogger("bench"))
    times: list[float] = []

    async def go() -> None:
        await sink.start(ctx)
        for version in range(1, rounds + 2):
            started = time.perf_counter()
            for start in range(0, views, batch):
                await sink.write(
                    [update(n, version) for n in range(start, min(views, start + batch))]
                )
            times.append(time.perf_counter() - started)
        await sink.close()

    asyncio.run(go())
    return times


def run_baseline(double: LeanCloudDouble, views: int, rounds: int) -> list[float]:
    def headers() -> dict[str, str]:
        stamp = str(int(time.time() * 1000))
        sign = hashlib.md5((stamp + double.master_key).encode()).hexdigest()
        return {"X-LC-Id": double.app_id, "X-LC-Sign": f"{sign},{stamp},master"}

    ids: dict[str, str] = {}
    times: list[float] = []
    with httpx.Client(base_url=f"{double.url}/1.1") as http:
        for version in range(1, rounds + 2):
            started = time.perf_counter()
            for n in range(views):
                value: dict[str, Any] = update(n, version).value
                body = {
                    **value["fields"],
                    **value["data"],
                    "viewKey": value["key"],
                    "viewVersion": version,
                }
                if value["key"] in ids:
                    http.put(
                        f"/classes/BaseViews/{ids[value['key']]}", json=body, headers=headers()
                    ).raise_for_status()
                else:
                    answer = http.post("/classes/BaseViews", json=body, headers=headers())
                    ids[value["key"]] = answer.raise_for_status().json()["objectId"]
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with LeanCloudDouble() as double:
        sink = run_sink(double, args.views, args.batch, args.rounds)
        base = run_baseline(double, args.views, args.rounds)
    # The first round creates, the others update: the figures are the update rounds' medians.
    o = args.views / statistics.median(sink[1:])
    p = args.views / statistics.median(base[1:])
    print(f"create round: onto {args.views / sink[0]:.0f}/s, baseline {args.views / base[0]:.0f}/s")
    print(f"RESULT leancloud_sink onto={o:.0f}/s baseline={p:.0f}/s ratio={o / p:.2f} target=>=1.0")


if __name__ == "__main__":
    main()
