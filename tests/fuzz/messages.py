"""Hostile SQS messages for the worker fuzzer: seeded, so a failing run can be replayed.

A ``Generator`` turns a seed into ``Case``s: one SQS message each (body, attributes, S3
objects it points to), what it must end as, and a ``kind`` naming the one thing broken in it.
Valid task messages are cloned from templates received from the wire (what ``app.send_task``
sends through kombu's SQS transport: base64 of a JSON envelope whose ``body`` is base64 of the
task body), then one field at a time is broken: the raw body, the envelope, a header, the task
body, a claim-check pointer, the message attributes, the size.

Every message carries a token, ``fz<32 hex>``, in its arguments and the UUID spelling of the
same hex as its task id, so a run of the fuzz task names the message that caused it.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Case", "Generator", "S3Object", "SQS_MAX_BYTES", "uuid_of", "KINDS"]

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SQS_MAX_BYTES = 1_048_576
FUZZ_TASK = "fuzz.record"
OTHER_TASK = "fuzz.record_other"
#: Reasons a message that is not a task (or not ours to run) may be dead-lettered with.
POISON = frozenset({"poison"})
SIGNATURE = frozenset({"signature"})
#: A JPEG's first bytes: the "binary object" a pointer may point at.
JPEG = bytes.fromhex("ffd8ffe000104a46494600010101004800480000ffdb004300")


@dataclass
class S3Object:
    """An object a case puts in S3 before its message is sent."""

    bucket: str
    key: str
    data: bytes
    #: It must still exist when the run ends (a pointer the worker must refuse, not delete).
    keep: bool = False


@dataclass
class Case:
    """One generated SQS message and what it must end as."""

    kind: str
    token: str
    body: str
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``run`` (exactly once, no dead letter), ``dead`` (a dead letter with a reason, never
    #: run), ``either`` (one of the two, exactly once).
    expect: str = "dead"
    #: Dead-letter reasons accepted (None: any reason).
    reasons: frozenset[str] | None = None
    objects: list[S3Object] = field(default_factory=list)
    #: Sent again, unchanged, once the first copy has run: the copy must be a no-op.
    duplicate: bool = False
    note: str = ""

    @property
    def size(self) -> int:
        return len(self.body.encode()) + sum(
            len(name) + len(a["DataType"]) + len(a.get("StringValue", a.get("BinaryValue", b"")))
            for name, a in self.attributes.items()
        )


def uuid_of(token: str) -> str:
    """The UUID spelling of a 32-hex token (the task id of its message)."""
    return str(uuid.UUID(token))


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# -- random values --------------------------------------------------------------------------------

#: Code points SQS accepts in a message body (https://docs.aws.amazon.com/AWSSimpleQueueService/
#: latest/APIReference/API_SendMessage.html): tab, LF, CR, and #x20 up, surrogates excluded.
_TEXT_RANGES = [(0x20, 0x7E), (0xA0, 0x2FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F6FF)]


def _text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.6:
            out.append(rng.choice(string.printable[:-2]))
        elif roll < 0.65:
            out.append(rng.choice("\t\n\r\u2028\u0085\ufeff\ufffd\\\"'"))
        else:
            low, high = rng.choice(_TEXT_RANGES)
            out.append(chr(rng.randint(low, high)))
    return "".join(out)


def _latin1(data: bytes) -> str:
    """Bytes as a string SQS accepts: each byte one code point (moto also takes NUL)."""
    return data.decode("latin-1")


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random() if depth < 4 else rng.random() * 0.7
    if roll < 0.1:
        return None
    if roll < 0.2:
        return rng.choice([True, False])
    if roll < 0.35:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, rng.randint(-(10**9), 10**9)])
    if roll < 0.45:
        return rng.choice([0.0, -0.0, 1e308, -1e-308, rng.uniform(-1e6, 1e6)])
    if roll < 0.7:
        return _text(rng, rng.randint(0, 40))
    if roll < 0.85:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {
        _text(rng, rng.randint(0, 12)): _json_value(rng, depth + 1)
        for _ in range(rng.randint(0, 5))
    }


def _garbage(rng: random.Random) -> Any:
    """A value of a wrong type for almost any field."""
    return rng.choice(
        [None, 0, -1, 10**30, 1.5, "", "garbage", [], [1, 2], {}, {"a": 1}, True, _json_value(rng)]
    )


# -- the generator --------------------------------------------------------------------------------


class Generator:
    """Seeded hostile-message generator.

    ``templates`` holds envelopes received from the wire: ``proto2`` and ``proto1`` (as
    ``app.send_task`` sends them with task protocol 2 and 1). ``signed`` holds (token, envelope)
    pairs received from a signing producer (the fuzz task, the token in its arguments and id);
    with them the generator also makes signed cases, and every unsigned message must die.
    """

    def __init__(
        self,
        seed: int,
        templates: dict[str, dict[str, Any]],
        bucket: str,
        foreign_bucket: str,
        claim_check_max_bytes: int,
        signed: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.templates = templates
        self.bucket, self.foreign_bucket = bucket, foreign_bucket
        self.max_object = claim_check_max_bytes
        self.signed = list(signed or [])
        self.signing = signed is not None
        self._bodies: set[str] = set()

    # -- tokens and task envelopes ---------------------------------------------------------------
    def token(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def task_message(
        self, token: str, protocol: str = "proto2", pad: int = 0
    ) -> tuple[dict[str, Any], Any]:
        """A valid envelope of the fuzz task for ``token`` and its (Python) task body."""
        env = copy.deepcopy(self.templates[protocol])
        tid = uuid_of(token)
        args: list[Any] = [f"fz{token}"]
        kwargs: dict[str, Any] = {"pad": "x" * pad} if pad else {}
        env["properties"]["correlation_id"] = tid
        env["properties"]["delivery_tag"] = str(uuid.UUID(int=self.rng.getrandbits(128)))
        if protocol == "proto2":
            env["headers"].update(
                task=FUZZ_TASK,
                id=tid,
                root_id=tid,
                argsrepr=repr(args),
                kwargsrepr="{'pad': ...}" if pad else "{}",
            )
            embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
            return env, [args, kwargs, embed]
        body = json.loads(base64.b64decode(env["body"]))
        body.update(task=FUZZ_TASK, id=tid, args=args, kwargs=kwargs)
        return env, body

    @staticmethod
    def encode(env: dict[str, Any], body: Any, *, b64_body: bool = True) -> dict[str, Any]:
        """``env`` with ``body`` serialized the way kombu does (JSON, base64 by default)."""
        env = dict(env)
        text = json.dumps(body)
        env["body"] = _b64(text) if b64_body else text
        if not b64_body:
            env["properties"] = {**env["properties"]}
            env["properties"].pop("body_encoding", None)
        return env

    @staticmethod
    def wire(env: Any, *, b64: bool = True) -> str:
        """The SQS body kombu's SQS transport sends: base64 of the JSON envelope."""
        text = json.dumps(env)
        return _b64(text) if b64 else text

    def control(self, token: str, protocol: str = "proto2", pad: int = 0) -> str:
        env, body = self.task_message(token, protocol, pad)
        return self.wire(self.encode(env, body))

    # -- cases -----------------------------------------------------------------------------------
    def cases(self, n: int, only: list[str] | None = None) -> Iterator[Case]:
        """``n`` cases: every kind once (shuffled), then kinds drawn by weight.

        ``only`` limits the kinds to those whose name starts with one of its entries.
        """
        kinds = list(KINDS)
        if self.signing:
            kinds += list(SIGNED_KINDS)
        if only:
            kinds = [k for k in kinds if k.startswith(tuple(only))]
        first = kinds[:]
        self.rng.shuffle(first)
        weights = [ALL_KINDS[k][0] for k in kinds]
        made = 0
        while made < n:
            kind = first.pop() if first else self.rng.choices(kinds, weights)[0]
            case = self.make(kind)
            if case is not None:
                made += 1
                yield case

    def make(self, kind: str) -> Case | None:
        """One case of ``kind`` with a body never generated before (None if none is left)."""
        _, build = ALL_KINDS[kind]
        for _ in range(20):
            token = self.token()
            case = build(self, token)
            if case is None:
                return None
            case.kind, case.token = kind, case.token or token
            if case.body in self._bodies:
                continue
            self._bodies.add(case.body)
            if self.signing and not kind.startswith("signed."):
                # Nothing unsigned may run once signing is on (forged: any reason will do).
                # An unsigned body fails the signature check, or is poison before it gets there.
                case.reasons = SIGNATURE | POISON if case.reasons else None
                case.expect, case.duplicate = "dead", False
            return case
        return None


