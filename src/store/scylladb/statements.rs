//! The prepared statements of the ScyllaDB store, prepared once at connect
//! (token- and shard-aware routing needs prepared statements: the driver
//! computes the partition key's token from the bound values).
//!
//! Everything but the followers' lease is idempotent (keyed by identity,
//! or an absolute value with an explicit timestamp) and marked so, which
//! lets the retry policy retry it.

use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::statement::prepared::PreparedStatement;

pub struct Statements {
    pub head_get_many: PreparedStatement,
    pub head_put: PreparedStatement,
    pub user_rows_get: PreparedStatement,
    pub user_ids_get: PreparedStatement,
    pub log_rows_get: PreparedStatement,
    pub blocks_newest: PreparedStatement,
    pub log_newest: PreparedStatement,
    pub heads_all: PreparedStatement,
    pub id_row_put: PreparedStatement,
    pub key_row_put: PreparedStatement,
    pub log_event_put: PreparedStatement,
    pub log_rejection_put: PreparedStatement,
    pub log_range: PreparedStatement,
    pub block_put: PreparedStatement,
    pub blocks_get: PreparedStatement,
    pub partitions_get: PreparedStatement,
    pub rollup_cp_get: PreparedStatement,
    pub rollup_days_get: PreparedStatement,
    pub rollup_range_get: PreparedStatement,
    pub rollup_put: PreparedStatement,
    pub rollup_cp_put: PreparedStatement,
    pub rollup_delete: PreparedStatement,
    pub rollup_cp_reset: PreparedStatement,
    pub owner_put: PreparedStatement,
    pub owner_get: PreparedStatement,
    pub target_put: PreparedStatement,
    pub target_get: PreparedStatement,
    pub lease_get: PreparedStatement,
    pub lease_insert: PreparedStatement,
    pub lease_update: PreparedStatement,
}

async fn prep(
    session: &Session,
    cql: &str,
    idempotent: bool,
) -> Result<PreparedStatement, PrepareError> {
    let mut p = session.prepare(cql).await?;
    p.set_is_idempotent(idempotent);
    // Results are decoded with the metadata the server gave at prepare
    // time, not sent again with every response (its encoding showed in a
    // profile of Cassandra: about 4 % of the samples). Safe: every SELECT
    // names its columns. Not for conditional statements, whose result
    // columns vary (`[applied]` alone, or with the existing row).
    if !cql.contains(" IF ") {
        p.set_use_cached_result_metadata(true);
    }
    Ok(p)
}

/// The columns of a `log` row, in the order `fold::LogRow` reads them.
pub const LOG_COLUMNS: &str = "minor, user_id, seq, first_of_key, event, command_id, reason, \
                               detail, rejected_at, rejected_at_ns";

