#!/usr/bin/env python3
"""Checks topics/examples against the JSON Schemas in topics/.

Every examples/<short>/valid/*.json must pass <short>.schema.json; every
examples/<short>/invalid/*.json must fail it, and the failure must concern the
field its <name>.field sidecar names (the field fanflow's C++ decoder names).
A sidecar "malformed JSON" means the file must not parse at all. It also checks
that the six schemas describe the same CloudEvents envelope. Run by
tests/core/event_test.cc, so the schemas and the decoder cannot disagree.

Usage: validate_examples.py [TOPICS_DIR]   (default: this script's folder)
Exit status 0 when everything holds, 1 otherwise (also when no example exists).
Needs the `jsonschema` module (Debian: python3-jsonschema, >= 4.0 for 2020-12).
"""
import json
import pathlib
import sys

import jsonschema

MALFORMED = "malformed JSON"


def error_fields(error):
    """Dotted field paths one schema error is about (for `required`: the missing ones)."""
    base = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        return [".".join(base + [k]) for k in error.validator_value if k not in error.instance]
    return [".".join(base)]


def related(a, b):
    """True when one dotted path is the other or lies inside it ("" is the root)."""
    pa, pb = [p for p in a.split(".") if p], [p for p in b.split(".") if p]
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def all_errors(validator, doc):
    """Every error, including those nested in oneOf / if-then branches."""
    pending, out = list(validator.iter_errors(doc)), []
    while pending:
        e = pending.pop()
        out.append(e)
        pending.extend(e.context or [])
    return out


def without_descriptions(node):
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    return node


def check_envelopes(schemas, failures):
    """The envelope rules (all properties but type and data) must be the same in every schema."""
    def envelope(s):
        props = {k: v for k, v in s["properties"].items() if k not in ("type", "data")}
        return without_descriptions(props), s["required"]
    items = sorted(schemas.items())
    first_name, first = items[0]
    for name, s in items[1:]:
        if envelope(s) != envelope(first):
            failures.append(f"{name}.schema.json: envelope differs from {first_name}.schema.json")


def main():
    topics = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent)
    schemas, failures, counts = {}, [], {"valid": 0, "invalid": 0}
    for path in sorted(topics.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        schemas[path.name[: -len(".schema.json")]] = schema
    if not schemas:
        failures.append(f"no *.schema.json in {topics}")
    else:
        check_envelopes(schemas, failures)

    examples = topics / "examples"
    for folder in sorted(p for p in examples.iterdir() if p.is_dir()) if examples.is_dir() else []:
        if folder.name not in schemas:
            failures.append(f"{folder}: no {folder.name}.schema.json")
            continue
        validator = jsonschema.Draft202012Validator(schemas[folder.name])
        for path in sorted((folder / "valid").glob("*.json")):
            counts["valid"] += 1
            errors = all_errors(validator, json.loads(path.read_text()))
            if errors:
                failures.append(f"{path}: valid example fails its schema: {errors[-1].message}")
        for path in sorted((folder / "invalid").glob("*.json")):
            counts["invalid"] += 1
            sidecar = path.with_suffix(".field")
            if not sidecar.is_file():
                failures.append(f"{path}: no {sidecar.name}")
                continue
            field = sidecar.read_text().strip()
            try:
                doc = json.loads(path.read_text())
            except json.JSONDecodeError:
                if field != MALFORMED:
                    failures.append(f"{path}: does not parse but {sidecar.name} says {field!r}")
                continue
            if field == MALFORMED:
                failures.append(f"{path}: {sidecar.name} says {MALFORMED!r} but the file parses")
                continue
            errors = list(validator.iter_errors(doc))
            if not errors:
                failures.append(f"{path}: invalid example passes its schema")
            elif not any(related(f, field) for e in all_errors(validator, doc)
                         for f in error_fields(e)):
                got = "; ".join(e.message for e in errors)
                failures.append(f"{path}: the schema rejects it, but not at {field}: {got}")

    if counts["valid"] == 0 or counts["invalid"] == 0:
        failures.append(f"found {counts['valid']} valid and {counts['invalid']} invalid examples "
                        f"under {examples}; expected some of each")
    for f in failures:
        print("FAIL", f)
    print(f"{counts['valid']} valid and {counts['invalid']} invalid examples checked against "
          f"{len(schemas)} schemas: {'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
