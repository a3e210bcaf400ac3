#!/usr/bin/env python3
"""Where the bytes of a firmware's .text go, by source function after inlining.

usage: size_breakdown.py ELF [TOP]

Every instruction (from `llvm-objdump -d`) is charged to the chain of source
functions it was inlined from (DWARF inline info, via `llvm-symbolizer
--inlines`). Printed: bytes per innermost function, and bytes per category of
value-watcher's machinery (the first category that any function of the chain
matches, in the order below). Needs llvm-objdump, llvm-symbolizer and nm, and
a binary built with debug info (the release profile of tests/firmware has it;
debug info does not change the code). Not run by CI: a tool for whoever works
on code size (see README.md, "Where the bytes go").
"""

import collections
import re
import subprocess
import sys

CATEGORIES = [
    ("callbacks (linked even with none registered)",
     ["callbacks::", "Firing", "Arc<", "dealloc"]),
    ("wake batch", ["WakeBatch"]),
    ("waker clone and drop (calls through the waker's vtable)",
     ["Waker as core::ops::drop::Drop", "Option<core::task::wake::Waker>>", "Waker as core::clone"]),
    ("lock: acquire/release",
     ["lock::imp", "primask", "critical_section", "interrupt::", "atomic_compare", "spin::"]),
    ("setter's walk (lanes, offer, predicate, capture)",
     ["notify_locked", "offer", "drain_queued", "waiters::check", "List<T>::unlink"]),
    ("register (push_waiting, waker clone)",
     ["register_locked", "push_waiting", "List<T>::push"]),
    ("the owner's step: poll and cancel on drop (owner_step, the futures' poll and drop glue)",
     ["Future>::poll", "owner_step", "take_outcome", "take_ready", "check_current", "take_output", "is_armed",
      "cancel_locked", "unlink_waiting", "drop_in_place<value_watcher::wait", "wait::Wait<T,M> as core::ops::drop"]),
    ("set / update / deliver", ["ValueWatcher<T>::set", "ValueWatcher<T>::update", "deliver", "Notifier"]),
    ("panic and abort paths", ["panic", "rust_begin_unwind", "unwind::abort"]),
    ("memcpy (compiler_builtins)", ["compiler_builtins::mem"]),
]


def run(*cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def demangle_legacy(name):
    """Readable form of a legacy-mangled path as llvm-symbolizer prints it."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    for a, b in [("$LT$", "<"), ("$GT$", ">"), ("$C$", ","), ("$u20$", " "), ("$u7b$", "{"),
                 ("$u7d$", "}"), ("$RF$", "&"), ("$BP$", "*"), ("..", "::")]:
        name = name.replace(a, b)
    return name.lstrip("_")


def instructions(elf):
    """(address, size) of every instruction in the functions of `elf`."""
    ends = {}
    for line in run("nm", "-S", elf).splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT":
            start = int(p[0], 16) & ~1  # Thumb bit
            ends[start] = start + int(p[1], 16)
    functions = []
    for line in run("llvm-objdump", "-d", "--no-show-raw-insn", elf).splitlines():
        m = re.match(r"^([0-9a-f]+) <.*>:$", line)
        if m:
            start = int(m.group(1), 16)
            functions.append((ends.get(start), [start]))
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s", line)
        if m and functions:
            functions[-1][1].append(int(m.group(1), 16))
    out = []
    for end, addrs in functions:
        addrs = sorted(set(addrs))
        end = end if end is not None else addrs[-1] + 2
        for i, a in enumerate(addrs):
            nxt = min(addrs[i + 1] if i + 1 < len(addrs) else end, end)
            if nxt > a:
                out.append((a, nxt - a))
    return out


def main():
    elf = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    insns = instructions(elf)
    text = "".join(f"{a:#x}\n" for a, _ in insns)
    frames_of = run("llvm-symbolizer", "--obj=" + elf, "--inlines", "--functions=linkage",
                    stdin=text).strip("\n").split("\n\n")
    innermost = collections.Counter()
    category = collections.Counter()
    for (_, size), block in zip(insns, frames_of):
        lines = block.split("\n")
        frames = [demangle_legacy(lines[i]) for i in range(0, len(lines), 2)]
        innermost[frames[0]] += size
        name = next((c for c, pats in CATEGORIES if any(p in f for f in frames for p in pats)),
                    "other: " + frames[-1])
        category[name] += size
    print(f"{elf}: {sum(s for _, s in insns)} bytes of instructions")
    print("\nby category:")
    for name, size in category.most_common(top):
        print(f"{size:6d}  {name}")
    print("\nby innermost source function:")
    for name, size in innermost.most_common(top):
        print(f"{size:6d}  {name}")


if __name__ == "__main__":
    main()
