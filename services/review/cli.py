"""Review-console accounts from the command line (the first admin, or a lost admin password):

    python -m services.review.cli create-admin USERNAME [--password-file FILE]
    python -m services.review.cli set-password USERNAME [--password-file FILE]

Without ``--password-file`` a password is generated and printed once. It connects with the
review service's settings (CHATPIC_MONGO_URI, CHATPIC_MONGO_DB); ``make admin USER=name``
points it at the ``make run`` database."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from pymongo.errors import PyMongoError

from services.review import accounts
from services.review.accounts import AccountStore, Role
from services.review.settings import ReviewSettings
from services.shared.accountrepo import AccountRepo, LoginFailureRepo, SessionRepo
from services.shared.errors import DomainError
from services.shared.mongo import database, make_client
from services.shared.repos import AuditRepo

ACTOR = "cli"


def _password(path: str | None) -> str | None:
    if path is None:
        return None
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return text.rstrip("\r\n") or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.review.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("create-admin", "create an admin account"),
        ("set-password", "give an existing account a new password (its sessions end)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("username")
        command.add_argument(
            "--password-file", help="read the password from this file ('-' = stdin)"
        )
    args = parser.parse_args(argv)
    settings = ReviewSettings()
    client = make_client(settings)
    try:
        db = database(client, settings)
        store = AccountStore(AccountRepo(db), SessionRepo(db), LoginFailureRepo(db), AuditRepo(db))
        store.ensure_indexes()
        password = _password(args.password_file)
        now = datetime.now(UTC)
        if args.command == "create-admin":
            made = accounts.create_account(
                store,
                username=args.username,
                role=Role.ADMIN,
                password=password,
                created_by=ACTOR,
                now=now,
            )
            username, generated = made.username, made.password
            print(f"Admin {username} created.")
        else:
            username = accounts.normalize_username(args.username)
            generated = accounts.set_password(
                store, username=username, password=password, by=ACTOR, now=now
            )
            print(f"Password of {username} changed; its sessions ended.")
        if generated is not None:
            print(f"Password (shown once): {generated}")
    except DomainError as exc:
        print(f"error: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PyMongoError as exc:
        print(
            f"error: the database at {settings.mongo_uri} did not answer ({type(exc).__name__});"
            " is the stack running (make run)?",
            file=sys.stderr,
        )
        return 2
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
