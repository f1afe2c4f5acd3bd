"""The native DESFire EV1 commands the simulated card answers, one function each.

Each takes the card's state and the command's data and returns a `Reply` (plain data;
the engine in `card.py` applies secure messaging and framing) or raises `Status`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from badged.cards.desfire.aid import PICC_AID, aid_from_wire
from badged.cards.desfire.commands import AUTH_KEY_TYPES
from badged.cards.desfire.crypto import cbc_encipher_receive
from badged.cards.desfire.info import ACCESS_FREE, ACCESS_NEVER, AuthMode, CommMode, FileSettings
from badged.cards.desfire.keys import KeyType, session_key
from badged.cards.desfire.session import Ev1Messaging, LegacyMessaging
from badged.cards.simulator.state import CardState, Reply, Status, expect_length

Command = Callable[[CardState, bytes], Reply]

AUTH_MODES = {0x0A: AuthMode.LEGACY, 0x1A: AuthMode.ISO, 0xAA: AuthMode.AES}
# Commands that end the session themselves, so are not fed to its CMAC chain.
SESSION_ENDERS = frozenset({0x0A, 0x1A, 0xAA, 0x5A})
_KEY_TYPE_FLAGS = {KeyType.AES: 0x80, KeyType.TDES_3K: 0x40}


def _rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


def authenticate(state: CardState, data: bytes, *, mode: AuthMode) -> Reply:
    """First half of a mutual authentication; the second arrives in the AF frame."""
    state.session = None
    expect_length(data, 1)
    keys = state.keys()
    key_no = data[0]
    if key_no >= len(keys):
        raise Status(0x40)
    key = keys[key_no]
    if key.type not in AUTH_KEY_TYPES[mode]:
        raise Status(0xAE)
    legacy = mode is AuthMode.LEGACY
    bs, rnd_len = key.block_size, key.type.rnd_length
    rnd_b = state.rng(rnd_len)
    ek_rnd_b = key.cbc_encrypt(bytes(bs), rnd_b)

    def finish(token: bytes) -> bytes:
        if len(token) != 2 * rnd_len:
            return state.fail(0x7E)
        if legacy:
            plain = cbc_encipher_receive(key.data, token, aes=False)
        else:
            plain = key.cbc_decrypt(ek_rnd_b[-bs:], token)
        rnd_a = plain[:rnd_len]
        if plain[rnd_len:] != _rotl(rnd_b):
            return state.fail(0xAE)
        answer = key.cbc_encrypt(bytes(bs) if legacy else token[-bs:], _rotl(rnd_a))
        sk = session_key(key, rnd_a, rnd_b)
        state.session = LegacyMessaging(key_no, sk) if legacy else Ev1Messaging(key_no, sk)
        return answer + b"\x91\x00"

    state.pending = finish
    return Reply(ek_rnd_b, status=0xAF)


def get_version(state: CardState, data: bytes) -> Reply:
    expect_length(data, 0)
    spec = state.spec
    v = spec.version
    uid = bytes(7) if spec.random_uid else spec.uid
    return Reply(v.hardware + v.software + uid + v.batch + v.production, split=(7, 7))


def get_application_ids(state: CardState, data: bytes) -> Reply:
    expect_length(data, 0)
    if state.app is not None:
        raise Status(0x9D)
    state.require_listing()
    return Reply(b"".join(a.aid.to_bytes(3, "little") for a in state.spec.applications))


def select_application(state: CardState, data: bytes) -> Reply:
    state.session = None
    expect_length(data, 3)
    aid = aid_from_wire(data)
    if aid == PICC_AID:
        state.app = None
        return Reply()
    app = state.spec.application(aid)
    if app is None:
        raise Status(0xA0)
    state.app = app
    return Reply()


def free_memory(state: CardState, data: bytes) -> Reply:
    expect_length(data, 0)
    return Reply(state.spec.computed_free_memory.to_bytes(3, "little"))


def get_card_uid(state: CardState, data: bytes) -> Reply:
    expect_length(data, 0)
    if state.session is None:
        raise Status(0xAE)
    return Reply(state.spec.uid, comm=CommMode.ENCIPHERED)


def get_key_settings(state: CardState, data: bytes) -> Reply:
    expect_length(data, 0)
    state.require_listing()
    if state.app is None:
        spec = state.spec
        settings, count, kt = spec.picc_key_settings, 1, spec.picc_key.type
    else:
        settings, count, kt = state.app.key_settings, len(state.app.keys), state.app.key_type
    return Reply(bytes([settings, count | _KEY_TYPE_FLAGS.get(kt, 0)]))


def get_key_version(state: CardState, data: bytes) -> Reply:
    expect_length(data, 1)
    keys = state.keys()
    if data[0] >= len(keys):
        raise Status(0x40)
    return Reply(bytes([keys[data[0]].key_version]))


def get_file_ids(state: CardState, data: bytes) -> Reply:
    expect_length(data, 0)
    app = state.app_or(0x9D)
    state.require_listing()
    return Reply(bytes(f.file_no for f in app.files))


def get_file_settings(state: CardState, data: bytes) -> Reply:
    expect_length(data, 1)
    app = state.app_or(0x9D)
    f = app.file(data[0])
    if f is None:
        raise Status(0xF0)
    state.require_listing()
    return Reply(FileSettings.data_file_wire(f.comm, f.access, len(f.data)))


def read_data(state: CardState, data: bytes) -> Reply:
    expect_length(data, 7)
    app = state.app_or(0xF0)
    f = app.file(data[0])
    if f is None:
        raise Status(0xF0)
    rights = (f.access.read, f.access.read_write)
    session = state.session
    if ACCESS_FREE in rights:
        comm = CommMode.PLAIN  # free access is always plain on a real card
    elif session is not None and session.key_no in rights:
        comm = f.comm
    elif all(r == ACCESS_NEVER for r in rights):
        raise Status(0x9D)
    else:
        raise Status(0xAE)
    offset = int.from_bytes(data[1:4], "little")
    length = int.from_bytes(data[4:7], "little")
    size = len(f.data)
    if offset >= size or offset + length > size:
        raise Status(0xBE)
    end = offset + length if length else size
    return Reply(f.data[offset:end], comm=comm)


# Every command but AF (the engine's chaining), by instruction byte.
COMMANDS: dict[int, Command] = {
    **{ins: partial(authenticate, mode=mode) for ins, mode in AUTH_MODES.items()},
    0x60: get_version,
    0x6A: get_application_ids,
    0x5A: select_application,
    0x6E: free_memory,
    0x51: get_card_uid,
    0x45: get_key_settings,
    0x64: get_key_version,
    0x6F: get_file_ids,
    0xF5: get_file_settings,
    0xBD: read_data,
}
