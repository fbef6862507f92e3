//! Where a projection's tables live: one PostgreSQL schema per projection, named
//! `rm_<projection>`, holding the read model tables and the projection's checkpoint.
//!
//! The DDL of a projection is a template with the schema name substituted, so the same tables
//! can be created in a shadow schema (`rm_<projection>__shadow`) that a rebuild fills and then
//! swaps in by renaming schemas in one transaction. Apply and query code therefore always takes
//! the schema name as a value and never spells `rm_...` itself.

use crate::projection::Projection;
use crate::schema_name::{check_identifier, SchemaName};
use ledger_postgres::migrate::{migrate, Migration};
use ledger_postgres::DatabaseError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The placeholder in DDL templates that is replaced by the schema name.
const SCHEMA_PLACEHOLDER: &str = "{schema}";

/// The placeholder in DDL templates that is replaced by the projection name.
const PROJECTION_PLACEHOLDER: &str = "{projection}";

/// The checkpoint table every projection schema holds: one row, the projection's position in
/// the store-wide log as (commit, prepare), how many events it applied, and its last error.
/// It lives beside the read model so that a schema swap moves the checkpoint with the data.
const CHECKPOINT_DDL: &str = "
CREATE SCHEMA {schema};

CREATE TABLE {schema}.checkpoint (
    projection       text        PRIMARY KEY CHECK (projection = '{projection}'),
    position_commit  bigint,
    position_prepare bigint,
    events_applied   bigint      NOT NULL DEFAULT 0 CHECK (events_applied >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    last_error_at    timestamptz,
    CHECK ((position_commit IS NULL) = (position_prepare IS NULL))
);

INSERT INTO {schema}.checkpoint (projection) VALUES ('{projection}');
";

/// The full DDL of `projection` rendered for `schema`: the schema, its checkpoint table and row,
/// and the projection's own tables.
pub fn render_ddl(projection: &dyn Projection, schema: &SchemaName) -> String {
    check_identifier(projection.name()).expect("projection names are valid identifiers");
    let template = format!("{CHECKPOINT_DDL}\n{}", projection.ddl_template());
    template
        .replace(SCHEMA_PLACEHOLDER, schema.as_str())
        .replace(PROJECTION_PLACEHOLDER, projection.name())
}

/// The migration component of a projection's live schema, in `public.ledger_migrations`.
pub fn migration_component(projection: &dyn Projection) -> String {
    format!("read_model.{}", projection.name())
}

/// Create the live schema of `projection` if this database does not have it yet (version 1 is
/// the template applied to `rm_<projection>`), then bring it up to date with the projection's
/// [`Projection::upgrades`] (versions 2, 3, …). Safe to call from several processes at once:
/// the migration runner serialises them.
pub async fn migrate_live(
    client: &mut tokio_postgres::Client,
    projection: &dyn Projection,
) -> Result<(), DatabaseError> {
    let schema = SchemaName::live(projection.name());
    let mut migrations = vec![Migration {
        version: 1,
        name: "tables",
        sql: live_sql(projection.name(), "", || render_ddl(projection, &schema)),
    }];
    for (step, upgrade) in projection.upgrades().iter().enumerate() {
        migrations.push(Migration {
            version: step as i32 + 2,
            name: upgrade.name,
            sql: live_sql(projection.name(), upgrade.name, || {
                render_statement(upgrade.sql, &schema)
            }),
        });
    }
    migrate(client, &migration_component(projection), &migrations).await
}

/// A script of `projection`'s live schema (the DDL, or the upgrade `step` names) rendered for
/// it, as the `&'static str` the migration runner takes. Rendered once per projection and step
/// and kept for the process's lifetime: a few kilobytes for each projection, however often
/// the read models are opened.
fn live_sql(
    projection: &'static str,
    step: &'static str,
    render: impl FnOnce() -> String,
) -> &'static str {
    type Rendered = BTreeMap<(&'static str, &'static str), &'static str>;
    static RENDERED: Mutex<Rendered> = Mutex::new(BTreeMap::new());
    let mut rendered = RENDERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    rendered
        .entry((projection, step))
        .or_insert_with(|| Box::leak(render().into_boxed_str()))
}

/// Create `schema` with the tables of `projection`, stamped with the DDL's fingerprint. Fails if
/// the schema exists.
pub async fn create_schema(
    client: &mut tokio_postgres::Client,
    projection: &dyn Projection,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    create_stamped(client, projection, schema, false).await
}

/// Create a rebuild's shadow `schema`: [`create_schema`] without the projection's deferred
/// indexes (see [`Projection::deferred_indexes`]), in one transaction, so that a shadow exists
/// either whole or not at all. Fails if the schema exists: a rebuild decides explicitly whether
/// to drop a leftover shadow first.
pub async fn create_shadow_schema(
    client: &mut tokio_postgres::Client,
    projection: &dyn Projection,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    create_stamped(client, projection, schema, true).await
}

async fn create_stamped(
    client: &mut tokio_postgres::Client,
    projection: &dyn Projection,
    schema: &SchemaName,
    defer_indexes: bool,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&render_ddl(projection, schema))
        .await?;
    if defer_indexes {
        for index in projection.deferred_indexes() {
            transaction
                .batch_execute(&render_statement(index.drop, schema))
                .await?;
        }
    }
    transaction
        .batch_execute(&format!(
            "COMMENT ON SCHEMA {schema} IS '{}'",
            ddl_fingerprint(projection)
        ))
        .await?;
    transaction.commit().await
}

/// A statement template with the schema name substituted.
pub fn render_statement(template: &str, schema: &SchemaName) -> String {
    template.replace(SCHEMA_PLACEHOLDER, schema.as_str())
}

/// The names of the indexes in `schema` (those that back constraints included).
pub async fn index_names<C: tokio_postgres::GenericClient>(
    client: &C,
    schema: &SchemaName,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
            &[&schema.as_str()],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The fingerprint stamped on `schema` by [`create_schema`]; `None` when the schema does not
/// exist, `Some(None)` when it carries no stamp.
pub async fn schema_fingerprint(
    client: &tokio_postgres::Client,
    schema: &SchemaName,
) -> Result<Option<Option<String>>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            &[&schema.as_str()],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// A fingerprint of a projection's rendered DDL (FNV-1a, 64 bits, stable across builds and
/// platforms, unlike the standard library's hasher). A rebuild stamps it on the shadow schema
/// and starts over when a leftover shadow was built from different DDL.
pub fn ddl_fingerprint(projection: &dyn Projection) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let rendered = render_ddl(projection, &SchemaName::live(projection.name()));
    let hash = rendered.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("ddl:{hash:016x}")
}

/// Drop `schema` and everything in it, if it exists.
pub async fn drop_schema(
    client: &tokio_postgres::Client,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
}
