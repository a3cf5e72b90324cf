"""``modelpack keygen PATH`` and ``modelpack sign PACKAGE --key KEY``.

Imports nothing optional until a command runs, so the commands exist (and say
what to install) even without the ``sign`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ModelpackError

__all__ = ["add_parsers"]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keygen`` and ``sign`` sub-commands to the ``modelpack`` command."""
    p = subparsers.add_parser("keygen", help="make an Ed25519 key pair for signing packages",
                              description="Write a private key to PATH and its public key to PATH.pub.")
    p.add_argument("path", help="where to write the private key (the public key goes to PATH.pub)")
    p.set_defaults(handler=run_keygen)

    p = subparsers.add_parser("sign", help="sign a package with an Ed25519 private key",
                              description="Add or replace this key's signature in modelpack.sig. "
                                          "Loaders check it with load(..., trusted_keys=[KEY.pub]).")
    p.add_argument("package", help="a package folder or .mpk archive")
    p.add_argument("--key", required=True, help="the private key file made by `modelpack keygen`")
    p.add_argument("--password-env", metavar="VAR",
                   help="name of an environment variable holding the key's password, if it has one")
    p.set_defaults(handler=run_sign)


def run_keygen(args: argparse.Namespace) -> int:
    """Handler of ``modelpack keygen``."""
    from .._package import generate_key, key_id

    public = generate_key(args.path)
    sys.stdout.write(f"private key: {args.path} (keep it secret)\n"
                     f"public key:  {public} (key id {key_id(public)})\n")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    """Handler of ``modelpack sign``."""
    from .._package import sign

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise ModelpackError(f"the environment variable {args.password_env} is not set",
                                 fix="Set it to the key's password, or leave out --password-env.")
    signer = sign(args.package, args.key, password=password)
    sys.stdout.write(f"signed {args.package} with key {signer}\n")
    return 0
