#!/usr/bin/env python3
"""Generates crates/apiserver/src/proto_schema.rs: the protobuf field table
skiff uses to decode Kubernetes protobuf request bodies into JSON.

Reads:
  * the k8s-pb crate's prost-generated sources (default: the newest
    ~/.cargo/registry/src/*/k8s-pb-0.9.0/src). Every `pub struct` there is a
    message; every `#[prost(KIND, [optional|repeated], tag = "N")]` attribute
    and the `pub NAME: TYPE` after it is one field. Only these facts are kept
    (message names, field names, tag numbers and types); no comments.
  * the k8s-openapi crate's sources (default: ~/.cargo/registry/src/*/
    k8s-openapi-0.29.0/src/v1_33), only for the OpenAPI definition names
    ("io.k8s.api.core.v1.HTTPGetAction"): prost renames messages to Rust
    camel case ("HttpGetAction"), so each message is matched to the
    definition of the same package whose name is equal ignoring case.

Writes:
  * crates/apiserver/src/proto_schema.rs (or the path given by --out), then
    runs rustfmt on it. The table covers the packages in PACKAGES below and
    every message their messages reference, sorted by name.

Usage (from the repository root; rerun after changing PACKAGES or a crate):
  tools/gen-proto-schema.py [--k8s-pb DIR] [--k8s-openapi DIR] [--out FILE]
"""

import argparse
import glob
import os
import re
import subprocess
import sys

# k8s-pb module paths (relative to its src/) of the API packages skiff serves.
PACKAGES = [
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/storage/v1",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/scheduling/v1",
    "api/policy/v1",
    "api/events/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/api/resource",
]

SCALARS = {
    "string": "String",
    'bytes = "vec"': "Bytes",
    "bytes": "Bytes",
    "bool": "Bool",
    "int32": "Int32",
    "int64": "Int64",
    "double": "Double",
}

ATTR = re.compile(r"#\[prost\((.*)\)\]\s*$")
STRUCT = re.compile(r"^pub struct (\w+) \{")
FIELD = re.compile(r"^\s*pub (?:r#)?(\w+):\s*(.*)$")


def newest(pattern):
    hits = sorted(glob.glob(os.path.expanduser(pattern)))
    if not hits:
        sys.exit(f"gen-proto-schema: nothing matches {pattern}")
    return hits[-1]


def split_attr(attr):
    """Splits a prost attribute body at top-level commas."""
    parts, depth, cur, quoted = [], 0, "", False
    for ch in attr:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    parts.append(cur.strip())
    return parts


def resolve(module, rust_type):
    """Resolves a (possibly super::-relative) Rust path to (module, name)."""
    path = rust_type.split("::")
    mod = list(module)
    while path and path[0] == "super":
        mod.pop()
        path.pop(0)
    return "/".join(mod + path[:-1]), path[-1]


def inner_types(ty):
    """The message type paths inside a field's Rust type."""
    ty = re.sub(r"\s+", "", ty).rstrip(",")
    for wrapper in (
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ):
        ty = ty.replace(wrapper, "<")
    ty = ty.replace("::prost::alloc::collections::BTreeMap<", "<")
    ty = ty.replace("::prost::alloc::string::String", "")
    return [t for t in re.split(r"[<>,]", ty) if t]


def parse_module(src, module):
    """Messages of one k8s-pb module: {name: [(tag, field, attr, type)]}."""
    path = os.path.join(src, module, "mod.rs")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    messages = {}
    current = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = STRUCT.match(line)
        if m:
            current = messages.setdefault(m.group(1), [])
        elif line.startswith("}"):
            current = None
        elif current is not None:
            a = ATTR.search(line.strip())
            if a:
                # The field declaration may span several lines.
                i += 1
                decl = lines[i]
                while not decl.rstrip().endswith(",") or decl.count("<") > decl.count(">"):
                    i += 1
                    decl += lines[i].strip()
                fm = FIELD.match(decl)
                if not fm:
                    sys.exit(f"gen-proto-schema: {path}:{i + 1}: unparsed field {decl!r}")
                current.append((a.group(1), fm.group(1), fm.group(2)))
        i += 1
    return messages


