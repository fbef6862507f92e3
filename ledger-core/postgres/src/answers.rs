//! Answers of keyed commands kept in PostgreSQL beside an event store that cannot keep them in
//! its own transaction (EventStoreDB): the answer book of the EventStoreDB adapter. With the
//! PostgreSQL event store the answers are kept in `event_store.answers` by the append itself.

use crate::database::{Database, DatabaseError};
use crate::migrate::{migrate, Migration};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ledger_application::store::answers::AnswerBook;
use ledger_application::store::{AnswerKey, StoreError, StoredAnswer};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "answers",
    sql: "CREATE SCHEMA IF NOT EXISTS answers;
          CREATE TABLE answers.answers (
              scope       text        NOT NULL,
              key         text        NOT NULL,
              fingerprint text        NOT NULL,
              answer      jsonb       NOT NULL,
              recorded_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (scope, key)
          );
          CREATE INDEX answers_by_recorded_at ON answers.answers USING brin (recorded_at);",
}];

const FIND_SQL: &str = "SELECT k.scope, k.key, k.fingerprint, k.answer \
     FROM unnest($1::text[], $2::text[]) AS a(scope, key) \
     JOIN answers.answers k ON k.scope = a.scope AND k.key = a.key";

const KEEP_SQL: &str = "INSERT INTO answers.answers (scope, key, fingerprint, answer) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) \
     ON CONFLICT (scope, key) DO NOTHING";

const FORGET_SQL: &str = "DELETE FROM answers.answers WHERE recorded_at < $1";

#[derive(Clone)]
pub struct PostgresAnswers {
    database: Database,
}

impl PostgresAnswers {
    pub async fn open(database: Database) -> Result<Self, DatabaseError> {
        let mut client = database.client().await?;
        migrate(&mut client, "answers", MIGRATIONS).await?;
        Ok(Self { database })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.database
            .client()
            .await
            .map_err(StoreError::unavailable)
    }
}

fn failed(error: tokio_postgres::Error) -> StoreError {
    StoreError::backend("answer book", error)
}

#[async_trait]
impl AnswerBook for PostgresAnswers {
    async fn find(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        let scopes: Vec<&str> = keys.iter().map(|k| k.scope.as_str()).collect();
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        let rows = self
            .database
            .with_client(async |client| {
                let statement = client.prepare_cached(FIND_SQL).await.map_err(failed)?;
                client
                    .query(&statement, &[&scopes, &names])
                    .await
                    .map_err(failed)
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| StoredAnswer {
                key: AnswerKey {
                    scope: row.get(0),
                    key: row.get(1),
                },
                fingerprint: row.get(2),
                answer: row.get(3),
            })
            .collect())
    }

    async fn keep(&self, answers: Vec<StoredAnswer>) -> Result<(), StoreError> {
        let scopes: Vec<&str> = answers.iter().map(|a| a.key.scope.as_str()).collect();
        let names: Vec<&str> = answers.iter().map(|a| a.key.key.as_str()).collect();
        let fingerprints: Vec<&str> = answers.iter().map(|a| a.fingerprint.as_str()).collect();
        let bodies: Vec<&serde_json::Value> = answers.iter().map(|a| &a.answer).collect();
        self.database
            .with_client(async |client| {
                let statement = client.prepare_cached(KEEP_SQL).await.map_err(failed)?;
                client
                    .execute(&statement, &[&scopes, &names, &fingerprints, &bodies])
                    .await
                    .map_err(failed)
            })
            .await?;
        Ok(())
    }

    async fn forget_before(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(FORGET_SQL).await.map_err(failed)?;
        client
            .execute(&statement, &[&kept_before])
            .await
            .map_err(failed)
    }
}
