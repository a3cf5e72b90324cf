"""Ed25519 signatures: made, checked, and refused when missing, foreign, stale or malformed."""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography", reason="signing needs the 'sign' extra (cryptography)")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

import modelpack  # noqa: E402
from modelpack._cli import sign as _cli_sign  # noqa: E402
from modelpack._package import MANIFEST_NAME, SIGNATURE_NAME, open_package  # noqa: E402
from modelpack._package.signing import generate_key, key_id, sign, verify_signature  # noqa: E402
from modelpack.errors import ModelpackError, PackageIntegrityError, SignatureError, UnsafePackageError  # noqa: E402

FORMS = ["pkg.mpk", "pkg"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two key pairs: 'alice' and 'mallory'; values are the private keys, '<name>.pub' the public."""
    out = {}
    for name in ("alice", "mallory"):
        private = tmp_path / "keys" / name
        private.parent.mkdir(exist_ok=True)
        out[f"{name}.pub"] = generate_key(private)
        out[name] = private
    return out


def signed(kit, keys, form: str, *signers: str) -> Path:
    path = kit.package(form)
    for signer in signers or ("alice",):
        sign(path, keys[signer])
    return path


def verify(path: Path, trusted) -> str:
    with open_package(path) as pkg:
        return verify_signature(pkg, trusted)


# -- keys -----------------------------------------------------------------------------------------
def test_generate_key_writes_a_private_key_for_its_owner_only(keys) -> None:
    assert stat.S_IMODE(keys["alice"].stat().st_mode) == 0o600
    assert keys["alice.pub"] == Path(f"{keys['alice']}.pub")
    assert b"PUBLIC KEY" in keys["alice.pub"].read_bytes()
    assert key_id(keys["alice.pub"]) != key_id(keys["mallory.pub"])


def test_generate_key_never_overwrites(keys) -> None:
    before = keys["alice"].read_bytes()
    with pytest.raises(ModelpackError, match="already exists"):
        generate_key(keys["alice"])
    assert keys["alice"].read_bytes() == before


# -- the happy path ---------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_sign_then_verify_and_load(kit, keys, form: str) -> None:
    path = signed(kit, keys, form)
    assert verify(path, [keys["alice.pub"]]) == key_id(keys["alice.pub"])
    with modelpack.load(path, trusted_keys=[keys["alice.pub"]]) as model:
        np.testing.assert_array_equal(model.predict(np.zeros((1, 4), np.float32)), np.ones((1, 4)))
    assert sorted(p.name for p in path.parent.iterdir() if p.name not in ("keys", path.name)) == []


@pytest.mark.parametrize("form", FORMS)
def test_signing_keeps_the_exact_manifest_bytes_and_files(kit, keys, form: str) -> None:
    path = kit.package(form)
    with open_package(path) as pkg:
        before = (pkg.manifest_bytes, {f.path: pkg.read_bytes(f.path) for f in pkg.manifest.files})
    sign(path, keys["alice"])
    with open_package(path) as pkg:
        assert (pkg.manifest_bytes, {f.path: pkg.read_bytes(f.path) for f in pkg.manifest.files}) == before
        assert pkg.signature is not None


@pytest.mark.parametrize("trusted", ["path", "str-path", "pem-bytes", "pem-text", "openssh", "raw", "object",
                                     "single"])
def test_public_keys_are_accepted_in_every_form(kit, keys, trusted: str) -> None:
    pub = keys["alice.pub"]
    key = serialization.load_pem_public_key(pub.read_bytes())
    forms = {
        "path": [pub], "str-path": [str(pub)], "pem-bytes": [pub.read_bytes()],
        "pem-text": [pub.read_text()], "object": [key], "single": pub,
        "openssh": [key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)],
        "raw": [key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)],
    }
    assert verify(signed(kit, keys, "pkg.mpk"), forms[trusted]) == key_id(pub)


def test_several_signers_and_re_signing(kit, keys) -> None:
    path = signed(kit, keys, "pkg.mpk", "alice", "mallory", "alice")
    with open_package(path) as pkg:
        document = json.loads(pkg.signature)
    assert sorted(s["key_id"] for s in document["signatures"]) == sorted(
        [key_id(keys["alice.pub"]), key_id(keys["mallory.pub"])])  # alice's second signature replaced her first
    assert verify(path, [keys["mallory.pub"]]) == key_id(keys["mallory.pub"])
    assert verify(path, [keys["alice.pub"]]) == key_id(keys["alice.pub"])


# -- refusals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_an_unsigned_package_is_refused_when_keys_are_given(kit, keys, form: str) -> None:
    path = kit.package(form)
    with pytest.raises(SignatureError, match="not signed"):
        verify(path, [keys["alice.pub"]])
    with pytest.raises(SignatureError, match="not signed"):
        modelpack.load(path, trusted_keys=[keys["alice.pub"]])


@pytest.mark.parametrize("form", FORMS)
def test_a_package_signed_by_an_untrusted_key_is_refused(kit, keys, form: str) -> None:
    path = signed(kit, keys, form, "mallory")
    with pytest.raises(SignatureError, match="none of them is trusted") as info:
        modelpack.load(path, trusted_keys=[keys["alice.pub"]])
    assert key_id(keys["mallory.pub"])[:16] in str(info.value)


def test_no_trusted_keys_is_an_error_not_a_pass(kit, keys) -> None:
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify(signed(kit, keys, "pkg.mpk"), [])


@pytest.mark.parametrize("form", FORMS)
def test_a_manifest_changed_after_signing_is_refused(kit, keys, form: str) -> None:
    """The manifest is not covered by a checksum; the signature is what protects it."""
    path = signed(kit, keys, form)
    with open_package(path) as pkg:
        files = {f.path: pkg.read_bytes(f.path) for f in pkg.manifest.files}
        changed = pkg.manifest_bytes.replace(b'"name": "add-one"', b'"name": "add-two"')
        signature = pkg.signature
    _rewrite(kit, path, changed, files, signature)
    open_package(path).close()  # still a valid package ...
    with pytest.raises(SignatureError, match="does not match the manifest"):
        verify(path, [keys["alice.pub"]])  # ... but not the one alice signed


@pytest.mark.parametrize("stride", [pytest.param(1, marks=pytest.mark.slow), 11])
def test_every_byte_of_the_manifest_is_covered(kit, keys, stride: int) -> None:
    path = signed(kit, keys, "pkg")
    original = (path / MANIFEST_NAME).read_bytes()
    trusted = serialization.load_pem_public_key(keys["alice.pub"].read_bytes())
    where = sorted({*range(0, len(original), stride), len(original) - 1})
    refused = 0
    for at in where:
        (path / MANIFEST_NAME).write_bytes(original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1:])
        with pytest.raises(ModelpackError):  # unreadable, failing a checksum, or failing the signature
            with open_package(path) as pkg:
                verify_signature(pkg, [trusted])
        refused += 1
    assert refused == len(where)


def test_a_file_changed_after_signing_is_refused_before_the_signature(kit, keys) -> None:
    path = signed(kit, keys, "pkg")
    (path / "extra" / "labels.json").write_bytes(b'{"0": "one"}\n')
    with pytest.raises(PackageIntegrityError):
        modelpack.load(path, trusted_keys=[keys["alice.pub"]])


def test_a_signature_moved_from_another_package_is_refused(kit, keys) -> None:
    first = signed(kit, keys, "first")
    second = kit.package("second", kit.files(**{"extra/other.txt": b"other"}))
    (second / SIGNATURE_NAME).write_bytes((first / SIGNATURE_NAME).read_bytes())
    with pytest.raises(SignatureError, match="does not match"):
        verify(second, [keys["alice.pub"]])


def test_a_signature_without_the_context_prefix_is_refused(kit, keys) -> None:
    path = kit.package("pkg")
    private = serialization.load_pem_private_key(keys["alice"].read_bytes(), None)
    bare = private.sign((path / MANIFEST_NAME).read_bytes())  # the same bytes, no domain separation
    document = {"format": "modelpack-signature/1", "signatures": [
        {"algorithm": "ed25519", "key_id": key_id(keys["alice.pub"]), "signature": base64.b64encode(bare).decode()}]}
    (path / SIGNATURE_NAME).write_text(json.dumps(document))
    with pytest.raises(SignatureError, match="does not match"):
        verify(path, [keys["alice.pub"]])


@pytest.mark.parametrize("content", [b"", b"\xff", b"[]", b'{"format": "other/1", "signatures": []}',
                                     b'{"format": "modelpack-signature/1", "signatures": [{"key_id": 1}]}',
                                     b'{"format": "modelpack-signature/1", "signatures": "x"}'])
def test_a_malformed_signature_file_is_refused(kit, keys, content: bytes) -> None:
    path = kit.package("pkg")
    (path / SIGNATURE_NAME).write_bytes(content)
    with pytest.raises(SignatureError, match="malformed"):
        verify(path, [keys["alice.pub"]])


def test_a_bad_base64_signature_is_refused(kit, keys) -> None:
    path = signed(kit, keys, "pkg")
    document = json.loads((path / SIGNATURE_NAME).read_bytes())
    document["signatures"][0]["signature"] = "not base64!"
    (path / SIGNATURE_NAME).write_text(json.dumps(document))
    with pytest.raises(SignatureError, match="does not match"):
        verify(path, [keys["alice.pub"]])


def test_a_huge_signature_file_is_refused(kit) -> None:
    path = kit.package("pkg")
    (path / SIGNATURE_NAME).write_bytes(b" " * (2**20))
    with pytest.raises(UnsafePackageError, match="modelpack.sig is larger"):
        open_package(path)


def test_signing_a_damaged_package_is_refused_and_leaves_it_alone(kit, keys) -> None:
    path = kit.package("pkg.mpk")
    data = bytearray(path.read_bytes())
    data[data.find(kit.model) + 10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(PackageIntegrityError):
        sign(path, keys["alice"])
    assert path.read_bytes() == bytes(data)


# -- bad keys -----------------------------------------------------------------------------------------
def test_a_private_key_given_as_trusted_is_refused(kit, keys) -> None:
    with pytest.raises(SignatureError, match="private key was given"):
        verify(signed(kit, keys, "pkg"), [keys["alice"]])


def test_non_ed25519_keys_are_refused(kit, keys, tmp_path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "rsa"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(SignatureError, match="not an Ed25519 key"):
        sign(kit.package("pkg"), private)
    with pytest.raises(SignatureError, match="not an Ed25519 key"):
        verify(signed(kit, keys, "pkg2"), [public])


@pytest.mark.parametrize("bad", [b"", b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_garbage_keys_are_refused(kit, keys, bad: bytes) -> None:
    with pytest.raises(SignatureError, match="not a public key"):
        verify(signed(kit, keys, "pkg"), [bad])


def test_a_missing_key_file_is_refused(kit, keys, tmp_path) -> None:
    with pytest.raises(SignatureError, match="cannot be read"):
        verify(signed(kit, keys, "pkg"), [tmp_path / "absent.pub"])


def test_an_encrypted_private_key_needs_its_password(kit, tmp_path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "locked"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"s3cret")))
    path = kit.package("pkg")
    with pytest.raises(SignatureError, match="password"):
        sign(path, private)
    with pytest.raises(SignatureError):
        sign(path, private, password="wrong")
    sign(path, private, password="s3cret")
    assert verify(path, [key.public_key()]) == key_id(key.public_key())


def test_openssh_private_keys_can_sign(kit, tmp_path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    path = kit.package("pkg.mpk")
    sign(path, private)
    assert verify(path, [key.public_key()]) == key_id(key.public_key())


def test_without_cryptography_the_error_names_the_extra(kit, keys) -> None:
    path = signed(kit, keys, "pkg")
    script = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from modelpack.errors import ModelpackError\n"
        "from modelpack._package import open_package\n"
        "from modelpack._package.signing import verify_signature\n"
        "try:\n"
        f"    verify_signature(open_package({str(path)!r}), [{str(keys['alice.pub'])!r}])\n"
        "except ModelpackError as exc:\n"
        "    print(type(exc).__name__, exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(modelpack.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "modelpack[sign]" in out.stdout, out.stdout + out.stderr


# -- the command line ---------------------------------------------------------------------------------
def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="modelpack")
    _cli_sign.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_keygen_and_sign(kit, tmp_path, capsys) -> None:
    private = tmp_path / "release"
    assert _cli("keygen", str(private)) == 0
    out = capsys.readouterr().out
    assert key_id(Path(f"{private}.pub")) in out and "keep it secret" in out
    path = kit.package("pkg.mpk")
    assert _cli("sign", str(path), "--key", str(private)) == 0
    assert "signed" in capsys.readouterr().out
    assert verify(path, [Path(f"{private}.pub")]) == key_id(Path(f"{private}.pub"))


def test_cli_sign_with_a_password_from_the_environment(kit, tmp_path, monkeypatch) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "locked"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"pw")))
    path = kit.package("pkg")
    with pytest.raises(ModelpackError, match="MP_TEST_PASSWORD is not set"):
        _cli("sign", str(path), "--key", str(private), "--password-env", "MP_TEST_PASSWORD")
    monkeypatch.setenv("MP_TEST_PASSWORD", "pw")
    assert _cli("sign", str(path), "--key", str(private), "--password-env", "MP_TEST_PASSWORD") == 0


def _rewrite(kit, path: Path, manifest: bytes, files: dict[str, bytes], signature: bytes) -> None:
    """Put a package back together with a changed manifest and the old signature."""
    if path.is_dir():
        (path / MANIFEST_NAME).write_bytes(manifest)
        return
    kit.zip([(MANIFEST_NAME, manifest), *files.items(), (SIGNATURE_NAME, signature)], name=path.name)


def test_verify_with_trusted_keys_checks_the_signature_once(kit, keys, monkeypatch) -> None:
    from modelpack import _package

    path = signed(kit, keys, "pkg.mpk")
    checked = []
    real = _package.verify_signature

    def counted(package, trusted):
        checked.append(package.path)
        return real(package, trusted)

    monkeypatch.setattr(_package, "verify_signature", counted)
    report = modelpack.verify(path, trusted_keys=[keys["alice.pub"]])
    assert report.ok and len(checked) == 1
    detail = next(detail for name, ok, detail in report.checks if name == "signature" and ok)
    assert detail == f"signed by trusted key {key_id(keys['alice.pub'])[:16]}…"
