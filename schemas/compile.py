"""Generate the Python gRPC/protobuf modules of ovmsd from schemas/proto.

    python schemas/compile.py           # regenerate daemon/ovmsd/api/grpc/proto/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py
    python schemas/compile.py --check   # exit 1 if the committed generated code differs from a fresh build

The .proto files live under schemas/proto/ovmsd/api/grpc/proto/, so protoc names the generated modules
``ovmsd.api.grpc.proto.<file>_pb2`` (daemon/ installs as the package ``ovmsd``). ``*_pb2_grpc.py`` files are only
kept for the .proto files that define a service. The output depends on the grpcio-tools version; regenerate
after upgrading it.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "schemas" / "proto"
PROTO_PACKAGE = Path("ovmsd", "api", "grpc", "proto")  # relative to PROTO_ROOT and to the protoc output dir
TARGET = REPO / "daemon" / "ovmsd" / "api" / "grpc" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_SERVICE_RE = re.compile(r"^\s*service\s+\w+\s*\{", re.MULTILINE)


def _is_generated(name: str) -> bool:
    return name.endswith(GENERATED_SUFFIXES)


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    rc = protoc.main(["grpc_tools.protoc", *args])
    if rc != 0:
        raise SystemExit(f"protoc failed (exit {rc}): {' '.join(args)}")


def generate(out_dir: Path) -> dict[str, bytes]:
    """Run protoc into out_dir; return {file name: content} of the generated modules."""
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PROTO_PACKAGE}")
    with_services = [p for p in protos if _SERVICE_RE.search((PROTO_ROOT / p).read_text(encoding="utf-8"))]
    bundled = str(resources.files("grpc_tools") / "_proto")  # google/protobuf/*.proto
    includes = [f"-I{PROTO_ROOT}", f"-I{bundled}"]
    _protoc([*includes, f"--python_out={out_dir}", f"--pyi_out={out_dir}", *protos])
    if with_services:
        _protoc([*includes, f"--grpc_python_out={out_dir}", *with_services])
    gen_dir = out_dir / PROTO_PACKAGE
    return {p.name: p.read_bytes() for p in sorted(gen_dir.iterdir()) if _is_generated(p.name)}


def current() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(TARGET.iterdir()) if p.is_file() and _is_generated(p.name)}


def check(fresh: dict[str, bytes]) -> int:
    have = current()
    problems: list[str] = []
    for name in sorted(fresh.keys() - have.keys()):
        problems.append(f"missing: {name}")
    for name in sorted(have.keys() - fresh.keys()):
        problems.append(f"stale (no longer generated): {name}")
    for name in sorted(fresh.keys() & have.keys()):
        if fresh[name] != have[name]:
            diff = difflib.unified_diff(
                have[name].decode("utf-8", "replace").splitlines(),
                fresh[name].decode("utf-8", "replace").splitlines(),
                f"committed/{name}",
                f"generated/{name}",
                lineterm="",
                n=1,
            )
            problems.append(f"differs: {name}\n" + "\n".join(list(diff)[:40]))
    if problems:
        rel = TARGET.relative_to(REPO)
        print(f"{rel} is out of date with schemas/proto; run `python schemas/compile.py`:", file=sys.stderr)
        for p in problems:
            print("  " + p.replace("\n", "\n    "), file=sys.stderr)
        return 1
    print(f"{TARGET.relative_to(REPO)} is up to date ({len(fresh)} generated files)")
    return 0


def install(fresh: dict[str, bytes]) -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    init = TARGET / "__init__.py"
    if not init.exists():
        init.write_text("")
    for name in current().keys() - fresh.keys():
        (TARGET / name).unlink()
        print(f"removed stale {name}")
    for name, data in fresh.items():
        path = TARGET / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--check",
        action="store_true",
        help="only compare a fresh build with daemon/ovmsd/api/grpc/proto; exit 1 if different",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ovmsd-protoc-") as tmp:
        fresh = generate(Path(tmp))
    if args.check:
        return check(fresh)
    install(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
