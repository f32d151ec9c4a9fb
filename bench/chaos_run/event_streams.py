"""Each job of the chaos run followed as a user of the HTTP API follows it: its server-sent events
(/v1/jobs/<id>/events), read from the submit until the API ends the stream. A stream that broke off,
or ended on another state than the job's own end, is a broken promise even when the job came out right."""
from __future__ import annotations

import json
import threading
import time

import requests

READ_TIMEOUT_S = 60          # the API pings an idle stream every 15 s


class EventStreams:
    def __init__(self, api_url: str, api_key: str) -> None:
        self.api_url, self.api_key = api_url, api_key
        self.last_state: dict[str, str] = {}     # job id -> the state its last `state` event showed
        self.broken: dict[str, str] = {}         # job id -> how its stream broke off
        self.readers: dict[str, threading.Thread] = {}

    def follow(self, job_id: str) -> None:
        reader = threading.Thread(target=self.read, args=(job_id,), name=f"events-{job_id}", daemon=True)
        self.readers[job_id] = reader
        reader.start()

    def read(self, job_id: str) -> None:
        kind = None
        try:
            with requests.get(f"{self.api_url}/v1/jobs/{job_id}/events", stream=True, timeout=(10, READ_TIMEOUT_S),
                              headers={"Authorization": f"Bearer {self.api_key}"}) as response:
                response.raise_for_status()
                for line in response.iter_lines(decode_unicode=True):
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: ") and kind == "state":
                        self.last_state[job_id] = json.loads(line.removeprefix("data: "))["state"]
        except requests.RequestException as exc:
            self.broken[job_id] = f"{type(exc).__name__}: {exc}"

    def not_followed_to_the_end(self, ends: dict[str, str], wait_s: float = 15) -> dict[str, str]:
        """For each ended job (id -> its final state) whose stream did not end with that state: what
        the stream did. A stream has `wait_s` to deliver an end it may still be sending."""
        deadline = time.monotonic() + wait_s
        for job_id in ends:
            self.readers[job_id].join(max(0.0, deadline - time.monotonic()))
        problems = {}
        for job_id, state in ends.items():
            shown = self.last_state.get(job_id)
            if job_id in self.broken:
                problems[job_id] = f"the event stream broke off after {shown!r} ({self.broken[job_id]})"
            elif self.readers[job_id].is_alive():
                problems[job_id] = f"the event stream is still open at {shown!r}, the job {state}"
            elif shown != state:
                problems[job_id] = f"the event stream ended at {shown!r}, the job {state}"
        return problems
