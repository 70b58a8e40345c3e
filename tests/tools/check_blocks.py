"""Validates rendered Slack messages with the official slack_sdk models.

Usage: python3 check_blocks.py MESSAGES.json
MESSAGES.json is a list of {"name": ..., "text": ..., "blocks": [...]} for
messages and {"name": ..., "view": {...}} for modals and App Home tabs.
Each block is parsed with slack_sdk's Block Kit models and checked with
their validate_json(), which enforces Slack's documented limits (text
lengths, element counts, id lengths); views are checked with
View(**view).validate_json() (title length, block count, metadata size) and
then block by block. Exit 1 naming each failing message or view.
"""
import json
import sys

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View


def check_view(m) -> int:
    try:
        view = View(**m["view"])
        view.validate_json()
        if len(view.blocks) != len(m["view"].get("blocks", [])):
            raise ValueError("some blocks were not recognised")
        for i, block in enumerate(view.blocks):
            try:
                block.validate_json()
            except Exception as e:  # noqa: BLE001 - report every failure
                print(f"{m['name']}: block {i} ({block.type}): {e}")
                return 1
    except Exception as e:  # noqa: BLE001 - report every failure
        print(f"{m['name']}: {e}")
        return 1
    return 0


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        messages = json.load(f)
    failures = 0
    for m in messages:
        if "view" in m:
            failures += check_view(m)
            continue
        if not m.get("text"):
            print(f"{m['name']}: no plain-text fallback")
            failures += 1
        if len(m.get("blocks", [])) > 50:
            print(f"{m['name']}: more than 50 blocks")
            failures += 1
        for i, raw in enumerate(m.get("blocks", [])):
            try:
                block = Block.parse(raw)
                if block is None:
                    raise ValueError(f"unknown block type {raw.get('type')!r}")
                block.validate_json()
            except Exception as e:  # noqa: BLE001 - report every failure
                print(f"{m['name']}: block {i} ({raw.get('type')}): {e}")
                failures += 1
    print(f"{len(messages)} messages checked, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