impl Statements {
    pub async fn prepare(session: &Session, ks: &str) -> Result<Self, PrepareError> {
        let s = session;
        let rollup = "day, kind, campaign, count, uniques, accepted, rejected";
        Ok(Statements {
            head_get_many: prep(s, &format!(
                "SELECT user_id, seq, state FROM {ks}.users WHERE user_id IN ? AND k = ''"), true).await?,
            head_put: prep(s, &format!(
                "INSERT INTO {ks}.users (user_id, k, seq, state) VALUES (?, '', ?, ?) USING TIMESTAMP ?"), true).await?,
            user_rows_get: prep(s, &format!(
                "SELECT k, seq FROM {ks}.users WHERE user_id = ? AND k IN ?"), true).await?,
            user_ids_get: prep(s, &format!(
                "SELECT seq, p, major, minor FROM {ks}.users WHERE user_id = ? AND k >= 'i' AND k < 'j'"), true).await?,
            heads_all: prep(s, &format!(
                "SELECT user_id, k, seq, state FROM {ks}.users"), true).await?,
            id_row_put: prep(s, &format!(
                "INSERT INTO {ks}.users (user_id, k, seq, p, major, minor) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            key_row_put: prep(s, &format!(
                "INSERT INTO {ks}.users (user_id, k, seq) VALUES (?, ?, ?) USING TIMESTAMP ?"), true).await?,
            log_event_put: prep(s, &format!(
                "INSERT INTO {ks}.log (p, major, block, minor, user_id, seq, first_of_key, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), true).await?,
            log_rejection_put: prep(s, &format!(
                "INSERT INTO {ks}.log (p, major, block, minor, command_id, reason, detail, rejected_at, rejected_at_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), true).await?,
            log_range: prep(s, &format!(
                "SELECT {LOG_COLUMNS} FROM {ks}.log WHERE p = ? AND major = ? AND block = ? AND minor > ? AND minor <= ? LIMIT ?"), true).await?,
            log_rows_get: prep(s, &format!(
                "SELECT minor, event FROM {ks}.log WHERE p = ? AND major = ? AND block = ? AND minor IN ?"), true).await?,
            blocks_newest: prep(s, &format!(
                "SELECT major, block FROM {ks}.log_blocks WHERE p = ? AND (major, block) <= (?, ?) ORDER BY major DESC, block DESC LIMIT ?"), true).await?,
            log_newest: prep(s, &format!(
                "SELECT minor, event FROM {ks}.log WHERE p = ? AND major = ? AND block = ? ORDER BY minor DESC LIMIT ?"), true).await?,
            block_put: prep(s, &format!(
                "INSERT INTO {ks}.log_blocks (p, major, block) VALUES (?, ?, ?)"), true).await?,
            blocks_get: prep(s, &format!(
                "SELECT major, block FROM {ks}.log_blocks WHERE p = ? AND (major, block) >= (?, ?) LIMIT ?"), true).await?,
            partitions_get: prep(s, &format!("SELECT DISTINCT p FROM {ks}.log_blocks"), true).await?,
            rollup_cp_get: prep(s, &format!(
                "SELECT cp_major, cp_minor, cp_folded, cp_generation FROM {ks}.rollups WHERE p = ? LIMIT 1"), true).await?,
            rollup_days_get: prep(s, &format!(
                "SELECT {rollup}, cp_folded, cp_generation FROM {ks}.rollups WHERE p = ? AND day IN ?"), true).await?,
            rollup_range_get: prep(s, &format!(
                "SELECT {rollup} FROM {ks}.rollups WHERE p = ? AND day >= ? AND day <= ?"), true).await?,
            rollup_put: prep(s, &format!(
                "INSERT INTO {ks}.rollups (p, day, kind, campaign, count, uniques, accepted, rejected) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            rollup_cp_put: prep(s, &format!(
                "UPDATE {ks}.rollups USING TIMESTAMP ? SET cp_major = ?, cp_minor = ?, cp_folded = ?, cp_generation = ? WHERE p = ?"), true).await?,
            rollup_delete: prep(s, &format!(
                "DELETE FROM {ks}.rollups USING TIMESTAMP ? WHERE p = ?"), true).await?,
            rollup_cp_reset: prep(s, &format!(
                "UPDATE {ks}.rollups USING TIMESTAMP ? SET cp_major = null, cp_minor = null, cp_folded = 0, cp_generation = ? WHERE p = ?"), true).await?,
            owner_put: prep(s, &format!(
                "INSERT INTO {ks}.interaction_owners (interaction_id, user_id, seq, p, major, minor) VALUES (?, ?, ?, ?, ?, ?)"), true).await?,
            owner_get: prep(s, &format!(
                "SELECT user_id, p, major, minor FROM {ks}.interaction_owners WHERE interaction_id = ?"), true).await?,
            target_put: prep(s, &format!(
                "INSERT INTO {ks}.target_events (target_id, day, pos, user_id, seq, event) VALUES (?, ?, ?, ?, ?, ?)"), true).await?,
            target_get: prep(s, &format!(
                "SELECT pos, event FROM {ks}.target_events WHERE target_id = ? AND day = ? LIMIT ?"), true).await?,
            lease_get: prep(s, &format!(
                "SELECT owner, expires FROM {ks}.fold_leases WHERE p = ?"), true).await?,
            lease_insert: prep(s, &format!(
                "INSERT INTO {ks}.fold_leases (p, owner, expires) VALUES (?, ?, ?) IF NOT EXISTS"), false).await?,
            lease_update: prep(s, &format!(
                "UPDATE {ks}.fold_leases SET owner = ?, expires = ? WHERE p = ? IF owner = ? AND expires = ?"), false).await?,
        })
    }
}
