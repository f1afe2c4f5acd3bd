"""Validation messages are badged's own words: whatever a card profile holds, no message
carries the model library's wording ("Input should be …", "Field required", …)."""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from badged.config.errors import ConfigError
from badged.config.tree import load_card_profile

LIBRARY_WORDING = re.compile(
    r"input should|should be|should have|field required|valid (dictionary|integer|string|"
    r"number|list|boolean)|instance of|value error|unable to parse|string should|"
    r"extra inputs|union_tag|input tag|literal_error|type=", re.IGNORECASE)

BASE: dict[str, Any] = {
    "technology": "desfire-ev1",
    "csn": {"source": "card_uid", "card_uid_auth": {"aid": "F58840", "key_no": 1}},
    "read_version": False,
    "picc": {"key_type": "aes", "keys": {0: {"file": "picc.key"}}},
    "applications": [
        {"aid": "F58540", "key_type": "aes", "auth": "aes",
         "keys": {1: {"diversify": {"master": {"file": "m.key"},
                                    "input": ["uid", "aid", "4E585020416275"]}}},
         "files": [{"id": 0, "comm": "enciphered", "read_key": 1, "offset": 0,
                    "length": 0, "meaning": "crous_number", "decode": "ascii"}]},
        {"aid": "F58840", "keys": {1: {"credential": "uid-read"}},
         "files": [{"id": 0, "comm": "plain", "read_key": "free", "meaning": "escn"}]},
    ],
}


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*prefix, i))
    return found


PATHS = paths(BASE)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["000000", "F5854", "aes", "free", "uid", "08", "-1"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6) | st.integers(0, 20),
                                                 inner, max_size=3)), max_leaves=6)


def messages(doc: Any) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "profile.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        try:
            load_card_profile(None, str(path))
        except ConfigError as exc:
            return [i.message for i in exc.issues]
        except Exception:  # a key file missing: the model and the rules passed
            return []
    return []


@settings(max_examples=80)
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_no_message_in_the_model_librarys_words(changes: list[tuple[tuple, Any]]) -> None:
    doc = copy.deepcopy(BASE)
    for path, value in changes:
        node = doc
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the parent
    for message in messages(doc):
        assert not LIBRARY_WORDING.search(message), message


def test_each_kind_of_mistake_has_our_words() -> None:
    cases = {
        ("technology",): ("mifare-classic", "must be 'desfire-ev1'"),
        ("csn", "source"): ("serial", "must be 'uid' or 'card_uid'"),
        ("read_version",): ("sometimes", "must be true or false"),
        ("applications", 0, "files", 0, "id"): ("zero", "must be a whole number"),
        ("applications", 0, "files", 0, "offset"): (-1, "must be at least 0"),
        ("applications", 0, "files"): ([], "needs at least 1 item(s)"),
        ("applications", 0, "files", 0, "read_key"): ("open", "must be 'free'"),
        ("applications", 1, "keys", 1, "credential"): ("a b", "must be a credential name"),
        ("applications", 0, "keys", 1, "diversify", "input"): (["nope"], "must be uid, aid"),
        ("csn",): ("uid", "must be a mapping of keys"),
        ("applications",): ({"aid": "F58540"}, "must be a list"),
    }
    for path, (value, expected) in cases.items():
        doc = copy.deepcopy(BASE)
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        found = messages(doc)
        assert any(expected in m for m in found), (path, found)
