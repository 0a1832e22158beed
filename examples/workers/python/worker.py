#!/usr/bin/env python3
"""A taskerd remote worker in Python, standard library only.

It serves the queue remote:refund_policy, deciding how much of a refund
request is approved:

    TASKER_URL=http://localhost:8080 python3 examples/workers/python/worker.py

It long-polls for steps, heartbeats once before working (a real worker
heartbeats every third of its lease while it works), then reports the
outcome with the step's attempt as the fencing token. SIGTERM or Ctrl-C
stops it after the step in hand.
"""
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ.get("TASKER_URL", "http://localhost:8080").rstrip("/") + "/tasker"
WORKER_ID = os.environ.get("WORKER_ID") or f"{socket.gethostname()}-py-{os.getpid()}"
QUEUE = "remote:refund_policy"
MAX_AUTOMATIC_CENTS = 100_000
stopping = False


def call(path, body):
    """POSTs JSON; returns (status, decoded answer)."""
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:  # 409 stale/cancelled, 422 invalid, …
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, {}


def check_refund_policy(step):
    """Returns (results, None) or (None, (message, retryable))."""
    task = step["context"]
    amount = task.get("amount_cents", 0)
    ticket = step["parent_results"].get("validate_refund_request") or {}
    if amount <= 0:
        return None, ("amount_cents must be above zero", False)
    if amount > MAX_AUTOMATIC_CENTS:
        return None, (f"{amount} cents needs a person's approval", False)
    return {"approved": True, "approved_amount_cents": amount, "payment_id": ticket.get("payment_id"),
            "policy": "standard-" + task.get("customer_tier", ""), "worker": "python"}, None


def handle(step):
    sid, attempt = step["step_id"], step["attempt"]
    status, answer = call(f"/steps/{sid}/heartbeat", {"attempt": attempt})
    if status == 409:  # cancelled, or no longer ours: drop it
        print(f"step {sid} dropped: {answer.get('detail')}", file=sys.stderr)
        return
    results, failure = check_refund_policy(step)
    if failure is None:
        status, answer = call(f"/steps/{sid}/complete", {"attempt": attempt, "results": results})
    else:
        message, retryable = failure
        status, answer = call(f"/steps/{sid}/fail", {"attempt": attempt, "error": message, "retryable": retryable})
    print(f"step {sid} attempt {attempt}: {status} {answer.get('status') or answer.get('detail')}", file=sys.stderr)


def main():
    def stop(*_):
        global stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker {WORKER_ID} serving {QUEUE} at {BASE}", file=sys.stderr)
    while not stopping:
        try:
            status, answer = call("/workers/claim", {"worker_id": WORKER_ID, "handlers": [QUEUE],
                                                      "max": 1, "wait_seconds": 2, "lease_seconds": 30})
        except (urllib.error.URLError, ConnectionError, OSError) as err:
            print(f"claim failed: {err}", file=sys.stderr)
            time.sleep(1)
            continue
        if status >= 500:  # the server is restarting: try again soon
            time.sleep(1)
            continue
        if status != 200:
            print(f"claim refused: {status} {answer}", file=sys.stderr)
            return 1
        for step in answer["steps"]:
            handle(step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