# -- builders: each returns a Case (kind and token are filled in by Generator.make) ---------------
Builder = Callable[[Generator, str], Case | None]
_KINDS: dict[str, tuple[float, Builder]] = {}


def kind(name: str, weight: float = 1.0, registry: dict[str, tuple[float, Builder]] | None = None):
    def register(build: Builder) -> Builder:
        (registry if registry is not None else _KINDS)[name] = (weight, build)
        return build

    return register


def _case(
    body: str, expect: str = "dead", reasons: frozenset[str] | None = None, **kw: Any
) -> Case:
    return Case(kind="", token="", body=body, expect=expect, reasons=reasons, **kw)


# valid messages: must run exactly once -----------------------------------------------------------


@kind("control.proto2", 12)
def _control(g: Generator, t: str) -> Case:
    return _case(g.control(t), "run")


@kind("control.slow", 4)
def _control_slow(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    body[1]["fuzz_sleep"] = round(g.rng.uniform(0.2, 1.0), 2)
    return _case(g.wire(g.encode(env, body)), "run", note=f"sleeps {body[1]['fuzz_sleep']}s")


@kind("control.proto1", 2)
def _control_proto1(g: Generator, t: str) -> Case:
    return _case(g.control(t, "proto1"), "run")


@kind("control.envelope_not_base64", 2)
def _control_raw_envelope(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    return _case(g.wire(g.encode(env, body), b64=False), "run")


@kind("control.body_not_base64", 2)
def _control_raw_body(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    return _case(g.wire(g.encode(env, body, b64_body=False)), "run")


@kind("control.unicode_args", 2)
def _control_unicode(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    body[0].append(_text(g.rng, 200))
    body[1]["note"] = _json_value(g.rng)
    return _case(g.wire(g.encode(env, body)), "run")


@kind("control.extra_headers", 1)
def _control_extra_headers(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    env["headers"][_text(g.rng, 8)] = _json_value(g.rng)
    return _case(g.wire(g.encode(env, body)), "run")


@kind("control.eta_past", 1)
def _control_eta_past(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    env["headers"]["eta"] = "2020-01-01T00:00:00+00:00"
    return _case(g.wire(g.encode(env, body)), "run")


@kind("control.eta_soon", 1)
def _control_eta_soon(g: Generator, t: str) -> Case:
    import datetime as dt

    env, body = g.task_message(t)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    env["headers"]["eta"] = soon.isoformat()
    return _case(g.wire(g.encode(env, body)), "run")


@kind("control.retries", 1)
def _control_retries(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    env["headers"]["retries"] = g.rng.randint(1, 5)
    return _case(g.wire(g.encode(env, body)), "run")


@kind("control.attributes", 2)
def _control_attributes(g: Generator, t: str) -> Case:
    attributes: dict[str, dict[str, Any]] = {}
    for i in range(g.rng.randint(1, 10)):
        name = f"a{i}-" + "".join(
            g.rng.choices(string.ascii_letters + "_-.", k=g.rng.randint(1, 40))
        )
        name = name.replace("..", "._").rstrip(".")
        roll = g.rng.random()
        if roll < 0.4:
            attributes[name] = {"DataType": "String", "StringValue": _text(g.rng, 50) or "x"}
        elif roll < 0.7:
            attributes[name] = {"DataType": "Number", "StringValue": str(g.rng.randint(-9, 10**9))}
        else:
            data = g.rng.randbytes(g.rng.randint(1, 2000))
            attributes[name] = {"DataType": "Binary", "BinaryValue": data}
    return _case(g.control(t), "run", attributes=attributes)


@kind("control.spoofed_reason_attributes", 1)
def _control_spoofed(g: Generator, t: str) -> Case:
    attributes = {
        "taskapp.reason": {"DataType": "String", "StringValue": "poison"},
        "taskapp.attempts": {"DataType": "Number", "StringValue": "99"},
        "ExtendedPayloadSize": {"DataType": "Number", "StringValue": "12"},
    }
    return _case(g.control(t), "run", attributes=attributes)


@kind("control.at_1mib", 0.3)
def _control_1mib(g: Generator, t: str) -> Case:
    base = len(g.control(t, pad=1).encode())
    # base64 grows 3 bytes into 4, twice (task body, then envelope): solve for the pad length.
    pad = 1 + (SQS_MAX_BYTES - base) * 9 // 16
    body = g.control(t, pad=pad)
    while len(body.encode()) > SQS_MAX_BYTES:
        pad -= 1
        body = g.control(t, pad=pad)
    # Fill the last few bytes with an attribute so the message is exactly 1 MiB.
    room = SQS_MAX_BYTES - len(body.encode()) - len("f") - len("String")
    attributes = {"f": {"DataType": "String", "StringValue": "x" * room}} if room > 0 else {}
    return _case(body, "run", attributes=attributes)


def _offloaded(g: Generator, body: str, expect: str = "run", **kw: Any) -> Case:
    """``body`` claim-checked the way our producers do it (``taskapp.sqs.claimcheck``)."""
    from taskapp.sqs.claimcheck import offloader

    puts: list[dict[str, Any]] = []

    class _Capture:
        def put_object(self, **params: Any) -> None:
            puts.append(params)

    params: dict[str, Any] = {"MessageBody": body, "MessageAttributes": {}}
    offloader(_Capture, g.bucket, 1)(params)
    (put,) = puts
    obj = S3Object(put["Bucket"], put["Key"], put["Body"])
    return _case(
        params["MessageBody"], expect, attributes=params["MessageAttributes"], objects=[obj], **kw
    )


@kind("control.claim_check", 3)
def _control_claim_check(g: Generator, t: str) -> Case:
    return _offloaded(g, g.control(t))


@kind("control.claim_check_big", 0.3)
def _control_claim_check_big(g: Generator, t: str) -> Case:
    body = g.control(t, pad=SQS_MAX_BYTES + g.rng.randint(0, 100_000))
    if len(body) > g.max_object:
        return None  # type: ignore[return-value]
    return _offloaded(g, body)


@kind("control.claim_check_peer", 1)
def _control_claim_check_peer(g: Generator, t: str) -> Case:
    """A pointer as the Extended Client Library (a peer) writes it: no idempotency attribute."""
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", g.control(t).encode(), "run")


@kind("duplicate.control", 1)
def _duplicate(g: Generator, t: str) -> Case:
    return _case(g.control(t), "run", duplicate=True, note="sent again after it ran")


@kind("duplicate.claim_check", 1.5)
def _duplicate_claim_check(g: Generator, t: str) -> Case:
    note = "sent again after it ran (its object is gone by then)"
    return _offloaded(g, g.control(t), duplicate=True, note=note)


# not a task message at all: poison ---------------------------------------------------------------


@kind("raw.bytes", 3)
def _raw_bytes(g: Generator, t: str) -> Case:
    return _case(_latin1(g.rng.randbytes(g.rng.randint(1, 3000))), reasons=POISON)


@kind("raw.text", 3)
def _raw_text(g: Generator, t: str) -> Case:
    return _case(_text(g.rng, g.rng.randint(1, 3000)) or "x", reasons=POISON)


@kind("raw.base64_of_bytes", 2)
def _raw_b64_bytes(g: Generator, t: str) -> Case:
    return _case(_b64(g.rng.randbytes(g.rng.randint(1, 3000))), reasons=POISON)


@kind("raw.base64_of_text", 2)
def _raw_b64_text(g: Generator, t: str) -> Case:
    return _case(_b64(_text(g.rng, g.rng.randint(1, 3000)) or "x"), reasons=POISON)


@kind("raw.whitespace", 0.3)
def _raw_whitespace(g: Generator, t: str) -> Case:
    return _case("".join(g.rng.choices(" \t\r\n", k=g.rng.randint(1, 50))), reasons=POISON)


@kind("json.random", 4)
def _json_random(g: Generator, t: str) -> Case:
    return _case(json.dumps(_json_value(g.rng), ensure_ascii=g.rng.random() < 0.5), reasons=POISON)


@kind("json.random_base64", 3)
def _json_random_b64(g: Generator, t: str) -> Case:
    return _case(_b64(json.dumps(_json_value(g.rng))), reasons=POISON)


@kind("json.deep", 0.5)
def _json_deep(g: Generator, t: str) -> Case:
    depth = g.rng.choice([100, 1000, 5000, 20000])
    opener, closer = g.rng.choice([("[", "]"), ('{"a":', "}")])
    text = opener * depth + "1" + closer * depth
    return _case(_b64(text) if g.rng.random() < 0.5 else text, reasons=POISON)


@kind("json.big_number", 0.5)
def _json_big_number(g: Generator, t: str) -> Case:
    digits = "".join(g.rng.choices(string.digits, k=g.rng.randint(4301, 20000)))
    number = "1" + digits
    text = g.rng.choice([number, f"[{number}]", f'{{"headers": {number}}}'])
    return _case(_b64(text) if g.rng.random() < 0.5 else text, reasons=POISON)


@kind("json.non_finite", 0.5)
def _json_non_finite(g: Generator, t: str) -> Case:
    text = g.rng.choice(["NaN", "Infinity", "-Infinity", '{"headers": NaN}', "[NaN, 1e999]"])
    return _case(_b64(text + " " * g.rng.randint(0, 9)), reasons=POISON)


@kind("json.envelope_shaped", 3)
def _json_envelope_shaped(g: Generator, t: str) -> Case:
    """A dict with the envelope's keys, each a random value."""
    env = {
        key: _json_value(g.rng)
        for key in ("body", "headers", "properties", "content-type", "content-encoding")
        if g.rng.random() < 0.8
    }
    return _case(g.wire(env, b64=g.rng.random() < 0.7), reasons=POISON)


# the envelope, one field broken ------------------------------------------------------------------


def _envelope_case(
    g: Generator, t: str, mutate: Callable[[dict[str, Any]], None], **kw: Any
) -> Case:
    env, body = g.task_message(t)
    env = g.encode(env, body)
    env["properties"] = copy.deepcopy(env["properties"])
    mutate(env)
    return _case(g.wire(env), **kw)


@kind("envelope.headers_wrong_type", 2)
def _env_headers(g: Generator, t: str) -> Case:
    value = g.rng.choice([None, [], ["task"], "task", 5, True])

    def mutate(env: dict[str, Any]) -> None:
        env["headers"] = value

    return _envelope_case(g, t, mutate, note=f"headers={value!r}")


@kind("envelope.headers_missing", 1)
def _env_headers_missing(g: Generator, t: str) -> Case:
    return _envelope_case(g, t, lambda env: env.pop("headers"), reasons=POISON)


@kind("envelope.properties_wrong", 2)
def _env_properties(g: Generator, t: str) -> Case:
    value = g.rng.choice(
        [
            None,
            [],
            "p",
            5,
            {"delivery_info": None},
            {"delivery_info": [1]},
            {"delivery_info": "x"},
            {"body_encoding": 5},
        ]
    )

    def mutate(env: dict[str, Any]) -> None:
        if g.rng.random() < 0.2:
            env.pop("properties")
        else:
            env["properties"] = copy.deepcopy(value)

    return _envelope_case(g, t, mutate, expect="either", note=f"properties={value!r}")


@kind("envelope.body_wrong_type", 2)
def _env_body(g: Generator, t: str) -> Case:
    value = g.rng.choice([None, 5, [], ["a"], {}, {"args": []}, True, ""])

    def mutate(env: dict[str, Any]) -> None:
        if g.rng.random() < 0.2:
            env.pop("body")
        else:
            env["body"] = copy.deepcopy(value)

    return _envelope_case(g, t, mutate, note=f"body={value!r}")


@kind("envelope.body_encoding", 2)
def _env_body_encoding(g: Generator, t: str) -> Case:
    value = g.rng.choice(["rot13", "utf-16", "gzip", "base32", "no-such-codec", 5, None, ""])

    def mutate(env: dict[str, Any]) -> None:
        env["properties"]["body_encoding"] = value

    return _envelope_case(g, t, mutate, note=f"body_encoding={value!r}")


@kind("envelope.body_not_base64", 2)
def _env_body_not_b64(g: Generator, t: str) -> Case:
    value = g.rng.choice(["%%%not base64%%%", "YQ", "Y===", _text(g.rng, 30), "\u00ff\u00fe"])

    def mutate(env: dict[str, Any]) -> None:
        env["body"] = value

    return _envelope_case(g, t, mutate, reasons=POISON, note=f"body={value!r}")


@kind("envelope.body_base64_of_garbage", 2)
def _env_body_garbage(g: Generator, t: str) -> Case:
    data = g.rng.choice([g.rng.randbytes(g.rng.randint(1, 500)), b"\xff\xfe\x00", b'[["a"], {}'])

    def mutate(env: dict[str, Any]) -> None:
        env["body"] = _b64(data)

    return _envelope_case(g, t, mutate, reasons=POISON)


@kind("envelope.content_type", 2)
def _env_content_type(g: Generator, t: str) -> Case:
    value = g.rng.choice(
        [
            "application/x-python-serialize",
            "application/x-yaml",
            "application/x-msgpack",
            "text/plain",
            "application/data",
            None,
            5,
            "",
            "application/json; charset=binary",
        ]
    )

    def mutate(env: dict[str, Any]) -> None:
        if value is None and g.rng.random() < 0.5:
            env.pop("content-type")
        else:
            env["content-type"] = value

    return _envelope_case(g, t, mutate, note=f"content-type={value!r}")


@kind("envelope.content_encoding", 2)
def _env_content_encoding(g: Generator, t: str) -> Case:
    value = g.rng.choice(["binary", "utf-16", "rot13", "latin-1", "ascii", None, 5, "", "no-such"])

    def mutate(env: dict[str, Any]) -> None:
        env["content-encoding"] = value

    return _envelope_case(g, t, mutate, expect="either", note=f"content-encoding={value!r}")


@kind("envelope.compression", 1)
def _env_compression(g: Generator, t: str) -> Case:
    value = g.rng.choice(["application/x-gzip", "zlib", "bzip2", "no-such", 5])

    def mutate(env: dict[str, Any]) -> None:
        env["headers"]["compression"] = value

    return _envelope_case(g, t, mutate, note=f"compression={value!r}")


@kind("envelope.properties_fields", 2)
def _env_property_fields(g: Generator, t: str) -> Case:
    name = g.rng.choice(["priority", "delivery_tag", "reply_to", "correlation_id", "delivery_mode"])
    value = _garbage(g.rng)

    def mutate(env: dict[str, Any]) -> None:
        env["properties"][name] = value

    return _envelope_case(g, t, mutate, expect="either", note=f"{name}={value!r}")


# protocol 2: one header broken -------------------------------------------------------------------


def _header_case(g: Generator, t: str, name: str, value: Any, **kw: Any) -> Case:
    env, body = g.task_message(t)
    if value is _MISSING:
        env["headers"].pop(name, None)
    else:
        env["headers"][name] = value
    return _case(g.wire(g.encode(env, body)), note=f"{name}={_short(value)}", **kw)


_MISSING = object()


def _short(value: Any) -> str:
    text = "<missing>" if value is _MISSING else repr(value)
    return text if len(text) < 60 else text[:40] + f"...({len(text)} chars)"


@kind("header.task", 3)
def _h_task(g: Generator, t: str) -> Case:
    value = g.rng.choice(
        [
            _MISSING,
            None,
            5,
            [FUZZ_TASK],
            {"n": FUZZ_TASK},
            "",
            "fuzz.no_such_task",
            "x" * 100_000,
            FUZZ_TASK + "\x00",
            True,
            1.5,
        ]
    )
    return _header_case(g, t, "task", value, reasons=None)


@kind("header.id", 3)
def _h_id(g: Generator, t: str) -> Case:
    tid = uuid_of(t)
    # Values shared by every message that draws them (None, True, 1.5, "") make those messages
    # one task to the idempotency store; the others are unique, as real ids are.
    value = g.rng.choice(
        [
            _MISSING,
            None,
            g.rng.randint(0, 2**62),
            1.5,
            [tid],
            {"id": tid},
            True,
            "",
            "x" * 50_000 + t,
            tid + "\u2028\x00",
            "é" * 10 + t,
        ]
    )
    return _header_case(g, t, "id", value, expect="either")


@kind("header.eta", 3)
def _h_eta(g: Generator, t: str) -> Case:
    value = g.rng.choice(
        [
            "garbage",
            "9999-99-99",
            "2026-13-45T99:99:99",
            5,
            1.5e300,
            [],
            {"a": 1},
            True,
            "+275760-09-13T00:00:00Z",
            "nan",
            "",
            "0000-00-00T00:00:00",
            "2020-01-01T00:00:00+99:00",
        ]
    )
    return _header_case(g, t, "eta", value, expect="either")


@kind("header.expires", 2)
def _h_expires(g: Generator, t: str) -> Case:
    value = g.rng.choice(["garbage", "9999-99-99", 5, [], {"a": 1}, True, "nan", ""])
    return _header_case(g, t, "expires", value, expect="either")


@kind("header.retries", 2)
def _h_retries(g: Generator, t: str) -> Case:
    value = g.rng.choice([-1, -(10**30), 10**30, 2**63, "x", None, 1.5, [], {}, "3", _MISSING])
    return _header_case(g, t, "retries", value, expect="either")


@kind("header.timelimit", 2)
def _h_timelimit(g: Generator, t: str) -> Case:
    value = g.rng.choice(["x", [1], [-1, -1], ["a", "b"], [1e309, None], 5, {}, [0, 0], [None]])
    return _header_case(g, t, "timelimit", value, expect="either")


@kind("header.other", 4)
def _h_other(g: Generator, t: str) -> Case:
    name = g.rng.choice(
        [
            "shadow",
            "argsrepr",
            "kwargsrepr",
            "root_id",
            "parent_id",
            "group",
            "group_index",
            "lang",
            "origin",
            "stamps",
            "stamped_headers",
            "replaced_task_nesting",
            "ignore_result",
        ]
    )
    return _header_case(g, t, name, _garbage(g.rng), expect="either")


@kind("header.idempotency_key", 2)
def _h_idempotency(g: Generator, t: str) -> Case:
    value = g.rng.choice([[1], {"k": 1}, 5, "", "k" * 10_000, True, f"fz{t}" + "\x00"])
    return _header_case(g, t, "idempotency_key", value, expect="either")


@kind("header.entity", 2)
def _h_entity(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    # Unique per message: two updates of one entity are ordered, the older one skipped (STALE).
    env["headers"]["entity"] = g.rng.choice([f"fuzz:{t}", int(t[:12], 16), [t], None])
    version = g.rng.choice(["x", None, [], -1, 10**30, 1.5, "", _MISSING])
    if version is not _MISSING:
        env["headers"]["entity_version"] = version
    note = f"entity={env['headers']['entity']!r} entity_version={_short(version)}"
    return _case(g.wire(g.encode(env, body)), expect="either", note=note)


# protocol 2: the task body broken ----------------------------------------------------------------


def _body_case(
    g: Generator, t: str, body_of: Callable[[list[Any]], Any], note: str, **kw: Any
) -> Case:
    env, body = g.task_message(t)
    return _case(g.wire(g.encode(env, body_of(body))), note=note, **kw)


@kind("body.not_a_triple", 3)
def _b_shape(g: Generator, t: str) -> Case:
    choice = g.rng.randrange(8)
    shapes: list[tuple[str, Callable[[list[Any]], Any]]] = [
        ("[]", lambda b: []),
        ("[args]", lambda b: [b[0]]),
        ("[args, kwargs]", lambda b: b[:2]),
        ("[args, kwargs, embed, x]", lambda b: [*b, 1]),
        ("{}", lambda b: {}),
        ("{'args': ..} (hybrid)", lambda b: {"args": b[0], "kwargs": b[1]}),
        ("string", lambda b: f"fz{t}"),
        ("null", lambda b: None),
    ]
    note, shape = shapes[choice]
    return _body_case(g, t, shape, f"body={note}", expect="either")


@kind("body.args", 3)
def _b_args(g: Generator, t: str) -> Case:
    value = g.rng.choice([{"fz": t}, f"fz{t}", 5, None, True, 1.5, [[f"fz{t}"]]])
    return _body_case(g, t, lambda b: [value, b[1], b[2]], f"args={value!r}", expect="either")


@kind("body.kwargs", 3)
def _b_kwargs(g: Generator, t: str) -> Case:
    value = g.rng.choice([[1], "k", 5, None, True, {"": 1}, {"1 2": 3}, {"\x00": 1}])
    return _body_case(g, t, lambda b: [b[0], value, b[2]], f"kwargs={value!r}", expect="either")


@kind("body.embed", 3)
def _b_embed(g: Generator, t: str) -> Case:
    name = g.rng.choice(["callbacks", "errbacks", "chain", "chord", "<embed>"])
    value = g.rng.choice(["x", 5, [1, 2], [{"task": 5}], {"task": None}, [None], [[]], True])

    def body_of(b: list[Any]) -> Any:
        if name == "<embed>":
            return [b[0], b[1], value]
        return [b[0], b[1], {**b[2], name: value}]

    return _body_case(g, t, body_of, f"{name}={value!r}", expect="either")


@kind("body.invalid_json", 2)
def _b_invalid_json(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    text = json.dumps(body)
    text = g.rng.choice(
        [text[: g.rng.randint(1, len(text) - 1)], text + "]", text.replace(",", ";", 1)]
    )
    env = {**env, "body": _b64(text)}
    return _case(g.wire(env), reasons=POISON)


@kind("body.not_utf8", 1)
def _b_not_utf8(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    data = json.dumps(body).replace("fz", "f\u00ff", 1).encode("latin-1", "replace")
    env = {**env, "body": _b64(data)}
    return _case(g.wire(env), reasons=POISON)


# protocol 1: one field broken --------------------------------------------------------------------


@kind("proto1.field", 4)
def _proto1_field(g: Generator, t: str) -> Case:
    env, body = g.task_message(t, "proto1")
    name = g.rng.choice(
        [
            "task",
            "id",
            "args",
            "kwargs",
            "eta",
            "expires",
            "retries",
            "utc",
            "timelimit",
            "callbacks",
            "taskset",
            "chord",
        ]
    )
    value = _garbage(g.rng) if g.rng.random() < 0.8 else _MISSING
    if value is _MISSING:
        body.pop(name, None)
    else:
        body[name] = value
    env = {**env, "body": _b64(json.dumps(body))}
    return _case(g.wire(env), expect="either", note=f"{name}={_short(value)}")


# claim-check pointers ----------------------------------------------------------------------------


def _pointer(bucket: Any, key: Any) -> str:
    return json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])


def _pointer_case(
    g: Generator,
    bucket: str,
    key: str,
    data: bytes | None,
    expect: str = "dead",
    keep: bool = False,
    **kw: Any,
) -> Case:
    objects = [S3Object(bucket, key, data, keep)] if data is not None else []
    size = len(data) if data is not None else g.rng.randint(1, 10**6)
    attributes = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(size)}}
    reasons = POISON if expect == "dead" else None
    return _case(
        _pointer(bucket, key), expect, reasons, attributes=attributes, objects=objects, **kw
    )


@kind("pointer.missing", 2)
def _p_missing(g: Generator, t: str) -> Case:
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", None)


@kind("pointer.foreign_bucket", 2)
def _p_foreign_bucket(g: Generator, t: str) -> Case:
    return _pointer_case(
        g, g.foreign_bucket, f"claim-check/{uuid_of(t)}", g.control(t).encode(), keep=True
    )


@kind("pointer.no_such_bucket", 1)
def _p_no_bucket(g: Generator, t: str) -> Case:
    return _pointer_case(g, f"nope-{t[:12]}", f"claim-check/{uuid_of(t)}", None)


@kind("pointer.foreign_prefix", 2)
def _p_foreign_prefix(g: Generator, t: str) -> Case:
    key = g.rng.choice([f"reports/finance/{t}.csv", f"claim-check-{t}", f"x/claim-check/{t}", t])
    return _pointer_case(g, g.bucket, key, g.control(t).encode(), keep=True)


@kind("pointer.dot_segments", 1)
def _p_dot_segments(g: Generator, t: str) -> Case:
    case = _pointer_case(g, g.bucket, f"claim-check/../reports/{t}.csv", None)
    # The object it would reach if anything normalized the path: it must stay unread and kept.
    case.objects = [S3Object(g.bucket, f"reports/{t}.csv", g.control(t).encode(), True)]
    return case


@kind("pointer.too_big", 0.3)
def _p_huge(g: Generator, t: str) -> Case:
    data = g.control(t, pad=g.max_object).encode()
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", data, note=f"{len(data)} bytes")


@kind("pointer.binary", 1)
def _p_binary(g: Generator, t: str) -> Case:
    data = JPEG + g.rng.randbytes(g.rng.randint(10, 5000))
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", data)


@kind("pointer.garbage_object", 2)
def _p_garbage(g: Generator, t: str) -> Case:
    data = g.rng.choice(
        [
            b"",
            _text(g.rng, 500).encode(),
            json.dumps(_json_value(g.rng)).encode(),
            _b64(g.rng.randbytes(300)).encode(),
            _pointer(g.bucket, f"claim-check/{t}").encode(),
        ]
    )
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", data)


@kind("pointer.unknown_task_object", 1)
def _p_unknown_task(g: Generator, t: str) -> Case:
    env, body = g.task_message(t)
    env["headers"]["task"] = "fuzz.no_such_task"
    data = g.wire(g.encode(env, body)).encode()
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", data)


@kind("pointer.shape", 2)
def _p_shape(g: Generator, t: str) -> Case:
    key = f"claim-check/{uuid_of(t)}"
    body = g.rng.choice(
        [
            json.dumps([POINTER_CLASS]),
            json.dumps([POINTER_CLASS, {}]),
            json.dumps([POINTER_CLASS, "x", key]),
            json.dumps([POINTER_CLASS, {"s3BucketName": g.bucket, "s3Key": key}, 3]),
            _pointer(5, [key]),
            _pointer(g.bucket, ""),
            _pointer(g.bucket, None),
            _pointer("", key),
            _pointer("../../etc", key),
            _pointer(g.bucket, "claim-check/" + "k" * 2000),
            _pointer(g.bucket, key + "\x00"),
            f'["{POINTER_CLASS}", ' + "x" * 200,
        ]
    )
    return _case(body + " " * g.rng.randint(0, 3), reasons=POISON, note=body[:120])


@kind("pointer.size_attribute_lies", 1)
def _p_size_lies(g: Generator, t: str) -> Case:
    case = _offloaded(g, g.control(t), "either")
    value = g.rng.choice(["abc", "-1", "1e999", "0", "99999999999999999999"])
    case.attributes["ExtendedPayloadSize"] = {"DataType": "Number", "StringValue": value}
    case.note = f"ExtendedPayloadSize={value!r}"
    return case


@kind("pointer.idempotency_attribute", 2)
def _p_idempotency_attribute(g: Generator, t: str) -> Case:
    """A pointer to a missing object whose idempotency attribute is garbage, or names a record
    that never completed: not a duplicate, so a dead letter."""
    value = g.rng.choice(
        [
            "not json",
            "[]",
            "null",
            json.dumps({"task": 5, "key": []}),
            json.dumps({"task": "fuzz.record"}),
            json.dumps({"task": "fuzz.record", "key": uuid_of(t)}),
            json.dumps({"task": "fuzz.record", "key": "k" * 5000}),
            json.dumps({"task": ["x"], "key": {"a": 1}}),
            "{" * 5000,
        ]
    )
    case = _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", None)
    case.attributes["TaskappIdempotency"] = {"DataType": "String", "StringValue": value}
    case.note = f"TaskappIdempotency={_short(value)}"
    return case


# attributes and sizes ----------------------------------------------------------------------------


@kind("attributes.oversized", 0.5)
def _a_oversized(g: Generator, t: str) -> Case:
    """A valid task whose attributes take the message to (moto: past) the 1 MiB limit."""
    data = g.rng.randbytes(g.rng.choice([200_000, 600_000, SQS_MAX_BYTES]))
    attributes = {
        "blob": {"DataType": "Binary", "BinaryValue": data},
        "n": {"DataType": "Number", "StringValue": g.rng.choice(["abc", "1e999", "", "-"]) or "x"},
        "s": {"DataType": "String.custom", "StringValue": _text(g.rng, 100) or "x"},
    }
    return _case(g.control(t), "either", attributes=attributes, note=f"{len(data)} binary bytes")


@kind("size.limit_garbage", 0.3)
def _s_garbage(g: Generator, t: str) -> Case:
    head = g.rng.choice(
        ["", f'["{POINTER_CLASS}", ', '{"headers": {"task": "fuzz.record"}, "body": "']
    )
    return _case(head + "A" * (SQS_MAX_BYTES - len(head)), reasons=POISON)


# signed messages (signing on): captured from a signing producer, then edited ---------------------
_SIGNED: dict[str, tuple[float, Builder]] = {}


def _signed(g: Generator) -> tuple[str, dict[str, Any]] | None:
    """A signed envelope from the pool and its token (its arguments are signed: they keep the
    token the producer put in)."""
    if not g.signed:
        return None
    token, env = g.signed.pop()
    return token, copy.deepcopy(env)


def _signed_case(
    g: Generator, edit: Callable[[dict[str, Any]], str] | None, **kw: Any
) -> Case | None:
    picked = _signed(g)
    if picked is None:
        return None
    token, env = picked
    note = edit(env) if edit else ""
    case = _case(g.wire(env), note=note, **kw)
    case.token = token
    return case


@kind("signed.control", 10, _SIGNED)
def _sg_control(g: Generator, t: str) -> Case | None:
    return _signed_case(g, None, expect="run")


@kind("signed.claim_check", 2, _SIGNED)
def _sg_claim_check(g: Generator, t: str) -> Case | None:
    picked = _signed(g)
    if picked is None:
        return None
    token, env = picked
    case = _offloaded(g, g.wire(env))
    case.token = token
    return case


@kind("signed.duplicate", 1, _SIGNED)
def _sg_duplicate(g: Generator, t: str) -> Case | None:
    case = _signed_case(g, None, expect="run")
    if case is not None:
        case.duplicate, case.note = True, "the same signed message sent again after it ran"
    return case


def _edit_header(
    name: str, value: Callable[[Generator, dict[str, Any]], Any], deciding: bool = True
) -> Builder:
    """A signed message with header ``name`` changed after signing: one that decides what runs,
    when or how often must be refused (``signature``); any other may run or be refused."""

    def build(g: Generator, t: str) -> Case | None:
        def edit(env: dict[str, Any]) -> str:
            new = value(g, env)
            env["headers"][name] = new
            return f"{name} -> {_short(new)}"

        if deciding:
            return _signed_case(g, edit, reasons=SIGNATURE)
        return _signed_case(g, edit, expect="either")

    return build


_SIGNED_EDITS = {
    "task": lambda g, env: OTHER_TASK,
    "id": lambda g, env: str(uuid.UUID(int=g.rng.getrandbits(128))),
    "eta": lambda g, env: "2020-01-01T00:00:00+00:00",
    "retries": lambda g, env: g.rng.randint(1, 100),
    "idempotency_key": lambda g, env: f"replay-{g.rng.getrandbits(64):x}",
    "entity": lambda g, env: f"customer:{g.rng.randint(1, 99)}",
    "entity_version": lambda g, env: g.rng.randint(10**6, 10**9),
    "expires": lambda g, env: "2999-01-01T00:00:00+00:00",
    "timelimit": lambda g, env: [1, 1],
}
#: Headers that decide nothing about what runs: editing one need not be refused.
_SIGNED_EDITS_HARMLESS = {
    "root_id": lambda g, env: str(uuid.UUID(int=g.rng.getrandbits(128))),
    "argsrepr": lambda g, env: "('something else',)",
    "origin": lambda g, env: "attacker@host",
}
for _name, _value in _SIGNED_EDITS.items():
    _SIGNED[f"signed.edited_{_name}"] = (1.0, _edit_header(_name, _value))
for _name, _value in _SIGNED_EDITS_HARMLESS.items():
    _SIGNED[f"signed.edited_{_name}"] = (0.5, _edit_header(_name, _value, deciding=False))


@kind("signed.body_edited", 1, _SIGNED)
def _sg_body_edited(g: Generator, t: str) -> Case | None:
    def edit(env: dict[str, Any]) -> str:
        raw = base64.b64decode(env["body"])
        fields = base64.b64decode(raw)
        changed = fields.replace(b'"fz', b'"fZ', 1)
        env["body"] = _b64(base64.b64encode(changed))
        return "one byte of the signed arguments changed"

    return _signed_case(g, edit, reasons=SIGNATURE)


@kind("signed.pointer_missing", 1, _SIGNED)
def _sg_pointer_missing(g: Generator, t: str) -> Case | None:
    return _pointer_case(g, g.bucket, f"claim-check/{uuid_of(t)}", None)


KINDS: dict[str, tuple[float, Builder]] = dict(_KINDS)
SIGNED_KINDS: dict[str, tuple[float, Builder]] = dict(_SIGNED)
ALL_KINDS = {**KINDS, **SIGNED_KINDS}
