"""Submits N external jobs with the Python client (clients/python), as the agreed API has it:
    raftline.Client(addrs, token=...).submit(queue, payload=...) -> id
Usage: python py_submit.py <queue> <count>
Env: RAFTLINE_ADDRS (comma-separated), RAFTLINE_TOKEN. Prints one JSON line at the end:
{"ids": [...]}; progress lines "submitted N" go to stderr.
"""
import json
import os
import sys
import threading

import raftline


def main() -> None:
    queue, count = sys.argv[1], int(sys.argv[2])
    addrs = os.environ["RAFTLINE_ADDRS"].split(",")
    client = raftline.Client(addrs, token=os.environ["RAFTLINE_TOKEN"])
    ids = [None] * count
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "error": None}

    def lane() -> None:
        while True:
            with lock:
                if state["next"] >= count or state["error"]:
                    return
                i = state["next"]
                state["next"] += 1
            try:
                ids[i] = client.submit(queue, payload=f"job-{i}".encode())
            except BaseException as e:  # noqa: BLE001 - reported below
                with lock:
                    state["error"] = e
                return
            with lock:
                state["done"] += 1
                if state["done"] % 100 == 0:
                    print(f"submitted {state['done']}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=lane) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"] is not None:
        raise state["error"]
    close = getattr(client, "close", None)
    if close:
        close()
    print(json.dumps({"ids": ids}), flush=True)


if __name__ == "__main__":
    main()
