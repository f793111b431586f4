"""Staff accounts: argon2id hashes, roles, the login lockout per username and client."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from cloud_sync.roster_sync import RosterSyncService
from edge.models import AuditEntry, StaffAccount, StaffRole
from edge.staff import LoginRefused, LoginThrottle, StaffAccounts, StaffError, StaffUser
from edge.store import Store
from tests.conftest import FakeClock
from tests.door import apply

PASSWORD = "correct horse battery"
# The real profile costs ~0.1 s and 64 MiB a hash; these tests check behaviour, not cost.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def accounts(store: Store, clock: FakeClock, ticker: Ticker) -> StaffAccounts:
    return StaffAccounts(store, hasher=CHEAP, throttle=LoginThrottle(monotonic=ticker), clock=clock)


def test_add_keeps_only_an_argon2id_hash(accounts: StaffAccounts, store: Store) -> None:
    user = accounts.add("  Maria ", StaffRole.DIRECTOR, PASSWORD)
    assert (user.username, user.role, user.actor_id, user.display_name) == (
        "maria",
        StaffRole.DIRECTOR,
        "user:maria",
        "maria",
    )
    with store.read() as session:
        row = session.get_one(StaffAccount, "maria")
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    with pytest.raises(StaffError, match="already an account"):
        accounts.add("MARIA", "teacher", PASSWORD)


def test_the_default_hasher_is_argon2id_at_rfc_9106_strength(store: Store) -> None:
    hasher = StaffAccounts(store).hasher
    assert (hasher.type.name, hasher.memory_cost, hasher.time_cost) == ("ID", 65536, 3)


@pytest.mark.parametrize(
    ("username", "password", "problem"),
    [
        ("", PASSWORD, "not a usable username"),
        ("maria smith", PASSWORD, "not a usable username"),
        ("-maria", PASSWORD, "not a usable username"),
        ("m" * 33, PASSWORD, "not a usable username"),
        ("maria", "short", "at least 10"),
        ("maria", "x" * 1025, "at most 1024"),
    ],
)
def test_bad_usernames_and_passwords_are_refused(
    accounts: StaffAccounts, username: str, password: str, problem: str
) -> None:
    with pytest.raises(StaffError, match=problem):
        accounts.add(username, "teacher", password)


def test_a_login_linked_to_a_teacher_acts_as_that_teacher(
    accounts: StaffAccounts, roster_sync: RosterSyncService
) -> None:
    apply(roster_sync)
    user = accounts.add("lee", "teacher", PASSWORD, teacher_id="E1")
    assert (user.actor_id, user.display_name, user.is_director) == ("E1", "Lee Park", False)
    with pytest.raises(StaffError, match="No teacher E404"):
        accounts.add("sam", "teacher", PASSWORD, teacher_id="E404")


def test_authenticate_right_wrong_and_unknown(accounts: StaffAccounts) -> None:
    accounts.add("maria", "director", PASSWORD)
    assert isinstance(accounts.authenticate("MARIA", PASSWORD, "10.0.0.5"), StaffUser)
    assert accounts.authenticate("maria", PASSWORD + "!", "10.0.0.5") == LoginRefused(locked=False)
    # An unknown name answers exactly like a wrong password.
    assert accounts.authenticate("nobody", PASSWORD, "10.0.0.5") == LoginRefused(locked=False)
    assert accounts.authenticate("bad name!", PASSWORD, "10.0.0.5") == LoginRefused(locked=False)


def test_five_wrong_passwords_lock_that_username_from_that_client_for_five_minutes(
    accounts: StaffAccounts, store: Store, ticker: Ticker
) -> None:
    accounts.add("maria", "director", PASSWORD)
    results = [accounts.authenticate("maria", "wrong password", "10.0.0.5") for _ in range(5)]
    assert results[:4] == [LoginRefused(locked=False)] * 4
    assert results[4] == LoginRefused(locked=True, retry_after_s=300)
    # Even the right password is refused while locked...
    assert accounts.authenticate("maria", PASSWORD, "10.0.0.5") == LoginRefused(locked=True, retry_after_s=300)
    # ...but only from that client: a mistyping colleague cannot lock the director out everywhere.
    assert isinstance(accounts.authenticate("maria", PASSWORD, "10.0.0.9"), StaffUser)
    ticker.now += 299
    assert accounts.authenticate("maria", PASSWORD, "10.0.0.5") == LoginRefused(locked=True, retry_after_s=1)
    ticker.now += 1
    assert isinstance(accounts.authenticate("maria", PASSWORD, "10.0.0.5"), StaffUser)
    with store.read() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "login")).all()
    assert [(r.actor_id, r.reason, r.detail) for r in rows] == [("user:maria", "locked", {"client": "10.0.0.5"})]


def test_failures_spread_over_more_than_the_window_do_not_lock(accounts: StaffAccounts, ticker: Ticker) -> None:
    accounts.add("maria", "director", PASSWORD)
    for _ in range(8):
        assert accounts.authenticate("maria", "wrong password", "10.0.0.5") == LoginRefused(locked=False)
        ticker.now += 100  # 3 failures per 300 s at most


def test_a_right_password_clears_the_count(accounts: StaffAccounts) -> None:
    accounts.add("maria", "director", PASSWORD)
    for _ in range(4):
        accounts.authenticate("maria", "wrong password", "10.0.0.5")
    assert isinstance(accounts.authenticate("maria", PASSWORD, "10.0.0.5"), StaffUser)
    assert accounts.authenticate("maria", "wrong password", "10.0.0.5") == LoginRefused(locked=False)


def test_passwd_and_disable(accounts: StaffAccounts, clock: FakeClock) -> None:
    before = accounts.add("maria", "director", PASSWORD)
    clock.advance(seconds=5)
    accounts.set_password("maria", "another good password")
    after = accounts.get("maria")
    assert after is not None
    assert after.password_changed_at > before.password_changed_at
    assert accounts.authenticate("maria", PASSWORD, "c") == LoginRefused(locked=False)
    assert isinstance(accounts.authenticate("maria", "another good password", "c"), StaffUser)
    accounts.set_active("maria", False)
    assert accounts.authenticate("maria", "another good password", "c") == LoginRefused(locked=False)
    assert [u.active for u in accounts.list()] == [False]
    with pytest.raises(StaffError, match="No account"):
        accounts.set_password("nobody", "another good password")


def test_a_weaker_old_hash_is_redone_at_login(store: Store, clock: FakeClock) -> None:
    StaffAccounts(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1), clock=clock).add(
        "maria", "director", PASSWORD
    )
    stronger = StaffAccounts(store, hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1), clock=clock)
    assert isinstance(stronger.authenticate("maria", PASSWORD, "c"), StaffUser)
    with store.read() as session:
        assert "m=16,t=2" in session.get_one(StaffAccount, "maria").password_hash
