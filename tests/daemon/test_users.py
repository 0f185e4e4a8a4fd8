import pytest

from daemon.access import Principal
from daemon.auth import Credentials
from daemon.errors import AuthenticationRequired, Forbidden, InvalidInput, NotFoundOrNoAccess
from daemon.index import LIBRARIES
from daemon.libraries import libraries_of


def create(services, email="u@example.com", **extra):
    return services.users.create(email=email, password="pw", name="U", **extra)


def test_every_user_gets_one_default_upload_library(services, index):
    user = create(services)
    with index.read() as txn:
        libraries = libraries_of(txn, user.id)
    assert [(lib.name, lib.type, lib.import_paths, lib.refreshed_at) for lib in libraries] == [
        ("Default Library", "UPLOAD", [], None)
    ]


def test_emails_are_unique_without_regard_to_case(services):
    create(services, "Someone@Example.com")
    with pytest.raises(InvalidInput, match="User exists"):
        create(services, "someone@example.COM")
    assert services.users.find_by_email("SOMEONE@example.com").email == "Someone@Example.com"


def test_a_failed_creation_leaves_no_library_behind(services, index):
    create(services, "x@example.com")
    with index.read() as txn:
        before = txn.count(LIBRARIES)
    with pytest.raises(InvalidInput):
        create(services, "X@example.com")
    with index.read() as txn:
        assert txn.count(LIBRARIES) == before


@pytest.mark.parametrize("email", ["nope", "a@", "@b.co", "a b@c.de", ""])
def test_bad_emails_use_class_validator_wording(services, email):
    with pytest.raises(InvalidInput) as caught:
        create(services, email)
    assert caught.value.message == ["email must be an email"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("/data/user1/", "/data/user1"),
        ("/data//user1/./x/..", "/data/user1"),
        ("", None),
        (None, None),
        ("/", "/"),
    ],
)
def test_external_path_is_normalised(services, given, stored):
    assert create(services, external_path=given).external_path == stored


def test_relative_external_path_is_refused(services):
    with pytest.raises(InvalidInput, match="External path must be absolute"):
        create(services, external_path="data/user1")


def test_admin_sign_up_only_while_there_is_no_admin(services):
    admin = services.users.admin_sign_up(email="a@example.com", password="pw", name="A")
    assert admin.is_admin and admin.storage_label == "admin"
    with pytest.raises(InvalidInput, match="The server already has an admin"):
        services.users.admin_sign_up(email="b@example.com", password="pw", name="B")


def test_users_cannot_set_admin_only_fields_on_themselves(services):
    user = create(services)
    changes = {"name": "New", "external_path": "/etc", "is_admin": True, "quota_size_in_bytes": 1}
    updated = services.users.update(user.id, changes, as_admin=False)
    assert (updated.name, updated.external_path, updated.is_admin, updated.quota_size_in_bytes) == (
        "New",
        None,
        False,
        None,
    )
    updated = services.users.update(user.id, {"external_path": "/srv/photos/"}, as_admin=True)
    assert updated.external_path == "/srv/photos"


def test_changing_email_moves_the_lookup(services):
    user = create(services, "old@example.com")
    services.users.update(user.id, {"email": "new@example.com"}, as_admin=False)
    assert services.users.find_by_email("old@example.com") is None
    assert services.users.find_by_email("new@example.com").id == user.id
    create(services, "old@example.com")  # the old address is free again


async def test_password_change_takes_effect(services):
    user = create(services)
    services.users.update(user.id, {"password": "second"}, as_admin=False)
    with pytest.raises(AuthenticationRequired, match="Incorrect email or password"):
        await services.auth.login(user.email, "pw")
    assert (await services.auth.login(user.email, "second")).user.id == user.id


async def test_deleting_a_user_revokes_their_credentials_and_libraries(services, index):
    admin = services.users.admin_sign_up(email="a@example.com", password="pw", name="A")
    user = create(services)
    login = await services.auth.login(user.email, "pw")
    key = services.api_keys.create(Principal(user=user), name="k", permissions=None)
    deleted = services.users.delete(Principal(user=admin), user.id)
    assert deleted.deleted_at is not None and deleted.status == "deleted"
    with pytest.raises(AuthenticationRequired, match="Invalid user token"):
        services.auth.authenticate(Credentials(bearer=login.access_token))
    with pytest.raises(AuthenticationRequired, match="Invalid API key"):
        services.auth.authenticate(Credentials(api_key=key.secret))
    with pytest.raises(AuthenticationRequired):
        await services.auth.login(user.email, "pw")
    with index.read() as txn:
        assert libraries_of(txn, user.id) == []
        assert all(lib.deleted_at for lib in libraries_of(txn, user.id, include_deleted=True))


