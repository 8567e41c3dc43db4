"""After fork() a child must not share the parent's HTTP connection to the identity endpoint."""

from __future__ import annotations

import os
import warnings

import pytest

from django_azure_pg import credentials, tokens
from django_azure_pg_testing import Identity, IdentityEmulator

from .conftest import SCOPE

pytestmark = pytest.mark.integration


def test_forked_children_get_their_own_credential(
    emulator: IdentityEmulator, identity: Identity
) -> None:
    choice = credentials.choose({"client_id": identity.client_id}, os.environ)
    source = tokens.get_source(choice.key(), choice.factory(), SCOPE, label=choice.name)
    first = source.get()  # the parent's credential now holds a keep-alive connection
    parent_credential = source._credential
    parent_credential._azpg_owner = "parent"  # type: ignore[union-attr]

    children = []
    for _ in range(3):
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            pid = os.fork()
        if pid == 0:  # pragma: no cover — runs in the child
            status = b"?"
            try:
                assert source.get() == first  # the inherited, still-valid token is kept
                source.invalidate(first)
                fresh = source.get()
                own = getattr(source._credential, "_azpg_owner", None) is None
                status = b"ok" if fresh != first and own else b"shared credential"
            except BaseException as exc:
                status = repr(exc).encode()[:300]
            finally:
                os.write(write, status)
                os._exit(0)
        os.close(write)
        children.append((pid, read))

    # Meanwhile the parent keeps using its own credential.
    source.invalidate(first)
    assert source.get() != first
    for pid, read in children:
        answer = os.read(read, 400)
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == b"ok"
