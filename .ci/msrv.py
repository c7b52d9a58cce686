#!/usr/bin/env python3
"""The newest `rust-version` among the normal dependencies of workspace packages, from `cargo
metadata`: the honest MSRV when no older toolchain is installed to try one.

    python3 .ci/msrv.py icepact icepact-tokio    # print the five newest per package
    python3 .ci/msrv.py --check icepact ...      # fail if a package declares less
"""
import json
import subprocess
import sys


def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main(argv):
    check = "--check" in argv
    names = [a for a in argv if a != "--check"]
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1",
         "--filter-platform", "x86_64-unknown-linux-gnu"]))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failed = False
    for name in names:
        root = next(p for p in meta["packages"] if p["name"] == name)
        seen, stack = set(), [root["id"]]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for d in nodes[i]["deps"]:
                if any(k["kind"] is None for k in d["dep_kinds"]):
                    stack.append(d["pkg"])
        needs = sorted(
            ((version(packages[i]["rust_version"]), packages[i]["name"], packages[i]["version"])
             for i in seen if i != root["id"] and packages[i].get("rust_version")),
            reverse=True)
        declared = root.get("rust_version")
        print(f"{name}: declares {declared}; newest among dependencies: "
              + ", ".join(f"{n} {v} needs {'.'.join(map(str, r))}" for r, n, v in needs[:5]))
        if check and needs and (declared is None or version(declared) < needs[0][0]):
            print(f"{name}: rust-version is lower than a dependency needs")
            failed = True
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
