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

/// The store-wide log is visible up to the oldest running transaction that has an id, so an
/// analysis must not keep one open across tables: blocked before its second table, the keeper's
/// session holds no transaction id and the log's bound is not held back by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_hold_no_transaction_id_between_tables_so_followers_are_never_held_back() {
    let (_store, database) = postgres_store().await;
    let pool = database.database(3);
    let setup = pool.pool().get().await.unwrap();
    // A read-model-like schema of the test's own (watched: `rm_` schemas), two tables analyzed
    // in name order: `a` first, then `b`.
    let schema = format!("rm_stattest_{}", uuid::Uuid::new_v4().simple());
    let rows = ANALYZE_CHANGED_ROWS_MIN * 2;
    setup
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.a (n bigint); CREATE TABLE {schema}.b (n bigint); \
             INSERT INTO {schema}.a SELECT generate_series(1, {rows}); \
             INSERT INTO {schema}.b SELECT generate_series(1, {rows}); \
             SELECT pg_stat_force_next_flush();"
        ))
        .await
        .unwrap();
    // Wait until the server reports both as changed (the counters arrive at a transaction end).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reported: i64 = setup
            .query_one(
                "SELECT count(*) FROM pg_stat_user_tables \
                 WHERE schemaname = $1 AND n_mod_since_analyze >= $2",
                &[&schema, &rows],
            )
            .await
            .unwrap()
            .get(0);
        if reported == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the inserts were never reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Hold `b` with a lock ANALYZE waits for; LOCK assigns no transaction id.
    let mut holder = pool.pool().get().await.unwrap();
    let blocker = holder.transaction().await.unwrap();
    blocker
        .batch_execute(&format!(
            "LOCK TABLE {schema}.b IN SHARE UPDATE EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    let keeper = tokio::spawn({
        let pool = pool.clone();
        async move { analyze_stale(&pool).await }
    });
    let analyze_b = format!("ANALYZE {schema}.b");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let keeper_xid: Option<String> = loop {
        let row = setup
            .query_opt(
                "SELECT backend_xid::text FROM pg_stat_activity \
                 WHERE query = $1 AND wait_event_type = 'Lock'",
                &[&analyze_b],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the keeper never reached {schema}.b"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    blocker.commit().await.unwrap();
    let analyzed = keeper.await.unwrap().unwrap();
    assert_eq!(
        keeper_xid, None,
        "the keeper held a transaction id from its analysis of {schema}.a while it waited for \
         {schema}.b: every follower of the log would have waited with it"
    );
    let a = format!("{schema}.a");
    let b = format!("{schema}.b");
    let position = |t: &String| analyzed.iter().position(|x| x == t);
    assert!(
        position(&a).is_some() && position(&a) < position(&b),
        "{analyzed:?}"
    );
    // The lock was released: another look may run (and finds nothing of ours stale).
    let again = analyze_stale(&pool).await.unwrap();
    assert!(!again.contains(&a) && !again.contains(&b), "{again:?}");
}
