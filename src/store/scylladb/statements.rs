//! The prepared statements of the ScyllaDB store, prepared once at connect
//! (token- and shard-aware routing needs prepared statements: the driver
//! computes the partition key's token from the bound values).
//!
//! Everything except the journal's conditional insert and the rejection's
//! `IF NOT EXISTS` is idempotent (keyed by identity, or an absolute value
//! with an explicit timestamp) and marked so, which lets the retry policy
//! retry it after a timeout.

use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::statement::prepared::PreparedStatement;

pub struct Statements {
    pub journal_insert: PreparedStatement,
    pub journal_last: PreparedStatement,
    pub journal_range: PreparedStatement,
    pub journal_all: PreparedStatement,
    pub journal_users: PreparedStatement,
    pub id_insert: PreparedStatement,
    pub id_get: PreparedStatement,
    pub id_owner_get: PreparedStatement,
    pub target_insert: PreparedStatement,
    pub target_get: PreparedStatement,
    pub recent_insert: PreparedStatement,
    pub recent_get: PreparedStatement,
    pub minute_insert: PreparedStatement,
    pub minutes_get: PreparedStatement,
    pub daily_get_user: PreparedStatement,
    pub daily_put: PreparedStatement,
    pub daily_sum: PreparedStatement,
    pub daily_key_insert: PreparedStatement,
    pub daily_keys_get: PreparedStatement,
    pub day_insert: PreparedStatement,
    pub days_get: PreparedStatement,
    pub status_get_user: PreparedStatement,
    pub status_put: PreparedStatement,
    pub status_sum: PreparedStatement,
    pub rejection_insert: PreparedStatement,
    pub rejections_all: PreparedStatement,
    pub rejection_day_insert: PreparedStatement,
    pub rejections_count: PreparedStatement,
    pub user_stats_get: PreparedStatement,
    pub user_stats_put: PreparedStatement,
    pub user_stats_all: PreparedStatement,
    pub outbox_insert: PreparedStatement,
    pub outbox_delete: PreparedStatement,
    pub outbox_scan: PreparedStatement,
    pub published_put: PreparedStatement,
    pub published_get: PreparedStatement,
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

impl Statements {
    pub async fn prepare(session: &Session, ks: &str) -> Result<Self, PrepareError> {
        let s = session;
        let ev = "user_id, seq, pos, event";
        Ok(Statements {
            journal_insert: prep(s, &format!(
                "INSERT INTO {ks}.journal (user_id, bucket, seq, interaction_id, schema_version, pos, event) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            journal_last: prep(s, &format!(
                "SELECT seq FROM {ks}.journal WHERE user_id = ? AND bucket = ? ORDER BY seq DESC LIMIT 1"), true).await?,
            journal_range: prep(s, &format!(
                "SELECT {ev} FROM {ks}.journal WHERE user_id = ? AND bucket = ? AND seq > ? AND seq <= ? LIMIT ?"), true).await?,
            journal_all: prep(s, &format!("SELECT {ev} FROM {ks}.journal"), true).await?,
            journal_users: prep(s, &format!("SELECT DISTINCT user_id, bucket FROM {ks}.journal"), true).await?,
            id_insert: prep(s, &format!(
                "INSERT INTO {ks}.interactions_by_id (interaction_id, user_id, seq, pos, event) VALUES (?, ?, ?, ?, ?)"), true).await?,
            id_get: prep(s, &format!(
                "SELECT {ev} FROM {ks}.interactions_by_id WHERE interaction_id = ?"), true).await?,
            id_owner_get: prep(s, &format!(
                "SELECT user_id FROM {ks}.interactions_by_id WHERE interaction_id = ?"), true).await?,
            target_insert: prep(s, &format!(
                "INSERT INTO {ks}.by_target (target_id, day, pos, user_id, seq, event) VALUES (?, ?, ?, ?, ?, ?)"), true).await?,
            target_get: prep(s, &format!(
                "SELECT {ev} FROM {ks}.by_target WHERE target_id = ? AND day = ? LIMIT ?"), true).await?,
            recent_insert: prep(s, &format!(
                "INSERT INTO {ks}.recent_events (minute, pos, user_id, seq, event) VALUES (?, ?, ?, ?, ?)"), true).await?,
            recent_get: prep(s, &format!(
                "SELECT {ev} FROM {ks}.recent_events WHERE minute = ? AND pos < ? LIMIT ?"), true).await?,
            minute_insert: prep(s, &format!(
                "INSERT INTO {ks}.recent_minutes (day, minute) VALUES (?, ?)"), true).await?,
            minutes_get: prep(s, &format!(
                "SELECT minute FROM {ks}.recent_minutes WHERE day = ? AND minute <= ?"), true).await?,
            daily_get_user: prep(s, &format!(
                "SELECT count, as_of FROM {ks}.daily_contrib WHERE day = ? AND interaction_type = ? AND campaign = ? AND shard = ? AND user_id = ?"), true).await?,
            daily_put: prep(s, &format!(
                "INSERT INTO {ks}.daily_contrib (day, interaction_type, campaign, shard, user_id, count, as_of) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            daily_sum: prep(s, &format!(
                "SELECT sum(count), count(*) FROM {ks}.daily_contrib WHERE day = ? AND interaction_type = ? AND campaign = ? AND shard = ?"), true).await?,
            daily_key_insert: prep(s, &format!(
                "INSERT INTO {ks}.daily_keys (day, interaction_type, campaign) VALUES (?, ?, ?)"), true).await?,
            daily_keys_get: prep(s, &format!(
                "SELECT interaction_type, campaign FROM {ks}.daily_keys WHERE day = ?"), true).await?,
            day_insert: prep(s, &format!("INSERT INTO {ks}.stat_days (kind, day) VALUES (?, ?)"), true).await?,
            days_get: prep(s, &format!(
                "SELECT day FROM {ks}.stat_days WHERE kind = ? AND day >= ? AND day <= ?"), true).await?,
            status_get_user: prep(s, &format!(
                "SELECT accepted, as_of FROM {ks}.status_contrib WHERE day = ? AND shard = ? AND user_id = ?"), true).await?,
            status_put: prep(s, &format!(
                "INSERT INTO {ks}.status_contrib (day, shard, user_id, accepted, as_of) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            status_sum: prep(s, &format!(
                "SELECT sum(accepted), count(*) FROM {ks}.status_contrib WHERE day = ? AND shard = ?"), true).await?,
            rejection_insert: prep(s, &format!(
                "INSERT INTO {ks}.rejections (command_id, day, reason, detail, rejected_at, rejected_at_ns, pos) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            rejections_all: prep(s, &format!(
                "SELECT command_id, reason, detail, rejected_at, rejected_at_ns, pos FROM {ks}.rejections"), true).await?,
            rejection_day_insert: prep(s, &format!(
                "INSERT INTO {ks}.rejections_by_day (day, shard, command_id) VALUES (?, ?, ?)"), true).await?,
            rejections_count: prep(s, &format!(
                "SELECT count(*) FROM {ks}.rejections_by_day WHERE day = ? AND shard = ?"), true).await?,
            user_stats_get: prep(s, &format!(
                "SELECT user_id, total, clicks, views, likes, last_seq, first_at, first_at_ns, last_at, last_at_ns FROM {ks}.user_stats WHERE user_id = ?"), true).await?,
            user_stats_put: prep(s, &format!(
                "INSERT INTO {ks}.user_stats (user_id, total, clicks, views, likes, last_seq, first_at, first_at_ns, last_at, last_at_ns) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            user_stats_all: prep(s, &format!(
                "SELECT user_id, total, clicks, views, likes, last_seq, first_at, first_at_ns, last_at, last_at_ns FROM {ks}.user_stats"), true).await?,
            outbox_insert: prep(s, &format!(
                "INSERT INTO {ks}.outbox (shard, user_id, seq, at) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            outbox_delete: prep(s, &format!(
                "DELETE FROM {ks}.outbox USING TIMESTAMP ? WHERE shard = ? AND user_id = ?"), true).await?,
            outbox_scan: prep(s, &format!(
                "SELECT user_id, seq, at FROM {ks}.outbox WHERE shard = ? LIMIT ?"), true).await?,
            published_put: prep(s, &format!(
                "INSERT INTO {ks}.user_published (user_id, seq) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            published_get: prep(s, &format!(
                "SELECT seq FROM {ks}.user_published WHERE user_id = ?"), true).await?,
        })
    }
}
