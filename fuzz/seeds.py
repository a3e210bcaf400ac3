#!/usr/bin/env python3
"""Writes the named seeds of corpus/ops from their programs in seeds.txt.

Each line of seeds.txt is `NAME => PROGRAM`, PROGRAM in the `Debug` form of
`value_watcher_fuzz::Program`. This script encodes it into the bytes that the
`Arbitrary` decoding of `Program` (src/lib.rs, derived with arbitrary 1.x)
turns back into that program, and writes corpus/ops/NAME. The test
tests/corpus.rs checks that every seed decodes to exactly its line, so a
change of the operation types that this schema does not follow fails there.

    python3 seeds.py        # from fuzz/
"""

import os
import re
import sys

# The decoded types, in declaration order (the order is the encoding).
# A type is a list of variants (an enum) or a dict of fields (a struct);
# a variant or tuple lists its field types, a struct variant is a dict.
SCHEMA = {
    "Program": {"init": "u8", "init_opt": "Option<u8>", "init_nc": "u8", "ops": "ops"},
    "Op": [
        ("Set", ["u8"]),
        ("SetIf", ["u8", "Cond"]),
        ("Modify", ["ModifyOp"]),
        ("Wait", {"slot": "u8", "kind": "Kind", "immediate": "bool"}),
        ("WaitMany", {"slot": "u8", "count": "u8", "kind": "Kind", "immediate": "bool"}),
        ("Poll", {"slot": "u8", "waker": "WakerChoice"}),
        ("DropWait", ["u8"]),
        ("OnChange", {"panics": "bool", "reads": "bool", "removes_self": "bool",
                      "action": "Option<Outside>", "drop_action": "Option<Outside>"}),
        ("OnValue", {"value": "u8", "panics": "bool"}),
        ("Remove", ["u8"]),
        ("Get", []),
        ("ClonePanics", ["bool"]),
        ("SetOpt", ["Option<u8>"]),
        ("Blocking", {"kind": "Kind", "immediate": "bool", "how": "Block"}),
        ("Stream", ["u8"]),
        ("PollStream", ["u8"]),
        ("DropStream", ["u8"]),
        ("With", ["Reentry"]),
        ("DebugReenters", ["Reentry"]),
        ("SetActing", ["u8", "Outside"]),
        ("NcSet", ["u8", "Option<Outside>"]),
        ("NcSetIf", ["u8", "Cond"]),
        ("NcWith", ["Option<Reentry>"]),
        ("NcOnValue", {"value": "u8", "panics": "bool"}),
        ("NcDebug", ["Option<Reentry>"]),
    ],
    "Reentry": {"act": "Inside", "propagate": "bool"},
    "Inside": [
        ("Set", ["u8"]), ("Get", []), ("With", []), ("Version", []), ("OnChange", []),
        ("Remove", []), ("PollWait", ["u8"]), ("PollStream", ["u8"]), ("Debug", []),
        ("CreateWait", ["u8", "u8"]), ("DropWait", ["u8"]), ("DropStream", ["u8"]),
    ],
    "Outside": [
        ("Poll", ["u8"]), ("Drop", ["u8"]), ("Create", ["u8", "u8"]), ("Read", []),
        ("ReadNc", []), ("SetOpt", ["Option<u8>"]), ("PollStream", ["u8"]), ("DropStream", ["u8"]),
    ],
    "WakerChoice": [
        ("Same", []), ("Fresh", []), ("Acting", ["Outside"]), ("DropActing", ["Outside"]),
        ("CloneActing", ["Reentry"]),
    ],
    "Block": [("TimeoutZero", []), ("DeadlinePassed", []), ("TimeoutMax", []), ("Wait", [])],
    "Cond": [
        ("Always", []), ("Never", []), ("Reenters", ["Reentry", "bool"]), ("Equals", ["u8"]),
        ("Below", ["u8"]), ("Panics", []),
    ],
    "ModifyOp": [
        ("Add", ["u8"]), ("Xor", ["u8"]), ("Assign", ["u8"]), ("Panics", ["u8"]),
        ("Reenters", ["u8", "Reentry"]),
    ],
    "Kind": [
        ("For", ["u8"]), ("ForNot", ["u8"]), ("Until", ["Pred"]), ("Change", []), ("Some", []),
        ("OptChange", []), ("Map", ["MapFn"]), ("Transition", ["EdgeFn"]), ("NcMap", ["MapFn"]),
    ],
    "MapFn": {"pred": "Pred", "drop_action": "Option<Outside>"},
    "EdgeFn": [
        ("From", ["u8"]), ("FromTo", ["u8", "u8"]), ("Down", []), ("Up", []),
        ("PanicsOn", ["u8", "u8"]), ("Reenters", ["u8", "u8", "Reentry"]),
    ],
    "Pred": [
        ("Equals", ["u8"]), ("NotEquals", ["u8"]), ("Range", ["u8", "u8"]), ("Even", ["bool"]),
        ("PanicsOn", ["u8", "u8"]), ("Reenters", ["u8", "u8", "Reentry"]),
    ],
}


