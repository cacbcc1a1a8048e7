#!/usr/bin/env python3
"""A fanflow coprocess (topics/COPROCESS.md): sums the "value" of each chunk's items.

fanflow run --source range:10000 --chunk-size 10 --coprocess 'python3 examples/coprocess/sum.py'
"""
import json
import sys


def process(chunk):
    items = chunk["data"]["items"]
    if not all(isinstance(i, dict) and isinstance(i.get("value"), (int, float)) for i in items):
        return {"error": "an item has no numeric \"value\""}
    return {"result": sum(i["value"] for i in items)}


# One line in, one line out, flushed: fanflow waits for the reply before it
# sends this copy the next chunk. Diagnostics go to stderr (fanflow logs them).
for line in sys.stdin:
    sys.stdout.write(json.dumps(process(json.loads(line))) + "\n")
    sys.stdout.flush()
