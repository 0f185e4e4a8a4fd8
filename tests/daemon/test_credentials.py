"""Secrets are letters and digits only: a key starting with `-` would be read as an option by the Immich CLI."""

from daemon.credentials import new_secret


def test_secrets_are_long_alphanumeric_and_distinct():
    made = {new_secret() for _ in range(2000)}
    assert len(made) == 2000
    assert all(len(secret) == 43 and secret.isascii() and secret.isalnum() for secret in made)
