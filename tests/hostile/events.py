"""CloudEvents as a foreign client writes them (topics/*.schema.json), and
unique names so no case meets another's batch."""

import json
import random


def uniq(stem):
    return "h-%s-%09d" % (stem, random.randrange(10**9))


def event(short, subject, data, id=None, correlationid=None):
    return {"specversion": "1.0", "id": id or subject + "/start", "source": "urn:example:hostile",
            "type": "fanflow.%s.v1" % short, "subject": subject,
            "correlationid": correlationid or subject, "data": data}


def encode(e):
    return json.dumps(e, separators=(",", ":")).encode()


def start_fanout(subject, source, chunk_size=100, id=None, **data):
    d = {"source": source, "chunk_size": chunk_size}
    d.update(data)
    return event("start_fanout", subject, d, id=id or subject + "/start")


def chunk_done(subject, index, result=0, items=100, status="succeeded", **data):
    d = {"chunk_index": index, "status": status, "items": items, "attempts": 1, "result": result}
    d.update(data)
    return event("chunk_done", subject, d, id="%s/done/%s" % (subject, index))


def process_chunk_ref(subject, path, offset=0, length=10, index=0):
    return event("process_chunk", subject,
                 {"chunk_index": index, "first_item": 0, "item_count": 1,
                  "ref": {"path": path, "offset": offset, "length": length}},
                 id="%s/chunk/%d" % (subject, index))
