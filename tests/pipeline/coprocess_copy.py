#!/usr/bin/env python3
"""A --coprocess for tests/pipeline/coprocess_test.cc: speaks topics/COPROCESS.md
and records itself. Usage: coprocess_copy.py DIR MODE

On start it writes its pid to DIR/pids/<pid>. Before each reply it counts the
copies alive (pid files of processes that are neither gone nor zombies) and
appends "alive N" to DIR/alive. Modes:
  sum         reply {"result": sum of the values}, after 30 ms
  crash-once  the first copy (DIR/crashed absent) says so on stderr and exits 3
              after reading its first chunk; later copies sum
  bad         reply a line that is not a reply
  chatty      a line on stderr per chunk, then sum
  hang        never reply
  flood       17 MiB on stdout without a newline
  error       reply {"error": "no luck with chunk N"}
"""
import json
import os
import sys
import time

directory, mode = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(directory, "pids"), exist_ok=True)
with open(os.path.join(directory, "pids", str(os.getpid())), "w"):
    pass


def alive():
    n = 0
    for name in os.listdir(os.path.join(directory, "pids")):
        try:
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        n += state != "Z"
    return n


def reply(obj):
    with open(os.path.join(directory, "alive"), "a") as f:
        f.write(f"alive {alive()}\n")
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    chunk = json.loads(line)
    index = chunk["data"]["chunk_index"]
    total = sum(i["value"] for i in chunk["data"]["items"])
    if mode == "crash-once" and not os.path.exists(os.path.join(directory, "crashed")):
        open(os.path.join(directory, "crashed"), "w").close()
        sys.stderr.write(f"dying on purpose in chunk {index}\n")
        sys.stderr.flush()
        sys.exit(3)
    if mode == "bad":
        sys.stdout.write('{"resutl": 1}\n')
        sys.stdout.flush()
        continue
    if mode == "hang":
        time.sleep(3600)
    if mode == "flood":
        block = "x" * (1 << 20)
        for _ in range(17):
            sys.stdout.write(block)
        sys.stdout.flush()
        time.sleep(3600)
    if mode == "error":
        reply({"error": f"no luck with chunk {index}"})
        continue
    if mode == "chatty":
        sys.stderr.write(f"working on chunk {index}\n")
        sys.stderr.flush()
    time.sleep(0.03)
    reply({"result": total})
