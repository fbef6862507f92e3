//! Versioned schema migrations. Each component (the event store, the read models) owns an
//! ordered list of SQL scripts; the ones not yet applied run in one transaction, under an
//! advisory lock so that several processes starting at once apply each script exactly once.

use crate::database::DatabaseError;
use futures::future::BoxFuture;
use tokio_postgres::{Client, Transaction};

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Key of the advisory lock that serialises migrations across processes ("ledger-migrate").
const MIGRATION_LOCK_KEY: i64 = 0x6c65_6467_6572_6d67;

/// A step a script cannot take (it needs the application's code, e.g. its hashing), run in the
/// migrations' transaction right after the script of the migration it belongs to.
pub type Backfill = for<'a> fn(&'a Transaction<'a>) -> BoxFuture<'a, Result<(), DatabaseError>>;

pub async fn migrate(
    client: &mut Client,
    component: &str,
    migrations: &[Migration],
) -> Result<(), DatabaseError> {
    migrate_with_backfills(client, component, migrations, &[]).await
}

/// [`migrate`], running each `(version, backfill)` right after that migration's script, in the
/// same transaction: the migration and its backfill land together, once, or not at all.
pub async fn migrate_with_backfills(
    client: &mut Client,
    component: &str,
    migrations: &[Migration],
    backfills: &[(i32, Backfill)],
) -> Result<(), DatabaseError> {
    assert!(
        migrations.windows(2).all(|w| w[0].version < w[1].version),
        "migrations of {component} must be listed in increasing version order"
    );
    let failed = |source: tokio_postgres::Error| DatabaseError::Migration {
        context: component.to_owned(),
        source,
    };
    let transaction = client.transaction().await.map_err(failed)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(failed)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.ledger_migrations (
                 component  text        NOT NULL,
                 version    integer     NOT NULL,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (component, version)
             )",
        )
        .await
        .map_err(failed)?;
    let applied: Option<i32> = transaction
        .query_one(
            "SELECT max(version) FROM public.ledger_migrations WHERE component = $1",
            &[&component],
        )
        .await
        .map_err(failed)?
        .get(0);
    let applied = applied.unwrap_or(0);
    for migration in migrations.iter().filter(|m| m.version > applied) {
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(|source| DatabaseError::Migration {
                context: format!(
                    "{component} migration {} ({})",
                    migration.version, migration.name
                ),
                source,
            })?;
        for (_, backfill) in backfills.iter().filter(|(v, _)| *v == migration.version) {
            backfill(&transaction).await?;
        }
        transaction
            .execute(
                "INSERT INTO public.ledger_migrations (component, version, name) VALUES ($1, $2, $3)",
                &[&component, &migration.version, &migration.name],
            )
            .await
            .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)
}
