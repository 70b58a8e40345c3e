"""Validates a Slack app manifest (YAML) against Slack's JSON Schema.

Usage: python3 check_manifest.py MANIFEST.yaml SCHEMA.json
Exit 0 when valid; 1 with one line per violation otherwise.
"""
import json
import sys

import jsonschema
import yaml


def main() -> int:
    manifest_path, schema_path = sys.argv[1], sys.argv[2]
    with open(manifest_path, encoding="utf-8") as f:
        manifest = yaml.safe_load(f)
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
    for e in errors:
        print(f"{manifest_path}: {'/'.join(str(p) for p in e.path) or '<root>'}: {e.message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
