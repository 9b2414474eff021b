//! `tracking schema apply`: the CQL files of `schema/` (compiled in), run in
//! order, each recorded in `schema_migrations`; and the check a worker makes
//! at start that the keyspace holds exactly the schema it knows.

use scylla::client::session::Session;

/// The migrations this build knows, in order: (version, name, CQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "001_tracking",
        include_str!("../../../schema/001_tracking.cql"),
    ),
    (
        2,
        "002_write_behind",
        include_str!("../../../schema/002_write_behind.cql"),
    ),
];

/// The schema version this build needs.
pub fn current() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Errors of applying or checking the schema. None is retryable as such
/// (`Cql` may be a node away: the operator reruns the idempotent apply).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("keyspace name {0:?} is not a plain CQL identifier (letters, digits, _; 1-48 chars)")]
    BadKeyspace(String),
    #[error("replication {0:?}: expected `SimpleStrategy:<rf>` or `NetworkTopologyStrategy:<dc>=<rf>,...`")]
    BadReplication(String),
    #[error("keyspace {keyspace} is at schema version {found}, newer than this build knows ({known}); upgrade the workers first")]
    Newer {
        keyspace: String,
        found: i32,
        known: i32,
    },
    #[error("keyspace {keyspace} is at schema version {found}, this build needs {known}: run `tracking schema apply`")]
    Older {
        keyspace: String,
        found: i32,
        known: i32,
    },
    #[error("{what}: {message}")]
    Cql { what: String, message: String },
}

fn cql(what: impl Into<String>, e: impl std::fmt::Display) -> SchemaError {
    SchemaError::Cql {
        what: what.into(),
        message: e.to_string(),
    }
}

pub fn check_keyspace(ks: &str) -> Result<(), SchemaError> {
    let ok = !ks.is_empty()
        && ks.len() <= 48
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && ks.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(SchemaError::BadKeyspace(ks.to_owned()))
    }
}

/// `SimpleStrategy:1` or `NetworkTopologyStrategy:dc1=3,dc2=3` as a CQL map.
pub fn replication(spec: &str) -> Result<String, SchemaError> {
    let bad = || SchemaError::BadReplication(spec.to_owned());
    let (class, rest) = spec.split_once(':').ok_or_else(bad)?;
    let rf = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(bad)
    };
    match class.trim() {
        "SimpleStrategy" => Ok(format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            rf(rest)?
        )),
        "NetworkTopologyStrategy" => {
            let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_owned()];
            for dc in rest.split(',') {
                let (name, n) = dc.split_once('=').ok_or_else(bad)?;
                let name = name.trim();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
                {
                    return Err(bad());
                }
                parts.push(format!("'{name}': {}", rf(n)?));
            }
            Ok(format!("{{{}}}", parts.join(", ")))
        }
        _ => Err(bad()),
    }
}

/// The statements of a migration with the placeholders filled in.
pub fn statements(text: &str, ks: &str, replication: &str) -> Vec<String> {
    let no_comments: String = text
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    no_comments
        .split(';')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("{keyspace}", ks)
                .replace("{replication}", replication)
        })
        .collect()
}

/// The highest applied version (0 when the keyspace or table is missing).
pub async fn applied_version(session: &Session, ks: &str) -> Result<i32, SchemaError> {
    check_keyspace(ks)?;
    let exists = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'schema_migrations'",
            (ks,),
        )
        .await
        .map_err(|e| cql("reading system_schema", e))?
        .into_rows_result()
        .map_err(|e| cql("reading system_schema", e))?
        .rows_num();
    if exists == 0 {
        return Ok(0);
    }
    let rows = session
        .query_unpaged(format!("SELECT version FROM {ks}.schema_migrations"), ())
        .await
        .map_err(|e| cql("reading schema_migrations", e))?
        .into_rows_result()
        .map_err(|e| cql("reading schema_migrations", e))?;
    let mut max = 0;
    for row in rows
        .rows::<(i32,)>()
        .map_err(|e| cql("schema_migrations", e))?
    {
        max = max.max(row.map_err(|e| cql("schema_migrations", e))?.0);
    }
    Ok(max)
}

/// Applies the migrations after the keyspace's version; returns the names
/// applied. `progress` gets one line per migration.
pub async fn apply(
    session: &Session,
    ks: &str,
    replication_spec: &str,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<&'static str>, SchemaError> {
    check_keyspace(ks)?;
    let replication = replication(replication_spec)?;
    let found = applied_version(session, ks).await?;
    if found > current() {
        return Err(SchemaError::Newer {
            keyspace: ks.to_owned(),
            found,
            known: current(),
        });
    }
    let mut done = Vec::new();
    for (version, name, text) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        progress(&format!(
            "applying {name} (version {version}) to keyspace {ks}"
        ));
        for st in statements(text, ks, &replication) {
            let head: String = st.chars().take(80).collect();
            session
                .query_unpaged(st.as_str(), ())
                .await
                .map_err(|e| cql(format!("{name}: {head}"), e))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| cql("waiting for schema agreement", e))?;
        let now = chrono::Utc::now().timestamp_micros();
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
                (*version, *name, now),
            )
            .await
            .map_err(|e| cql("recording the version", e))?;
        done.push(*name);
    }
    Ok(done)
}

/// Refuses a keyspace whose schema is not exactly this build's.
pub async fn check(session: &Session, ks: &str) -> Result<(), SchemaError> {
    let found = applied_version(session, ks).await?;
    let known = current();
    let keyspace = ks.to_owned();
    match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(SchemaError::Newer {
            keyspace,
            found,
            known,
        }),
        std::cmp::Ordering::Less => Err(SchemaError::Older {
            keyspace,
            found,
            known,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_specs() {
        assert_eq!(
            replication("SimpleStrategy:1").unwrap(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert_eq!(
            replication("NetworkTopologyStrategy:dc1=3,dc-2=2").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc-2': 2}"
        );
        for bad in [
            "",
            "SimpleStrategy",
            "SimpleStrategy:0",
            "Foo:1",
            "NetworkTopologyStrategy:dc1",
            "NetworkTopologyStrategy:d'c=1",
        ] {
            assert!(replication(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keyspace_names() {
        assert!(check_keyspace("tracking").is_ok());
        assert!(check_keyspace("t_1").is_ok());
        for bad in ["", "1t", "a-b", "a;DROP", &"x".repeat(49)] {
            assert!(check_keyspace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migrations_split_into_statements_without_comments() {
        let sts = statements(
            MIGRATIONS[0].2,
            "ks",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        assert!(sts[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class'"));
        assert!(sts
            .iter()
            .all(|s| !s.contains("--") && !s.contains("{keyspace}")));
        assert!(sts
            .iter()
            .any(|s| s.contains("CREATE TABLE IF NOT EXISTS ks.journal")));
        assert!(sts.len() >= 14, "{}", sts.len());
    }
}
