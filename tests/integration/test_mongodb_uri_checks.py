"""MONGODB_URI at start: a URI that cannot work, or a server refusing the user,
ends a master or worker at once with one line; the right user starts it; a
server that does not answer is only a warning (workers spool)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from cronswarm.common import Settings
from cronswarm.devservices import MongoServer, free_port
from tests.procs import start_and_wait, the_error


@pytest.fixture(scope="module")
def mongo_with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A MongoDB-protocol server with authentication on and a user 'cron'
    (password 'cron-pw', defined in admin) who may read and write 'jobs'."""
    server = MongoServer(tmp_path_factory.mktemp("mongodb"))
    server.start()
    try:
        client: MongoClient[dict[str, object]] = MongoClient(server.uri)
        client.admin.command("createUser", "cron", pwd="cron-pw",
                             roles=[{"role": "readWrite", "db": "jobs"}])
        client.close()
        server.stop()
        server.extra_args = ("--auth",)
        server.start()
        yield server
    finally:
        server.stop()


def uri(server: MongoServer, credentials: str, database: str = "jobs") -> str:
    return (f"mongodb://{credentials}{server.host}:{server.port}/{database}"
            "?directConnection=true&authSource=admin")


@pytest.mark.parametrize(("command", "credentials", "database", "expected"), [
    ("worker", "cron:wrong-pw@", "jobs",
     ("MongoDB refused the user in MONGODB_URI (authentication failed) — "
      "check its user name, password and authSource")),
    ("master", "", "jobs",
     ("MongoDB does not let us read database 'jobs' (command find requires "
      "authentication) — give MONGODB_URI a user (and authSource) with readWrite on it")),
    ("worker", "cron:cron-pw@", "elsewhere",
     "MongoDB does not let us read database 'elsewhere'"),
], ids=["wrong-password", "no-user", "other-database"])
async def test_a_refused_user_ends_the_start_with_one_line(
    settings: Settings, mongo_with_users: MongoServer, command: str, credentials: str,
    database: str, expected: str,
) -> None:
    own = settings.with_overrides(mongodb_uri=uri(mongo_with_users, credentials, database),
                                  mongodb_database=None)
    code, proc = await start_and_wait(command, own)
    assert code == 2, proc.lines
    assert the_error(proc).startswith(expected)


@pytest.mark.parametrize("command", ["worker", "master"])
async def test_the_right_user_starts(settings: Settings, mongo_with_users: MongoServer,
                                     command: str) -> None:
    own = settings.with_overrides(mongodb_uri=uri(mongo_with_users, "cron:cron-pw@"),
                                  mongodb_database=None)
    code, proc = await start_and_wait(command, own)
    assert code is None or code == 0, proc.lines  # it was ready; stopped by us
    assert not [line for line in proc.lines if "error" in line.lower()], proc.lines


@pytest.mark.parametrize(("mongodb_uri", "expected"), [
    ("db.example:27017", "MONGODB_URI: must start with mongodb:// or mongodb+srv://"),
    ("mongodb://127.0.0.1:1/?tls=yes-please",
     "MONGODB_URI: The value of tls must be 'true' or 'false'"),
    ("mongodb://127.0.0.1:1/?tls=true&tlsCAFile=/nonexistent/ca.pem",
     "MONGODB_URI: [Errno 2] The tlscafile file is not readable"),
])
async def test_a_uri_that_cannot_work_ends_the_start_with_one_line(
    settings: Settings, mongodb_uri: str, expected: str,
) -> None:
    code, proc = await start_and_wait("worker", settings.with_overrides(mongodb_uri=mongodb_uri))
    assert code == 2, proc.lines
    assert the_error(proc) == expected


async def test_an_unreachable_server_is_a_warning_and_the_worker_starts(
    settings: Settings,
) -> None:
    unreachable = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500"
    code, proc = await start_and_wait("worker", settings.with_overrides(mongodb_uri=unreachable))
    assert code is None or code == 0, proc.lines
    assert any("MongoDB does not answer at start-up" in line and "spool" in line
               for line in proc.lines), proc.lines