def openapi_names(src):
    """{(dotted package, lowercase name): definition name} from k8s-openapi."""
    names = {}
    pat = re.compile(r'"(io\.k8s\.[A-Za-z0-9.]+\.[A-Za-z0-9]+)"')
    for root, _, files in os.walk(src):
        for fn in files:
            if fn.endswith(".rs"):
                with open(os.path.join(root, fn), encoding="utf-8") as f:
                    for n in pat.findall(f.read()):
                        pkg, _, short = n.rpartition(".")
                        names[(pkg, short.lower())] = n
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k8s-pb", default=None)
    ap.add_argument("--k8s-openapi", default=None)
    ap.add_argument("--out", default="crates/apiserver/src/proto_schema.rs")
    args = ap.parse_args()
    pb = args.k8s_pb or newest("~/.cargo/registry/src/*/k8s-pb-0.9.0/src")
    oa = args.k8s_openapi or newest("~/.cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_33")
    definitions = openapi_names(oa)

    modules = {}

    def module(mod):
        if mod not in modules:
            modules[mod] = parse_module(pb, mod)
        return modules[mod]

    def full_name(mod, name):
        pkg = "io.k8s." + mod.replace("/", ".")
        return definitions.get((pkg, name.lower()), f"{pkg}.{name}")

    table = {}
    queue = [(mod, name) for mod in PACKAGES for name in module(mod)]
    seen = set()
    while queue:
        mod, name = queue.pop()
        if (mod, name) in seen:
            continue
        seen.add((mod, name))
        msgs = module(mod)
        if name not in msgs:
            sys.exit(f"gen-proto-schema: {mod}::{name} not found")
        fields = []
        for attr, fname, ty in msgs[name]:
            parts = split_attr(attr)
            tag = next(p for p in parts if p.startswith("tag"))
            tag = int(tag.split('"')[1])
            repeated = "repeated" in parts
            head = parts[0]
            refs = [resolve(mod.split("/"), t) for t in inner_types(ty)
                    if t not in ("i32", "i64", "bool", "f64", "u8", "Vec<u8>")
                    and not t.startswith("::")]
            if head.startswith("btree_map"):
                key, value = [s.strip() for s in head.split('"')[1].split(",")]
                if key != "string":
                    sys.exit(f"gen-proto-schema: {mod}::{name}.{fname}: map key {key}")
                if value == "message":
                    (rmod, rname), = refs
                    queue.append((rmod, rname))
                    v = f'K::Message("{full_name(rmod, rname)}")'
                else:
                    v = "K::" + SCALARS[value]
                kind = f"K::Map(&{v})"
            elif head == "message":
                (rmod, rname), = refs
                queue.append((rmod, rname))
                kind = f'K::Message("{full_name(rmod, rname)}")'
            elif head in SCALARS:
                kind = "K::" + SCALARS[head]
            else:
                sys.exit(f"gen-proto-schema: {mod}::{name}.{fname}: unsupported {head}")
            fields.append((tag, fname, kind, repeated))
        fields.sort()
        table[full_name(mod, name)] = fields

    out = [
        "//! Generated by tools/gen-proto-schema.py from k8s-pb; do not edit.",
        "",
        "use crate::protobuf::{Field, Kind as K};",
        "",
        "const fn f(tag: u32, name: &'static str, kind: K) -> Field {",
        "    Field { tag, name, kind, repeated: false }",
        "}",
        "",
        "const fn r(tag: u32, name: &'static str, kind: K) -> Field {",
        "    Field { tag, name, kind, repeated: true }",
        "}",
        "",
        "/// Every message (OpenAPI definition name, fields by tag), sorted by name.",
        "#[rustfmt::skip]",
        "pub(crate) static MESSAGES: &[(&str, &[Field])] = &[",
    ]
    for name in sorted(table):
        out.append(f'    ("{name}", &[')
        for tag, fname, kind, repeated in table[name]:
            ctor = "r" if repeated else "f"
            out.append(f'        {ctor}({tag}, "{fname}", {kind}),')
        out.append("    ]),")
    out.append("];")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    subprocess.run(["rustfmt", "--edition", "2024", args.out], check=True)
    print(f"gen-proto-schema: wrote {len(table)} messages to {args.out}")


if __name__ == "__main__":
    main()
