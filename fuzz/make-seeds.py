#!/usr/bin/env python3
"""Writes the seed inputs of fuzz/corpus (run once; the seeds are committed, and every input a
fuzz run keeps is added next to them). Each seed is a valid input, so the fuzzer starts from what
the parsers accept and mutates towards the edges."""
import hashlib, json, os, pathlib, shutil, subprocess

root = pathlib.Path(__file__).resolve().parent
corpus = root / "corpus"
repo = root.parent

def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())

# layout: the documented examples, and one as JSON
for f in sorted((repo / "docs/examples").glob("layout-*.yaml")):
    put("layout", "seed-" + f.stem, f.read_bytes())
put("layout", "seed-json", json.dumps({"disks": {"disk0": {"match": {"type": "nvme", "size": "1TB", "tolerance": "5%"},
    "partitions": [{"name": "esp", "size": "512MiB", "type": "esp", "filesystem": {"type": "vfat", "mount": "/boot/efi"}},
                   {"name": "root", "size": "rest", "type": "linux", "filesystem": {"type": "ext4", "mount": "/"}}]}}}))

node = {"name": "n1", "macs": ["52:54:00:12:34:56"], "image": {"name": "debian", "branch": "main"},
        "layout": (repo / "docs/examples/layout-simple-mirror.yaml").read_text(), "mode": "stateful",
        "plugins": [{"name": "hostname"}, {"name": "network", "parameters": {"address": "10.0.0.11/24"}}],
        "kernelArgs": ["console=ttyS0"], "syncVerify": "metadata"}
put("node-json", "seed-full", json.dumps(node))
put("node-json", "seed-short", json.dumps({"name": "n2", "mode": "stateless"}))

put("cluster", "seed", """nodes:
  node01:
    macs: ["52:54:00:12:34:56"]
    image: { name: debian12, branch: stable }
    mode: stateful
    layout: |
      disks:
        disk0: { match: { type: nvme, size: 1TB } }
    plugins:
      - name: hostname
      - name: network
        parameters: { address: 10.0.0.11/24 }
    kernelArgs: [console=ttyS0]
    syncVerify: metadata
  node02:
    macs: ["52-54-00-12-34-57"]
    mode: stateless
""")

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)

def manifest(entries):
    out = bytearray(b"PIMG\x01") + varint(len(entries))
    prev = b""
    for e in entries:
        path = e["path"]
        shared = 0
        while shared < min(len(prev), len(path)) and prev[shared] == path[shared]:
            shared += 1
        out += varint(shared) + varint(len(path) - shared) + path[shared:] + bytes([e["kind"]])
        prev = path
        if e["kind"] == 4:
            out += varint(e["link"])
            continue
        mt = e.get("mtime", 1700000000)
        out += varint(e.get("mode", 0o644)) + varint(0) + varint(0) + varint((mt << 1) ^ (mt >> 63)) + varint(5)
        xattrs = e.get("xattrs", [])
        out += varint(len(xattrs))
        for name, value in xattrs:
            out += varint(len(name)) + name + varint(len(value)) + value
        if e["kind"] == 1:
            chunks = e.get("chunks", [])
            out += varint(sum(c[0] for c in chunks)) + varint(len(chunks))
            for length, h in chunks:
                out += varint(length) + h
        elif e["kind"] == 3:
            out += varint(len(e["target"])) + e["target"]
        elif e["kind"] in (5, 6):
            out += varint(1) + varint(3)
    return bytes(out)

h1 = hashlib.sha256(b"hello\n").digest()
put("manifest", "seed-root", manifest([{"path": b"", "kind": 2, "mode": 0o755}]))
put("manifest", "seed-tree", manifest([
    {"path": b"", "kind": 2, "mode": 0o755},
    {"path": b"bin", "kind": 2, "mode": 0o755},
    {"path": b"bin/hello", "kind": 1, "mode": 0o755, "chunks": [(6, h1)], "xattrs": [(b"security.capability", b"\x01\x00")]},
    {"path": b"bin/hi", "kind": 4, "link": 2},
    {"path": b"dev", "kind": 2, "mode": 0o755},
    {"path": b"dev/null", "kind": 5, "mode": 0o666},
    {"path": b"etc", "kind": 2, "mode": 0o755},
    {"path": b"etc/big", "kind": 1, "chunks": [(1 << 20, b"\0" * 32), (6, h1)]},
    {"path": b"etc/link", "kind": 3, "mode": 0o777, "target": b"../bin/hello"},
    {"path": b"run", "kind": 7},
]))

