#!/usr/bin/env python3
"""Checks sluice's OpenAPI document and live responses against it.

Usage: openapi_check.py DOCUMENT.json SAMPLES.json

1. Validates DOCUMENT with openapi-spec-validator (OpenAPI 3.1).
2. For each sample {"verb", "path" (the documented template), "status", "content_type",
   "body"}, requires that the operation documents that status and, for a JSON answer,
   that the body validates (JSON Schema 2020-12, references resolved inside DOCUMENT)
   against the schema documented for it.
Prints one line per failure and exits 1 if there was any.
"""
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def main() -> int:
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    with open(sys.argv[2]) as f:
        samples = json.load(f)
    validate(doc)
    failures = []
    for s in samples:
        where = f'{s["verb"].upper()} {s["path"]} -> {s["status"]}'
        op = doc["paths"].get(s["path"], {}).get(s["verb"])
        if op is None:
            failures.append(f"{where}: operation not documented")
            continue
        resp = op["responses"].get(str(s["status"]))
        if resp is None:
            failures.append(f"{where}: status not documented (documented: {sorted(op['responses'])})")
            continue
        content = resp.get("content", {})
        if "application/json" not in content:
            if s["content_type"].startswith("application/json"):
                failures.append(f"{where}: answered JSON, documented {sorted(content)}")
            continue
        if not s["content_type"].startswith("application/json"):
            failures.append(f"{where}: answered {s['content_type']!r}, documented JSON")
            continue
        schema = dict(content["application/json"]["schema"])
        schema["components"] = doc["components"]
        errors = sorted(Draft202012Validator(schema).iter_errors(s["body"]), key=str)
        for e in errors[:5]:
            path = "/".join(str(p) for p in e.absolute_path)
            failures.append(f"{where}: at /{path}: {e.message[:300]}")
    for line in failures:
        print(line)
    print(f"openapi_check: document valid; {len(samples)} responses checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
