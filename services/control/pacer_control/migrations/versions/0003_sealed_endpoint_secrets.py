"""endpoint secrets sealed at rest

Header values and URL passwords move from plain columns into `endpoints.secrets`, sealed with the secrets key
(pacer_control.sealing); the `url` column keeps the URL with its password masked. Rows need the key, which
`pacer_control.database.migrate` hands over in the Alembic config's attributes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

from pacer_common.urls import split_password, with_password
from pacer_control.sealing import EndpointSecrets, Keyring

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ENDPOINTS = sa.table(
    "endpoints",
    sa.column("id", sa.String),
    sa.column("url", sa.String),
    sa.column("headers", sa.JSON),
    sa.column("secrets", sa.Text),
)


def _keyring() -> Keyring:
    keyring = context.config.attributes.get("keyring")
    if not isinstance(keyring, Keyring):
        raise RuntimeError("endpoints hold secrets to seal: migrate with the secrets key (PACER_SECRETS_KEYS)")
    return keyring


def _rows(*columns: Any) -> list[Any]:
    return list(op.get_bind().execute(sa.select(_ENDPOINTS.c.id, *columns)))


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("secrets", sa.Text(), nullable=True))
    plain = [row for row in _rows(_ENDPOINTS.c.url, _ENDPOINTS.c.headers) if row.headers or split_password(row.url)[1]]
    if plain:
        keyring = _keyring()
        for row in plain:
            shown, password = split_password(row.url)
            sealed = EndpointSecrets(dict(row.headers), password).seal(keyring, row.id)
            op.get_bind().execute(
                _ENDPOINTS.update().where(_ENDPOINTS.c.id == row.id).values(url=shown, secrets=sealed)
            )
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("headers")


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("headers", sa.JSON(), nullable=False, server_default="{}"))
    sealed = [row for row in _rows(_ENDPOINTS.c.url, _ENDPOINTS.c.secrets) if row.secrets is not None]
    if sealed:
        keyring = _keyring()
        for row in sealed:
            secrets = EndpointSecrets.open(keyring, row.id, row.secrets)
            op.get_bind().execute(
                _ENDPOINTS.update()
                .where(_ENDPOINTS.c.id == row.id)
                .values(url=with_password(row.url, secrets.password), headers=secrets.headers)
            )
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("secrets")
