"""``python -m shared.admin create-super-admin --email ... --name ...``: the first super admin.

No endpoint creates a super admin without one: this command, run where the database
is reachable, is how a platform gets its first. The password is read from the
terminal (asked twice), or from standard input with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from pydantic import EmailStr, TypeAdapter, ValidationError

from shared.admin import super_admins
from shared.db import session_scope
from shared.errors import DomainError

#: The shortest password accepted (the API's own minimum).
MIN_PASSWORD = 10
#: The longest full name accepted (the API's own maximum, the column's size).
MAX_NAME = 200
#: The login route's email check: an address it refuses could never log in.
_EMAIL = TypeAdapter(EmailStr)


def _password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise SystemExit("The passwords differ")
    return first


def main(
    argv: list[str] | None = None, *, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout
) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-super-admin", help="create a super-admin account")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True, help="full name")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    args = parser.parse_args(argv)
    password = _password(args.password_stdin, stdin)
    if len(password) < MIN_PASSWORD:
        print(f"error: the password needs at least {MIN_PASSWORD} characters", file=out)
        return 2
    try:
        email = _EMAIL.validate_python(args.email.strip())
    except ValidationError:
        print("error: --email is not an email address the login accepts", file=out)
        return 2
    name = args.name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        print(f"error: --name needs 1 to {MAX_NAME} characters", file=out)
        return 2
    try:
        with session_scope() as session:
            admin = super_admins.create(session, email=email, full_name=name, password=password)
            admin_id = admin.id
    except DomainError as exc:
        print(f"error: {exc.message}", file=out)
        return 1
    print(f"super admin {admin_id} created for {args.email}", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
