//! The statistics keeper: tables that grew since they were last analyzed (or never were) are
//! analyzed, so plans made while they were empty do not live on.

use ledger_postgres::statistics::{analyze_stale, ANALYZE_CHANGED_ROWS_MIN};
use ledger_tests::postgres::postgres_store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_grew_are_analyzed_and_unchanged_ones_left_alone() {
    let (_store, database) = postgres_store().await;
    let pool = database.database(2);
    let client = pool.pool().get().await.unwrap();
    let rows = ANALYZE_CHANGED_ROWS_MIN * 2;
    client
        .execute(
            "INSERT INTO event_store.answers (scope, key, fingerprint, answer) \
             SELECT 'principal:test', 'key-' || n, 'f', '{}' FROM generate_series(1, $1::bigint) n",
            &[&rows],
        )
        .await
        .unwrap();
    // The server reports a session's counters at its next transaction end; make this one now
    // rather than when the connection has idled for a while.
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    drop(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let analyzed = analyze_stale(&pool).await.unwrap();
        if analyzed.iter().any(|t| t == "event_store.answers") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "event_store.answers was never found stale: {analyzed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let client = pool.pool().get().await.unwrap();
    let last_analyze: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT last_analyze FROM pg_stat_user_tables \
             WHERE schemaname = 'event_store' AND relname = 'answers'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(last_analyze.is_some());
    // Nothing changed since: the next look does not analyze it again.
    let again = analyze_stale(&pool).await.unwrap();
    assert!(
        !again.contains(&"event_store.answers".to_owned()),
        "{again:?}"
    );
}
