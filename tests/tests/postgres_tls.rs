//! TLS to a real PostgreSQL with `ssl=on` that accepts TCP over TLS only: every `sslmode` the
//! adapter accepts means what libpq says it means, and every connection the adapter opens
//! (pools and the event store's listener) is encrypted.

use ledger_postgres::{Database, DatabaseError, PostgresStore};
use ledger_tests::ledger::wait_until_within;
use ledger_tests::tls_postgres::TlsCluster;
use std::path::Path;

/// How long a test waits for the event store's listener to connect.
const LISTENER_DEADLINE_MS: u64 = 10_000;

/// A name that reaches the server through `hostaddr` but that its certificate does not name.
const UNNAMED_HOST: &str = "ledger-db.invalid";

fn encoded(path: &Path) -> String {
    path.display().to_string().replace('/', "%2F")
}

/// Whether the session `database` hands out runs over TLS, as the server sees it.
async fn session_is_encrypted(database: &Database) -> Result<bool, DatabaseError> {
    let client = database.client().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(DatabaseError::query("pg_stat_ssl"))?;
    Ok(row.get(0))
}

async fn connects(url: &str) -> Result<bool, DatabaseError> {
    let database = Database::from_url(url, 1)?;
    session_is_encrypted(&database).await
}

#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    let cluster = TlsCluster::start();
    let encrypted = connects(&cluster.url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap_or_else(|e| panic!("sslmode=require must connect: {e}"));
    assert!(encrypted, "the session must run over TLS");
}

#[tokio::test]
async fn the_default_sslmode_prefers_tls_when_the_server_offers_it() {
    let cluster = TlsCluster::start();
    let encrypted = connects(&cluster.url("127.0.0.1", "application_name=prefer-test"))
        .await
        .unwrap_or_else(|e| panic!("the default sslmode must connect: {e}"));
    assert!(encrypted);
}

#[tokio::test]
async fn sslmode_disable_is_refused_by_a_server_that_accepts_only_tls() {
    let cluster = TlsCluster::start();
    let error = connects(&cluster.url("127.0.0.1", "sslmode=disable"))
        .await
        .expect_err("a plain connection must be refused");
    let text = format!("{error:?}");
    assert!(
        text.contains("no encryption") || text.contains("pg_hba.conf"),
        "refused by the server's rules: {text}"
    );
}

#[tokio::test]
async fn verify_full_connects_with_the_servers_ca_by_name_and_by_address() {
    let cluster = TlsCluster::start();
    let root = encoded(&cluster.root_certificate());
    for host in ["localhost", "127.0.0.1"] {
        let url = cluster.url(host, &format!("sslmode=verify-full&sslrootcert={root}"));
        let encrypted = connects(&url)
            .await
            .unwrap_or_else(|e| panic!("verify-full at {host} must connect: {e}"));
        assert!(encrypted);
    }
}

#[tokio::test]
async fn verify_full_with_another_ca_is_refused() {
    let cluster = TlsCluster::start();
    let foreign = encoded(&cluster.foreign_root_certificate());
    for mode in ["verify-full", "verify-ca", "require"] {
        // `require` with a root certificate checks the chain, as libpq does.
        let url = cluster.url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={foreign}"),
        );
        let error = connects(&url)
            .await
            .expect_err("a server certificate from another CA must be refused");
        let text = format!("{error:?}");
        // The foreign CA has the same name as the real one: the chain is refused for its
        // signature.
        assert!(
            text.contains("InvalidCertificate"),
            "{mode}: refused for its certificate: {text}"
        );
    }
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_name_and_verify_ca_accepts_it() {
    let cluster = TlsCluster::start();
    let root = encoded(&cluster.root_certificate());
    let url = |mode: &str| {
        cluster.url(
            UNNAMED_HOST,
            &format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={root}"),
        )
    };
    let error = connects(&url("verify-full"))
        .await
        .expect_err("the certificate does not name the host");
    assert!(
        format!("{error:?}").contains("NotValidForName"),
        "{error:?}"
    );
    let encrypted = connects(&url("verify-ca"))
        .await
        .unwrap_or_else(|e| panic!("verify-ca checks the chain only: {e}"));
    assert!(encrypted);
}

#[tokio::test]
async fn verify_full_without_a_root_certificate_trusts_only_public_roots() {
    let cluster = TlsCluster::start();
    let error = connects(&cluster.url("localhost", "sslmode=verify-full"))
        .await
        .expect_err("a private CA is not a public root");
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
}

#[tokio::test]
async fn every_connection_of_the_event_store_is_encrypted() {
    let cluster = TlsCluster::start();
    let root = encoded(&cluster.root_certificate());
    let url = cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={root}&application_name=tls-store"),
    );
    let database = Database::from_url(&url, 4).unwrap();
    let _store = PostgresStore::open(database.clone())
        .await
        .unwrap_or_else(|e| panic!("the store opens over TLS: {e}"));
    let observer = Database::from_url(&url, 1).unwrap();
    wait_until_within(
        "the store's listener connects",
        LISTENER_DEADLINE_MS,
        || async {
            let client = observer.client().await.unwrap();
            let row = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE a.query LIKE 'LISTEN%'), \
                        count(*) FILTER (WHERE NOT s.ssl), count(*) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = current_database() AND a.application_name = 'tls-store'",
                    &[],
                )
                .await
                .unwrap();
            let (listeners, plain, sessions): (i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2));
            assert_eq!(plain, 0, "{plain} of {sessions} sessions without TLS");
            listeners >= 1
        },
    )
    .await;
}