def test_only_admins_delete_and_never_themselves(services):
    admin = services.users.admin_sign_up(email="a@example.com", password="pw", name="A")
    user = create(services)
    with pytest.raises(Forbidden):
        services.users.delete(Principal(user=user), admin.id)
    with pytest.raises(InvalidInput, match="Cannot delete your own account"):
        services.users.delete(Principal(user=admin), admin.id)


def test_storage_labels_are_unique(services):
    create(services, "a@example.com", storage_label="alice")
    with pytest.raises(InvalidInput, match="Storage label already exists"):
        create(services, "b@example.com", storage_label="alice")


def test_api_keys_are_personal_and_scoped(services):
    alice, bob = create(services, "alice@example.com"), create(services, "bob@example.com")
    key = services.api_keys.create(Principal(user=alice), name=None, permissions=["user.read"])
    assert key.api_key.name == "API Key" and key.api_key.permissions == ["user.read"]
    principal = services.auth.authenticate(Credentials(api_key=key.secret))
    principal.require_permission("user.read")
    with pytest.raises(Forbidden, match=r"Missing required permission: asset\.read"):
        principal.require_permission("asset.read")
    with pytest.raises(InvalidInput, match="Cannot grant"):  # a scoped key cannot mint a stronger one
        services.api_keys.create(principal, name="x", permissions=["all"])
    with pytest.raises(NotFoundOrNoAccess, match=r"Not found or no apiKey\.read access"):
        services.api_keys.get(Principal(user=bob), key.api_key.id)
    with pytest.raises(InvalidInput):
        services.api_keys.create(Principal(user=alice), name="x", permissions=["no.such"])


async def test_secrets_are_not_stored(services, index):
    user = create(services)
    key = services.api_keys.create(Principal(user=user), name="k", permissions=None)
    login = await services.auth.login(user.email, "pw")
    index.sync()
    raw = (index.path / "data.mdb").read_bytes()
    assert key.secret.encode() not in raw
    assert login.access_token.encode() not in raw
    assert user.password_hash.startswith("$argon2id$")


def test_the_last_admin_cannot_be_demoted_so_sign_up_stays_closed(services):
    admin = services.users.admin_sign_up(email="a@example.com", password="pw", name="A")
    with pytest.raises(InvalidInput, match="last admin"):
        services.users.update(admin.id, {"is_admin": False}, as_admin=True)
    with pytest.raises(InvalidInput, match="The server already has an admin"):
        services.users.admin_sign_up(email="evil@example.com", password="pw", name="Evil")
    second = create(services, "b@example.com", is_admin=True)
    services.users.update(admin.id, {"is_admin": False}, as_admin=True)  # another admin remains
    assert services.users.get(second.id).is_admin


def test_a_scoped_key_cannot_change_password_or_email(services):
    user = create(services)
    key = services.api_keys.create(Principal(user=user), name="k", permissions=["user.update"])
    scoped = services.auth.authenticate(Credentials(api_key=key.secret))
    assert services.users.update_own_profile(scoped, {"name": "Renamed"}).name == "Renamed"
    for changes in ({"password": "new"}, {"email": "x@example.com"}):
        with pytest.raises(Forbidden, match="Missing required permission: all"):
            services.users.update_own_profile(scoped, changes)


async def test_own_password_change_clears_the_flag_and_ends_other_sessions(services):
    user = create(services, should_change_password=True)
    first = await services.auth.login(user.email, "pw")
    second = await services.auth.login(user.email, "pw")
    current = services.auth.authenticate(Credentials(bearer=second.access_token))
    updated = services.users.update_own_profile(current, {"password": "new"})
    assert updated.should_change_password is False
    services.auth.authenticate(
        Credentials(bearer=second.access_token)
    )  # the session that changed it lives on
    with pytest.raises(AuthenticationRequired, match="Invalid user token"):
        services.auth.authenticate(Credentials(bearer=first.access_token))


@pytest.mark.parametrize("label", ["../../etc", "a/b", ".hidden", "x\n"])
def test_storage_labels_cannot_be_paths(services, label):
    with pytest.raises(InvalidInput, match="Invalid storage label"):
        create(services, storage_label=label)