def tokens(text):
    return re.findall(r"[A-Za-z_][A-Za-z_0-9]*|\d+|[{}()\[\],:]", text)


def parse(toks, i=0):
    """Parses one Debug value; returns (value, next index)."""
    t = toks[i]
    if t.isdigit():
        return int(t), i + 1
    if t == "[":
        items, i = [], i + 1
        while toks[i] != "]":
            item, i = parse(toks, i)
            items.append(item)
            if toks[i] == ",":
                i += 1
        return items, i + 1
    name, i = t, i + 1
    if i < len(toks) and toks[i] == "(":
        items, i = [], i + 1
        while toks[i] != ")":
            item, i = parse(toks, i)
            items.append(item)
            if toks[i] == ",":
                i += 1
        return (name, items), i + 1
    if i < len(toks) and toks[i] == "{":
        fields, i = {}, i + 1
        while toks[i] != "}":
            key = toks[i]
            assert toks[i + 1] == ":", toks[i : i + 2]
            fields[key], i = parse(toks, i + 2)
            if toks[i] == ",":
                i += 1
        return (name, fields), i + 1
    return (name, None), i


def tag(index, count):
    """A little-endian u32 that arbitrary's derive maps to variant `index`."""
    value = -(-(index << 32) // count)  # ceil(index * 2^32 / count)
    assert (value * count) >> 32 == index
    return value.to_bytes(4, "little")


def encode(ty, value, out):
    if ty == "u8":
        out.append(value)
    elif ty == "bool":
        name, _ = value
        out.append(1 if name == "true" else 0)
    elif ty.startswith("Option<"):
        name, items = value
        if name == "None":
            out.append(0)
        else:
            assert name == "Some", value
            out.append(1)
            encode(ty[len("Option<") : -1], items[0], out)
    elif ty == "ops":
        for op in value:
            encode("Op", op, out)
    else:
        schema = SCHEMA[ty]
        name, body = value
        if isinstance(schema, dict):
            assert set(body) == set(schema), (ty, body)
            for key, field_ty in schema.items():
                encode(field_ty, body[key], out)
            return
        names = [variant for variant, _ in schema]
        index = names.index(name)
        out.extend(tag(index, len(schema)))
        fields = schema[index][1]
        if isinstance(fields, dict):
            assert set(body) == set(fields), (ty, name, body)
            for key, field_ty in fields.items():
                encode(field_ty, body[key], out)
        else:
            items = body or []
            assert len(items) == len(fields), (ty, name, items)
            for field_ty, item in zip(fields, items):
                encode(field_ty, item, out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "seeds.txt")) as f:
        lines = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")]
    for line in lines:
        name, program = line.split(" => ", 1)
        value, end = parse(tokens(program))
        assert end == len(tokens(program)), name
        out = bytearray()
        encode("Program", value, out)
        with open(os.path.join(here, "corpus", "ops", name), "wb") as f:
            f.write(out)
    print(f"wrote {len(lines)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
