#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_ota_manifest and fuzz_ota_bundle (tests/fuzz/corpus/): update
manifests, signature and state files in the formats of docs/dev/updates.md, and small bundles (tar,
manifest.json first) built as `make bundle` builds them, good ones and the refusals of
tests/unit/test_ota_bundle.c. Run from the repository root; the output is checked in, so this only
needs running again when the formats change."""
import base64, hashlib, io, json, os, tarfile

ROOT = os.path.join(os.path.dirname(__file__), '..', 'corpus')
ARCH = os.uname().machine  # what ota__arch() says on this machine (x86_64, aarch64)

def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())

FILES = {
    'bin/tinybms-gw': (b'\x7fELF' + bytes(range(256)) * 4, '0755'),
    'bin/tinybms-sim': (b'\x7fELF' + b'sim' * 300, '0755'),
    'share/ui/index.html': (b'<!doctype html><title>tinybms-gw</title>', '0644'),
}

def manifest(version='0.2.0', files=FILES, arch=ARCH, platform='linux', extra=None, listed=None):
    m = {'format': 1, 'name': 'tinybms-gw', 'version': version,
         'compatible': {'architecture': arch, 'platform': platform}}
    if extra:
        m.update(extra)
    m['files'] = [{'path': p, 'size': len(c), 'sha256': hashlib.sha256(c).hexdigest(), 'mode': mode}
                  for p, (c, mode) in files.items() if listed is None or p in listed]
    return json.dumps(m, separators=(',', ':')).encode()

def bundle(m, entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        def add(name, data=b'', kind=tarfile.REGTYPE, mode=0o644, link=''):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.linkname, ti.mtime = kind, mode, link, 1700000000
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        for e in entries:
            if e == 'manifest':
                add('manifest.json', m)
            else:
                add(*e)
    return buf.getvalue()

def file_entries(files=FILES):
    return [(p, c, tarfile.REGTYPE, int(mode, 8)) for p, (c, mode) in files.items()]

# ---- fuzz_ota_manifest: manifests, signatures, state files
m = manifest()
out('ota_manifest', 'manifest_good.json', m)
out('ota_manifest', 'manifest_docs_example.json',
    '{"format":1,"name":"tinybms-gw","version":"0.2.0","compatible":{"architecture":"x86_64","platform":"linux"},'
    '"min_from_version":"0.1.0","allow_downgrade":false,"changelog":"...","files":[{"path":"bin/tinybms-gw",'
    '"size":1234,"sha256":"' + '0' * 64 + '","mode":"0755"}]}')
out('ota_manifest', 'manifest_min_from_downgrade.json',
    manifest('1.0.0-rc1', extra={'min_from_version': '0.9', 'allow_downgrade': True, 'changelog': 'fixes'}))
out('ota_manifest', 'manifest_other_arch.json', manifest(arch='armhf', platform='any'))
out('ota_manifest', 'manifest_traversal.json', manifest(files={**FILES, '../etc/passwd': (b'x', '0644')}))
out('ota_manifest', 'manifest_no_daemon.json', manifest(files={'share/ui/index.html': FILES['share/ui/index.html']}))
out('ota_manifest', 'manifest_file_and_dir.json',
    manifest(files={**FILES, 'share': (b'x', '0644')}))
key_id = '0123456789abcdef'
sig = base64.b64encode(bytes(range(64))).decode()
out('ota_manifest', 'signature_good.sig',
    json.dumps({'format': 'tinybms-gw-signature-1', 'algorithm': 'ed25519', 'key_id': key_id,
                'manifest_sha256': hashlib.sha256(m).hexdigest(), 'signature': sig}, separators=(',', ':')))
out('ota_manifest', 'signature_without_hash.sig',
    json.dumps({'format': 'tinybms-gw-signature-1', 'algorithm': 'ed25519', 'key_id': key_id, 'signature': sig}))
for kind in ('none', 'pending', 'trial', 'good', 'failed', 'rolled_back'):
    st = {'format': 1, 'state': kind, 'release': '' if kind == 'none' else '0.2.0-1a2b3c4d', 'version': '0.2.0',
          'from_release': '', 'from_version': '0.1.0', 'starts': 1, 'max_starts': 3, 'timeout_s': 120,
          'reason': 'BMS not answering (pack 1)' if kind == 'failed' else '', 'changed_ms': 1700000000000}
    out('ota_manifest', f'state_{kind}.json', json.dumps(st, indent=2))
out('ota_manifest', 'version_pre.txt', '1.2.3.4-rc.1')
out('ota_manifest', 'path_dot_slash.txt', './bin/tinybms-gw')

# ---- fuzz_ota_bundle: tar streams
good = bundle(m, ['manifest'] + file_entries())
out('ota_bundle', 'bundle_good.tar', good)
out('ota_bundle', 'bundle_truncated.tar', good[:len(good) // 2])
out('ota_bundle', 'bundle_with_dirs.tar',
    bundle(m, ['manifest', ('bin/', b'', tarfile.DIRTYPE, 0o755)] + file_entries()))
out('ota_bundle', 'bundle_manifest_last.tar', bundle(m, file_entries() + ['manifest']))
out('ota_bundle', 'bundle_symlink.tar',
    bundle(m, ['manifest', ('bin/tinybms-gw', b'', tarfile.SYMTYPE, 0o777, '/bin/sh')]))
out('ota_bundle', 'bundle_hardlink.tar',
    bundle(m, ['manifest', ('bin/tinybms-gw', b'', tarfile.LNKTYPE, 0o755, 'manifest.json')]))
out('ota_bundle', 'bundle_traversal.tar', bundle(m, ['manifest', ('../../evil', b'x', tarfile.REGTYPE, 0o644)]))
out('ota_bundle', 'bundle_absolute.tar', bundle(m, ['manifest', ('/etc/evil', b'x', tarfile.REGTYPE, 0o644)]))
out('ota_bundle', 'bundle_unlisted.tar', bundle(m, ['manifest', ('extra.txt', b'x', tarfile.REGTYPE, 0o644)]))
tampered = dict(FILES)
tampered['bin/tinybms-sim'] = (FILES['bin/tinybms-sim'][0][:-1] + b'X', '0755')
out('ota_bundle', 'bundle_tampered_byte.tar', bundle(m, ['manifest'] + file_entries(tampered)))
out('ota_bundle', 'bundle_fifo.tar', bundle(m, ['manifest', ('bin/fifo', b'', tarfile.FIFOTYPE, 0o644)]))
small = {'bin/tinybms-gw': (b'#!/bin/sh\n', '0755')}
out('ota_bundle', 'bundle_one_file.tar', bundle(manifest(files=small), ['manifest'] + file_entries(small)))