zstd = shutil.which("zstd")
if zstd:
    data = subprocess.run([zstd, "-q", "-c"], input=b"hello provisioner\n" * 40, capture_output=True, check=True).stdout
    put("zstd", "seed-frame", bytes([0]) + data)
else:
    put("zstd", "seed-frame", b"\x00(\xb5/\xfd")

obj = b"(\xb5/\xfd" + b"\x00" * 8
pack = b"PPK1" + b"O" + h1 + len(obj).to_bytes(4, "big") + obj + b"M" + h1 + b"D" + h1 + h1 + (3).to_bytes(4, "big") + b"abc" + b"E"
put("pack", "seed-frames", pack)
put("pack", "seed-empty", b"PPK1E")

put("cmdline", "seed-ipxe", "initrd=initramfs root=provisioner provisioner.server=https://10.0.2.2:8443 "
    "provisioner.mac=52:54:00:12:34:56 provisioner.mirrors=https://10.0.2.2:8443,http://10.0.2.2:8081 console=ttyS0")
put("cmdline", "seed-options", 'BOOT_IMAGE=/vmlinuz root=provisioner provisioner.server=https://a:1 provisioner.server-wait=30 '
    'provisioner.fallback=no provisioner.retries=2 provisioner.retry-delay=1 provisioner.tmpfs-size=8g '
    'provisioner.verify=content provisioner.preserve=/var/lib/x,/home provisioner.local-boot "quoted arg=a b" provisioner.unknown=1')

put("boot-query", "seed-full", "mac=52%3A54%3A00%3A12%3A34%3A56&uuid=4c4c4544-0042&serial=SN+123&manufacturer=QEMU&product=Standard%20PC")
put("boot-query", "seed-short", "mac=525400123456")

# lvm: 2048 bytes of label sectors, the 512-byte metadata area header, the group's text; with
# LVM's checksums (CRC-32 from 0xf597a6cf, no inversions), so that the seeds are read as LVM would.
import binascii, struct
def lvm_crc(data, initial=0xf597a6cf):
    return ~binascii.crc32(data, ~initial & 0xffffffff) & 0xffffffff
pv_uuid = b"zdfd22DNWneOCVm090hM2yMn1oesoo6g"
lvm_text = b'''data {
id = "vZpAw3-N93S-ADAN-xLDz-pG92-65GG-WuDFXo"
seqno = 3
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192
physical_volumes {
pv0 {
id = "zdfd22-DNWn-eOCV-m090-hM2y-Mn1o-esoo6g"
device = "/dev/md127" # Hint only
status = ["ALLOCATABLE"]
flags = []
pe_start = 2048
pe_count = 100
}
}
logical_volumes {
root {
id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
segment_count = 1
segment1 {
start_extent = 0
extent_count = 10
type = "striped"
stripe_count = 1
stripes = ["pv0", 0]
}
}
}
}
contents = "Text Format Volume Group"
version = 1
'''
def lvm_seed(text, offset=512, area_size=1044480):
    sector = bytearray(512)
    sector[0:8] = b"LABELONE"
    sector[8:16] = struct.pack("<Q", 1)
    sector[20:24] = struct.pack("<I", 32)
    sector[24:32] = b"LVM2 001"
    pv = pv_uuid + struct.pack("<Q", 1 << 30) + struct.pack("<QQ", 1 << 20, 0) + bytes(16) \
        + struct.pack("<QQ", 4096, area_size) + bytes(16)
    sector[32:32 + len(pv)] = pv
    sector[16:20] = struct.pack("<I", lvm_crc(bytes(sector[20:512])))
    label = bytes(512) + bytes(sector) + bytes(1024)
    header = bytearray(512)
    header[4:20] = b" LVM2 x[5A%r0N*>"
    header[20:24] = struct.pack("<I", 1)
    header[24:40] = struct.pack("<QQ", 4096, area_size)
    header[40:64] = struct.pack("<QQII", offset, len(text), lvm_crc(text), 0)
    header[0:4] = struct.pack("<I", lvm_crc(bytes(header[4:512])))
    return label + bytes(header) + text
put("lvm", "seed-group", lvm_seed(lvm_text + b"\0"))
put("lvm", "seed-wrapped", lvm_seed(lvm_text, offset=1044480 - 100))
put("lvm", "seed-orphan", lvm_seed(b"")[:2560])
